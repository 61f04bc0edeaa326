"""The `sql` source: one query over the partner's database, through SQLAlchemy 2 (any SQLAlchemy URL;
the driver is the user's: `psycopg` for PostgreSQL, `pymysql` or `mysqlclient` for MySQL, the
standard library for SQLite).

`{since}` in the query is bound as a parameter, never formatted into the SQL text: an aware UTC
datetime (the cursor minus `since_overlap_seconds`) for an incremental fetch, NULL for a complete
one, so one query serves both:

    SELECT ... FROM interviews WHERE {since} IS NULL OR updated_at >= {since}

It is typed as a timestamp with time zone, so PostgreSQL knows the type even when it is NULL; SQLite
receives it as text `YYYY-MM-DD HH:MM:SS.ffffff` (compare with `datetime(updated_at) >=
datetime({since})` when the column holds ISO text with offsets). Anything else in the query is taken
as written: a colon is not a parameter marker.

Rows stream: a server-side cursor where the driver has one (`stream_results`), `batch_size` rows at a
time; each is kept as a tuple and becomes its dict only when the mapper reads it (`RowList`), and
the columns named in `json_columns` are decoded then, so a large fetch is never held as dicts all at
once. JSON and JSONB columns the driver decodes itself (PostgreSQL) arrive as dicts and lists.

The password (in the URL or in `source.password`) never appears in a message: URLs are shown with
it masked, and the config's secrets are masked in every log line and stored error besides.

A query that runs longer than `source.timeout_seconds` (default 300) is cancelled through its driver
(`interrupt()` for SQLite, `cancel()` for psycopg; a driver with neither has its connection closed)
and the fetch fails naming the setting: a partner database that hangs never holds the pass, and the
pass lock with it, forever. PostgreSQL connections also give up connecting after that long (at most
30 s).

The same connection helpers serve the SQL lookup tables (`connector.lookups`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, SupportsIndex, overload

import sqlalchemy
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from connector.config import SINCE_PLACEHOLDER, SqlSourceConfig, url_passwords
from connector.errors import SourceError
from connector.sources import BrokenItem, FetchResult, json_problem

log = logging.getLogger("connector.sources")

# What SQLAlchemy's text() would take for a bind marker (`:name`, not `::cast`, not `\:`): escaped, so
# the query means exactly what it says and `{since}` is the only parameter.
_BIND_MARKER = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
SINCE_BIND = "connector_since"


def masked_url(url: str) -> str:
    """The URL as it may be shown: the password masked (SQLAlchemy's own rendering), or, if it does
    not even parse, only its scheme."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://..."


def _without_secrets(text: str, url: str, password: str | None) -> str:
    for secret in [*url_passwords(url), *([password] if password else [])]:
        text = text.replace(secret, "***")
    return text


def open_database(url: str, password: str | None, where: str, *, timeout: float = 300) -> Engine:
    """An SQLAlchemy engine for the partner's database (no pool: a connection per fetch, so a
    connection the server dropped between polls is never reused). Opening connects to nothing."""
    try:
        parsed = make_url(url)
        if password:
            parsed = parsed.set(password=password)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not (parsed.database or "").startswith("file:"):
            # SQLite would create an empty file where a wrong path points: refuse instead
            if not os.path.isfile(parsed.database or ""):
                raise SourceError(f"{where}: the SQLite file {parsed.database} does not exist")
        connect_args = {"connect_timeout": max(1, int(min(timeout, 30)))} if parsed.get_backend_name() == "postgresql" else {}
        return sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except SourceError:
        raise
    except NoSuchModuleError:
        raise SourceError(f"{where}: SQLAlchemy knows no database kind {url.split('://', 1)[0]!r}") from None
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "its driver"
        raise SourceError(
            f"{where}: the database driver is not installed ({missing}); for PostgreSQL: pip install 'jobylon-connector[postgresql]' "
            "(psycopg 3), for MySQL: pip install pymysql (URL mysql+pymysql://...)"
        ) from None
    except (ArgumentError, ValueError) as exc:
        raise SourceError(f"{where}: not a usable database URL ({_without_secrets(_first_line(exc), url, password)})") from None


class QueryTimedOut(Exception):
    pass


@contextmanager
def deadline(connection: sqlalchemy.Connection, seconds: float, what: str) -> Iterator[None]:
    """Cancel what runs on `connection` once `seconds` have passed; the error raised then says so."""
    raw = connection.connection.dbapi_connection
    fired = threading.Event()

    def cancel() -> None:
        fired.set()
        for name in ("interrupt", "cancel", "close"):  # SQLite, psycopg, anything else
            method = getattr(raw, name, None)
            if callable(method):
                try:
                    method()
                except Exception:  # the query may just have ended: nothing to cancel
                    log.debug("cancelling %s: %s() failed", what, name, exc_info=True)
                return

    timer = threading.Timer(seconds, cancel)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception as exc:
        if fired.is_set():
            raise QueryTimedOut(f"{what} ran longer than {seconds:g} s and was cancelled") from exc
        raise
    finally:
        timer.cancel()


def statement(query: str, *, since: bool) -> sqlalchemy.TextClause:
    """The query as an SQLAlchemy text clause: colons escaped, `{since}` -> a typed bind parameter."""
    text = _BIND_MARKER.sub(lambda m: "\\:" + m.group(1), query)
    if not since:
        return sqlalchemy.text(text)
    clause = sqlalchemy.text(text.replace(SINCE_PLACEHOLDER, f":{SINCE_BIND}"))
    return clause.bindparams(sqlalchemy.bindparam(SINCE_BIND, type_=sqlalchemy.DateTime(timezone=True)))


def database_problem(exc: BaseException, url: str, password: str | None) -> str:
    """The driver's own first line (SQLAlchemy's adds the statement and its parameters), no secret."""
    original = getattr(exc, "orig", None) or exc
    return _without_secrets(_first_line(original), url, password)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- rows -------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A database value as the mapping reads it: Decimal -> int or float, UUID -> text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class RowList(list[Any]):
    """The rows of one fetch, kept as tuples and turned into their dict (JSON columns decoded) when an
    item is read: a list for the engine (len, index, drain) whose dicts never all exist at once."""

    def __init__(self, convert: Callable[[int, tuple[Any, ...]], Any]) -> None:
        super().__init__()
        self._convert = convert

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        if isinstance(index, slice):
            positions = range(len(self))[index]
            return [self[i] for i in positions]
        position = index.__index__()
        value = super().__getitem__(position)
        if isinstance(value, tuple):
            return self._convert(position if position >= 0 else len(self) + position, value)
        return value

    def __iter__(self) -> Iterator[Any]:
        for position in range(len(self)):
            yield self[position]


class SqlSource:
    kind = "sql"

    def __init__(self, config: SqlSourceConfig) -> None:
        self.config = config
        self.where = f"source {masked_url(config.url)}"
        self._engine: Engine | None = None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def fetch(self, since: str | None = None) -> FetchResult:
        config = self.config
        password = config.password.get_secret_value() if config.password else None
        incremental = since is not None and config.incremental_capable
        params: dict[str, Any] = {}
        if config.incremental_capable:
            params[SINCE_BIND] = _moment(since, self.where) if incremental else None
        if self._engine is None:
            self._engine = open_database(config.url, password, self.where, timeout=config.timeout_seconds)
        clause = statement(config.query, since=config.incremental_capable)
        try:
            with self._engine.connect() as connection, deadline(connection, config.timeout_seconds, "the query"):
                result = connection.execution_options(stream_results=True, yield_per=config.batch_size).execute(clause, params)
                keys = list(result.keys())
                rows = RowList(self._converter(keys))
                for partition in result.partitions():
                    rows.extend(tuple(row) for row in partition)
        except QueryTimedOut as exc:
            raise SourceError(f"{self.where}: {exc} (source.timeout_seconds = {config.timeout_seconds:g}); make it faster or raise the setting") from None
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.where}: the query failed ({database_problem(exc, config.url, password)})") from None
        log.debug("%s: %d row(s)%s", self.where, len(rows), f" changed since {since}" if incremental else "")
        return FetchResult(items=rows, complete=not incremental, pages=1)

    def _converter(self, keys: list[str]) -> Callable[[int, tuple[Any, ...]], Any]:
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise SourceError(f"{self.where}: the query returns the column(s) {', '.join(map(repr, repeated))} more than once; name them apart with AS")
        missing = [name for name in self.config.json_columns if name not in keys]
        if missing:
            raise SourceError(f"{self.where}: source.json_columns names {', '.join(map(repr, missing))}, not among the query's columns ({', '.join(keys)})")
        json_columns = set(self.config.json_columns)

        def convert(position: int, row: tuple[Any, ...]) -> Any:
            item = {key: plain(value) for key, value in zip(keys, row, strict=True)}
            for name in json_columns:
                raw = item[name]
                if isinstance(raw, bytes | bytearray | memoryview):
                    raw = bytes(raw).decode("utf-8", "replace")
                if isinstance(raw, str):
                    try:
                        item[name] = json.loads(raw) if raw.strip() else None
                    except (ValueError, RecursionError) as exc:
                        readable = tuple((k, v) for k, v in item.items() if k not in json_columns and isinstance(v, str | int) and not isinstance(v, bool))
                        return BrokenItem(f"row {position + 1}", f"column {name}: not valid JSON ({json_problem(exc)})", readable=readable)
            return item

        return convert


def _moment(since: str | None, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(since or "")
    except ValueError:
        raise SourceError(f"{where}: the cursor {since!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise SourceError(f"{where}: the cursor {since!r} has no UTC offset")
    return moment
