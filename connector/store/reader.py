"""The state opened for reading only, for the status pages (`connector.web`): a connection of its own
(SQLite URI `mode=ro` and `PRAGMA query_only`), so a page can never write, never takes the write lock
and never waits on a pass (WAL: readers and the writer do not block each other). Every query is a
page: bounded by a LIMIT and served by an index (`schema.m004_page_indexes`), newest first, with
keyset paging (`before` / `after` an id) so a deep page costs what the first one does.

`ReadOnlyStore` is a `Store`: the read methods the CLI uses (`runs`, `count_events_by_status`,
`failure`, ...) work on it unchanged, so `connector.oncall.status_document` gives the page the
CLI's numbers. Its writes fail (`transaction` refuses, and SQLite would too).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlite_utils import Database

from connector.errors import StateError
from connector.redact import Redactor
from connector.store.file import explain
from connector.store.operators import failure_filter
from connector.store.records import FailureRow, OperationRow, RunRow
from connector.store.sqlite import Store

PAGE = 50  # rows per page of the runs and failures lists
MAX_PAGE = 500


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


class ReadOnlyStore(Store):
    """One read-only connection to the state database; open one per request (it is cheap) and close it."""

    def __init__(self, path: str | os.PathLike[str], *, redactor: Redactor | None = None, busy_timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.redactor = redactor or Redactor()
        self._lock = threading.RLock()
        if not self.path.is_file():
            raise StateError(f"no state database at {self.path}: the status pages read it once the connector has made it")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=busy_timeout)
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise explain(self.path, exc) from None
        self.db = Database(conn, execute_plugins=False)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        raise StateError(f"state database {self.path}: opened read-only (status pages); nothing is written through it")
        yield  # pragma: no cover

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paged reads for the status pages (standard SQL; indexes in schema.m004_page_indexes) ----

    def runs_page(self, *, before: int | None = None, after: int | None = None, limit: int = PAGE) -> list[RunRow]:
        """Runs newest first: the newest `limit`, or those just older than `before`, or just newer than `after`."""
        if after is not None:
            rows = self._query("SELECT * FROM runs WHERE id > ? ORDER BY id LIMIT ?", [after, _limit(limit)])
            rows.reverse()
        elif before is not None:
            rows = self._query("SELECT * FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?", [before, _limit(limit)])
        else:
            rows = self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [_limit(limit)])
        return [RunRow.from_row(r) for r in rows]

    def count_runs(self) -> int:
        return int(self._query("SELECT count(*) AS n FROM runs")[0]["n"])

    def run_exists(self, *, newer_than: int | None = None, older_than: int | None = None) -> bool:
        """Whether a run newer (or older) than this id exists (for the pager)."""
        if newer_than is not None:
            return bool(self._query("SELECT 1 AS x FROM runs WHERE id > ? LIMIT 1", [newer_than]))
        return bool(self._query("SELECT 1 AS x FROM runs WHERE id < ? LIMIT 1", [older_than]))

    def failures_page(
        self, *, kind: str | None = None, include_resolved: bool = False, before: int | None = None, after: int | None = None, limit: int = PAGE
    ) -> list[FailureRow]:
        """Failures newest first (open ones unless `include_resolved`, of one kind if given), a page
        before or after an id."""
        clauses, params = failure_filter(kind, include_resolved)
        order = "DESC"
        if after is not None:
            clauses.append("id > ?")
            params.append(after)
            order = "ASC"
        elif before is not None:
            clauses.append("id < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT * FROM failures {where} ORDER BY id {order} LIMIT ?", [*params, _limit(limit)])
        if order == "ASC":
            rows.reverse()
        return [FailureRow.from_row(r) for r in rows]

    def count_failures(self, *, kind: str | None = None, include_resolved: bool = False) -> int:
        clauses, params = failure_filter(kind, include_resolved)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return int(self._query(f"SELECT count(*) AS n FROM failures {where}", params)[0]["n"])

    def failure_exists(self, *, kind: str | None, include_resolved: bool, newer_than: int | None = None, older_than: int | None = None) -> bool:
        """Whether a failure of this filter exists beyond an id (for the pager)."""
        clauses, params = failure_filter(kind, include_resolved)
        if newer_than is not None:
            clauses.append("id > ?")
            params.append(newer_than)
        if older_than is not None:
            clauses.append("id < ?")
            params.append(older_than)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return bool(self._query(f"SELECT 1 AS x FROM failures {where} LIMIT 1", params))

    def failures_of(self, remote_id: str, *, limit: int = PAGE) -> list[FailureRow]:
        """Every failure of one remote id, open and resolved, newest first."""
        rows = self._query("SELECT * FROM failures WHERE remote_id = ? ORDER BY id DESC LIMIT ?", [remote_id, _limit(limit)])
        return [FailureRow.from_row(r) for r in rows]

    def operations_of(self, remote_id: str, *, limit: int = 100) -> tuple[list[OperationRow], int]:
        """The calls and operator actions of one remote id, newest first, and how many there are in all."""
        rows = self._query("SELECT * FROM operations WHERE remote_id = ? ORDER BY id DESC LIMIT ?", [remote_id, _limit(limit)])
        total = int(self._query("SELECT count(*) AS n FROM operations WHERE remote_id = ?", [remote_id])[0]["n"])
        return [OperationRow.from_row(r) for r in rows], total

    def calls_per_run(self, run_ids: list[int]) -> dict[int, dict[str, int]]:
        """Calls made to Jobylon (operations with a method) per run and action."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        rows = self._query(
            f"SELECT run_id, action, count(*) AS n FROM operations WHERE run_id IN ({marks}) AND method IS NOT NULL GROUP BY run_id, action",
            list(run_ids),
        )
        calls: dict[int, dict[str, int]] = {}
        for row in rows:
            calls.setdefault(int(row["run_id"]), {})[row["action"]] = int(row["n"])
        return calls
