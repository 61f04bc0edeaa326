"""The `python` source: a function of the partner's own code, named `package.module:function`.

    def fetch(config, cursor):        # config: the PythonSourceConfig (config.options: the plugin's table)
        ...                           # cursor: None for a complete fetch, else an ISO 8601 UTC time
        return [{"id": ..., ...}, ...]  # any iterable of dicts (a generator is fine)

With `incremental = true` (the default) the function receives the cursor minus
`since_overlap_seconds` on incremental polls and should return what changed since then; it receives
None on complete polls (the first, every `sync.full_every`-th, `sync --full`) and must then return
everything: only a complete fetch deletes by absence. With `incremental = false` it always receives
None. The module is found on `sys.path` (install it, or set PYTHONPATH).

Whatever the function raises (on the call or while its iterable is read) fails the fetch with one
line naming the plugin and the exception, no traceback; the traceback is logged at debug level
(`connector -v`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from connector.config import PythonSourceConfig
from connector.errors import SourceError
from connector.sources import FetchResult

log = logging.getLogger("connector.sources")


class PythonSource:
    kind = "python"

    def __init__(self, config: PythonSourceConfig) -> None:
        self.config = config
        self.where = f"source plugin {config.callable}"
        self._function: Callable[..., Any] | None = None

    def close(self) -> None:
        pass

    def fetch(self, since: str | None = None) -> FetchResult:
        cursor = since if self.config.incremental else None
        function = self._load()
        try:
            produced = function(self.config, cursor)
            if produced is None or isinstance(produced, str | bytes | Mapping) or not isinstance(produced, Iterable):
                kind = "None" if produced is None else type(produced).__name__
                raise SourceError(f"{self.where}: returned {kind}, not an iterable of dicts (a list or a generator)")
            items = list(produced)
        except SourceError:
            raise
        except Exception as exc:
            log.debug("%s raised", self.where, exc_info=True)
            raise SourceError(f"{self.where}: {type(exc).__name__}: {_first_line(exc)}") from None
        return FetchResult(items=items, complete=cursor is None, pages=1)

    def _load(self) -> Callable[..., Any]:
        if self._function is not None:
            return self._function
        module_name, _, attribute = self.config.callable.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as exc:
            log.debug("%s: import failed", self.where, exc_info=True)
            raise SourceError(f"{self.where}: the module {module_name} cannot be imported ({type(exc).__name__}: {_first_line(exc)})") from None
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise SourceError(f"{self.where}: {module_name} has no {attribute}")
            target = getattr(target, part)
        if not callable(target):
            raise SourceError(f"{self.where}: {attribute} is a {type(target).__name__}, not a function")
        self._function = target
        return target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
