"""Where interviews come from: the source kinds and their registry.

A source returns the raw items of one fetch (dicts, and `BrokenItem` where a record could not be
parsed) in source order, and says whether the fetch was *complete* (a full listing: absence implies
deletion) or *incremental* (changed since a cursor).

    source = open_source(settings.source, settings.retry)
    try:
        result = source.fetch(since=cursor)
    finally:
        source.close()

Every failure to read the source is a `SourceError` whose message names the file or the URL (never
its query string) and never carries a credential.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from connector.config import FileSourceConfig, HttpSourceConfig, PythonSourceConfig, RetryConfig, SqlSourceConfig
from connector.errors import SourceError

# One class for the whole package: the mapper (which must not import the sources) recognises it too.
from connector.model import BrokenItem

__all__ = ["BrokenItem", "FetchResult", "Source", "open_source", "register_source", "source_kinds"]


class FetchResult:
    """One fetch: the raw items (usually dicts, and BrokenItem entries) in source order, whether it
    was complete (a full listing: absence implies deletion; else changed since a cursor), and the
    pages read.

    A source may hand its items over as a stream (`stream=`, the file source): `take()` then gives
    each item once, as it is read, and keeps none, so the pass holds the mapped state and never the
    whole source. `items` is always a list: with a stream, the items still unread are read into it
    on first use (reading them can raise SourceError there)."""

    def __init__(self, items: list[Any] | None = None, complete: bool = True, pages: int = 1, *, stream: Iterator[Any] | None = None) -> None:
        self._items: list[Any] | None = (items if items is not None else []) if stream is None else None
        self._stream = stream
        self.complete = complete
        self.pages = pages

    @property
    def items(self) -> list[Any]:
        if self._items is None:
            if self._stream is None:
                raise RuntimeError("this fetch's items were taken one by one already")
            self._items, self._stream = list(self._stream), None
        return self._items

    def take(self) -> Iterator[Any]:
        """Each item once, released when the reader moves on: a stream as it is read, a list emptied
        as it goes (a large fetch is not held twice, raw and mapped, at the peak)."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            return stream
        if self._items is None:
            raise RuntimeError("this fetch's items were taken one by one already")
        items, self._items = self._items, None
        return _drain(items)

    def __repr__(self) -> str:
        held = "streamed" if self._items is None else f"{len(self._items)} item(s)"
        return f"FetchResult({held}, complete={self.complete}, pages={self.pages})"


def _drain(items: list[Any]) -> Iterator[Any]:
    for index in range(len(items)):
        item, items[index] = items[index], None
        yield item


class Source(Protocol):
    kind: str

    def fetch(self, since: str | None = None) -> FetchResult: ...

    def close(self) -> None: ...


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages: "an object", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def format_since(since: str, pattern: str | None) -> str:
    """The cursor as a source wants it: as given (ISO 8601 UTC), or written with `pattern` in UTC."""
    if pattern is None:
        return since
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise SourceError(f"the cursor {since!r} is not an ISO 8601 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime(pattern)


def json_problem(exc: BaseException, *, line: bool = True) -> str:
    """The first problem json.loads found, without echoing the input (it may hold anything)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}" if line else f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 (byte {exc.start})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


SourceFactory = Callable[[Any, RetryConfig], Source]


def _file(config: FileSourceConfig, retry: RetryConfig) -> Source:
    from connector.sources.file import FileSource

    return FileSource(config)


def _http(config: HttpSourceConfig, retry: RetryConfig) -> Source:
    from connector.sources.http import HttpSource

    return HttpSource(config, retry)


def _sql(config: SqlSourceConfig, retry: RetryConfig) -> Source:
    from connector.sources.sql import SqlSource  # SQLAlchemy loads only for this kind

    return SqlSource(config)


def _python(config: PythonSourceConfig, retry: RetryConfig) -> Source:
    from connector.sources.python import PythonSource

    return PythonSource(config)


# Keyed by `config.kind`; the modules are imported on first use, so a kind's dependencies load only
# when that kind is configured.
_REGISTRY: dict[str, SourceFactory] = {"file": _file, "http": _http, "sql": _sql, "python": _python}


def register_source(kind: str, factory: SourceFactory) -> None:
    """Add (or replace) the factory of a source kind: `factory(config, retry) -> Source`."""
    _REGISTRY[kind] = factory


def source_kinds() -> list[str]:
    return sorted(_REGISTRY)


def open_source(config: FileSourceConfig | HttpSourceConfig | SqlSourceConfig | PythonSourceConfig, retry: RetryConfig) -> Source:
    """The source `config` describes. Opening does no I/O: problems surface on the first fetch."""
    kind = getattr(config, "kind", None)
    factory = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise SourceError(f"source.kind = {kind!r} is not a known source kind; expected one of {', '.join(source_kinds())}")
    return factory(config, retry)
