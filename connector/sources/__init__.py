"""Where interviews come from: the source kinds and their registry.

A source returns the raw items of one fetch (dicts, and `BrokenItem` where a record could not be
parsed) and says whether the fetch was *complete* (a full listing: absence implies deletion) or
*incremental* (changed since a cursor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from connector.config import FileSourceConfig, HttpSourceConfig, RetryConfig
from connector.model import BrokenItem

__all__ = ["BrokenItem", "FetchResult", "Source", "open_source"]


@dataclass
class FetchResult:
    items: list[Any]
    complete: bool
    pages: int = 1


class Source(Protocol):
    kind: str

    def fetch(self, since: str | None = None) -> FetchResult: ...

    def close(self) -> None: ...


def open_source(config: FileSourceConfig | HttpSourceConfig, retry: RetryConfig) -> Source:
    if isinstance(config, FileSourceConfig):
        from connector.sources.file import FileSource

        return FileSource(config)
    from connector.sources.http import HttpSource

    return HttpSource(config, retry)
