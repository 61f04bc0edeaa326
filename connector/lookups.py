"""Lookup tables: `[mapping.lookups.NAME]`, key -> value, for `lookup('NAME', key)` in the mapping.

The common case: the partner's system holds its own candidate (or application) ids and a separate
table gives the Jobylon application id; or it holds user ids and a table gives the organizer's email.

    [mapping.lookups.jobylon_application]
    kind = "csv"                      # a CSV file with a header row
    path = "jobylon_applications.csv" # relative to the config file's folder
    key = "greenhouse_application_id" # the key column (default: the first)
    value = "jobylon_application_id"  # the value column (default: the second)

    [mapping.lookups.organizer_email]
    kind = "sql"                      # the first two columns of a query: key, value
    query = "SELECT user_id, email FROM recruiters"
    # url = "postgresql+psycopg://..." (default: the sql source's database), password = "..."

Tables are read afresh for every pass (a new application is in the next poll) and handed to the
mapper as plain dicts. Keys are compared as text (`lookup_key`: 123 and "123" are one key). A key
listed twice with different values is ambiguous: an item looking it up is invalid, as is one whose
key is missing; the rest of the table is used. A table that cannot be read fails the pass as a
source error, before anything is planned, so a missing file never turns every item invalid.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

from connector.config import CsvLookupConfig, Settings, SqlLookupConfig, SqlSourceConfig
from connector.errors import SourceError
from connector.mapping import AMBIGUOUS, lookup_key

log = logging.getLogger("connector.lookups")

MAX_CSV_BYTES = 200_000_000


def load_lookups(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every table of `[mapping.lookups]`, read now."""
    tables: dict[str, dict[str, Any]] = {}
    for name, config in settings.mapping.lookups.items():
        if isinstance(config, CsvLookupConfig):
            tables[name] = _csv_table(name, config)
        else:
            tables[name] = _sql_table(name, config, settings.source if isinstance(settings.source, SqlSourceConfig) else None)
        log.debug("lookup %s: %d key(s)", name, len(tables[name]))
    return tables


def _add(table: dict[str, Any], key: Any, value: Any) -> None:
    text = lookup_key(key)
    if text is None or text == "":
        return
    if text in table and table[text] is not AMBIGUOUS and table[text] != value:
        table[text] = AMBIGUOUS
    elif text not in table:
        table[text] = value


def _csv_table(name: str, config: CsvLookupConfig) -> dict[str, Any]:
    where = f"lookup {name}: {config.path}"
    try:
        with open(config.path, "rb") as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(f"{where}: not found") from None
    except IsADirectoryError:
        raise SourceError(f"{where}: is a directory, not a file") from None
    except OSError as exc:
        raise SourceError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_CSV_BYTES:
        raise SourceError(f"{where}: larger than {MAX_CSV_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        raise SourceError(f"{where}: empty; expected a header row, then key,value rows") from None
    except csv.Error as exc:
        raise SourceError(f"{where}: the header cannot be read ({exc})") from None
    key_at = _column(header, config.key, 0, where, "key")
    value_at = _column(header, config.value, 1, where, "value")
    table: dict[str, Any] = {}
    skipped = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            skipped += 1
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            skipped += 1  # which cell is the key cannot be told for sure
            continue
        value = row[value_at].strip()
        _add(table, row[key_at], value if value else None)
    if skipped:
        log.warning("%s: %d row(s) with the wrong number of fields skipped (their keys are missing from the lookup)", where, skipped)
    return table


def _column(header: list[str], wanted: str | None, default: int, where: str, role: str) -> int:
    if wanted is None:
        if len(header) <= default:
            raise SourceError(f"{where}: the header has {len(header)} column(s); a lookup needs a key and a value column")
        return default
    if wanted not in header:
        raise SourceError(f"{where}: no column {wanted!r} (the {role} column) in the header ({', '.join(header)})")
    return header.index(wanted)


def _sql_table(name: str, config: SqlLookupConfig, source: SqlSourceConfig | None) -> dict[str, Any]:
    from sqlalchemy.exc import SQLAlchemyError  # only when a SQL lookup is configured

    from connector.sources.sql import QueryTimedOut, database_problem, deadline, masked_url, open_database, plain, statement

    url = config.url or (source.url if source is not None else None)
    if url is None:  # refused at load already; kept for the type checker
        raise SourceError(f"lookup {name}: no database URL")
    secret = config.password or (source.password if source is not None and config.url is None else None)
    password = secret.get_secret_value() if secret else None
    where = f"lookup {name}: {masked_url(url)}"
    timeout = config.timeout_seconds
    engine = open_database(url, password, where, timeout=timeout)
    table: dict[str, Any] = {}
    try:
        with engine.connect() as connection, deadline(connection, timeout, "the query"):
            result = connection.execution_options(stream_results=True, yield_per=5000).execute(statement(config.query, since=False))
            if len(result.keys()) < 2:
                raise SourceError(f"{where}: the query returns {len(result.keys())} column(s); a lookup needs key, value")
            for row in result:
                _add(table, plain(row[0]), plain(row[1]))
    except QueryTimedOut as exc:
        raise SourceError(f"{where}: {exc} (timeout_seconds = {timeout:g} in [mapping.lookups.{name}]); make it faster or raise the setting") from None
    except SQLAlchemyError as exc:
        raise SourceError(f"{where}: the query failed ({database_problem(exc, url, password)})") from None
    finally:
        engine.dispose()
    return table
