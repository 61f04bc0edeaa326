"""The Store: the state tables in SQL over sqlite-utils, no policy. This module holds its engine
parts (the connection, the lock, transactions, the call path's group commit), the pass's reads and
the run records; the call path's writes are `connector.store.calls`, the operator's reads and
repairs `connector.store.operators`.

The store records what its callers decided: the kind of a failure and when it may be retried, what
an intent left by a dead process becomes, which pass outcomes mark a complete fetch. It opens
the file through `connector.store.file` (modes, the backup before a migration) and hands out the
typed records of `connector.store.records`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from connector.clock import iso, parse_iso, utcnow
from connector.plan import Known
from connector.redact import Redactor
from connector.store.calls import CallRecords
from connector.store.file import ProcessLock, backup, explain, secure_path
from connector.store.operators import OperatorRecords
from connector.store.records import EventRow, FailureRecord, Intent, RunRow
from connector.store.schema import SCHEMA_VERSION, migrations

CHUNK = 500  # ids per IN (...) query, below SQLite's variable limit
# Standard SQL only below this module's engine parts (__init__, transaction, _query, _errors):
# connector.store.postgres runs the same statements on PostgreSQL.
SET_META = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
# Group commit of the call path (docs/design.md §7, Durability): its commits are fsynced at least this often.
GROUP_COMMIT_SECONDS = 0.2


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


class Store(OperatorRecords, CallRecords):
    """The state in a SQLite file. `location` names it in messages; `pass_lock()` is the lock a
    pass or a repair holds (docs/design.md §7, Locks)."""

    backup_path: Path | None = None
    engine = "sqlite"
    epoch: int | None = None  # the writer's lease epoch (PostgreSQL replicas); intents carry it
    _group_commit = False  # set by a SQLite file's __init__; another engine commits the call path as any write
    _synchronous = "FULL"
    _durable_at = float("-inf")  # monotonic time of the last call-path commit made durable against a power cut

    def __init__(self, path: str | os.PathLike[str], *, redactor: Redactor | None = None, create: bool = True) -> None:
        """Open (with `create`, make) the database and apply pending migrations. Any problem with the
        file or SQLite is a StateError naming the path and what to do."""
        self.path = Path(path)
        self.location = str(self.path)
        self.redactor = redactor or Redactor()
        self._lock = threading.RLock()
        secure_path(self.path, create=create)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self.db: Any = Database(conn, execute_plugins=False)
        try:
            with self._errors():
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                if migrations.pending(self.db) and self.db["events"].exists():
                    self.backup_path = backup(conn, self.path)
                migrations.apply(self.db)
                self.db.execute(SET_META, ["schema_version", str(SCHEMA_VERSION)])
                self.db.conn.commit()
        except BaseException:
            conn.close()
            raise
        self._group_commit = True

    def close(self) -> None:
        self.db.close()

    def pass_lock(self) -> ProcessLock:
        return ProcessLock(self.path)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise explain(self.path, exc) from None

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock, self._errors():
            if self._synchronous != "FULL":
                self._set_synchronous("FULL")
            with self.db.atomic():
                yield self.db

    @contextmanager
    def _call_transaction(self) -> Iterator[Any]:
        """A write of the call path: an intent before its call, the outcome after it.

        SQLite commits it with `synchronous = NORMAL`: in WAL mode the commit is in the WAL file
        when it returns, so it survives a crash of the process (kill -9), but it reaches the disk
        only with a later fsync. At least every GROUP_COMMIT_SECONDS one commit is made with FULL,
        whose fsync of the WAL makes every commit before it durable against a power cut too. Two
        fsyncs per call (1-2 ms each, the store lock held) capped a pass far below the rate
        Jobylon's latency allows."""
        if not self._group_commit:
            with self.transaction() as db:
                yield db
            return
        with self._lock:
            now = time.monotonic()
            durable = now - self._durable_at >= GROUP_COMMIT_SECONDS
            level = "FULL" if durable else "NORMAL"
            if self._synchronous != level:
                with self._errors():
                    self._set_synchronous(level)
            with self._errors(), self.db.atomic():
                yield self.db.conn  # the statements below speak plain sqlite3 here: no wrapper per statement
            if durable:
                self._durable_at = now

    def _set_synchronous(self, level: str) -> None:
        """Outside a transaction, under the store lock."""
        self.db.execute(f"PRAGMA synchronous={level}")
        self._synchronous = level

    def _query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self._lock, self._errors():
            return list(self.db.query(sql, params))

    def _tuples(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return [tuple(row) for row in self.db.execute(sql, params)]

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction() as db:
            db.execute(SET_META, [key, value])

    # -- what we know ------------------------------------------------------------------------

    def known(self, remote_ids: Iterable[str] | None = None) -> dict[str, Known]:
        """Mappings with their open failure: all of them in one query, or only those of
        `remote_ids` (an incremental fetch), in chunks."""
        sql = """
            SELECT e.remote_id, e.event_id, e.status, e.mutable_hash, e.fixed_hash, e.ends_at_utc,
                   f.kind AS failure_kind, f.next_attempt_at, f.content_hash AS failed_content_hash
            FROM events e
            LEFT JOIN failures f ON f.remote_id = e.remote_id AND f.resolved_at IS NULL
        """
        if remote_ids is None:
            batches: list[tuple[str, list[Any]]] = [(sql, [])]
        else:
            batches = [(f"{sql} WHERE e.remote_id IN ({_marks(chunk)})", chunk) for chunk in _chunks(list(dict.fromkeys(remote_ids)))]
        result: dict[str, Known] = {}
        for query, params in batches:
            for row in self._tuples(query, params):
                # Known's fields in their order (positional: a fifth less time per row than keywords)
                result[row[0]] = Known(row[0], row[1], row[2], row[3], row[4], parse_iso(row[5]), row[6], parse_iso(row[7]), row[8])
        return result

    def count_live_events(self) -> int:
        """Mappings with an event in Jobylon."""
        return int(self._query("SELECT count(*) AS n FROM events WHERE event_id IS NOT NULL AND status NOT IN ('deleted', 'detached')")[0]["n"])

    def event(self, remote_id: str) -> EventRow | None:
        rows = self._query("SELECT * FROM events WHERE remote_id = ?", [remote_id])
        return EventRow.from_row(rows[0]) if rows else None

    def events(self) -> list[EventRow]:
        return [EventRow.from_row(r) for r in self._query("SELECT * FROM events ORDER BY remote_id")]

    def count_events_by_status(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._query("SELECT status, count(*) AS n FROM events GROUP BY status ORDER BY status")}

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, started_at: datetime) -> int:
        with self.transaction() as db:
            return int(db.execute("INSERT INTO runs(started_at, outcome) VALUES (?, 'running') RETURNING id", [iso(started_at)]).fetchone()[0])

    def finish_run(
        self,
        run_id: int,
        *,
        outcome: str,
        counts: dict[str, int],
        complete_fetch: bool | None,
        error: str | None,
        started_at: datetime,
        finished_at: datetime,
        mark_complete_fetch: bool = False,
        note: str | None = None,
    ) -> None:
        """Close the run record; with `mark_complete_fetch`, also note `last_complete_fetch_at`."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, counts = ?, complete_fetch = ?, duration_ms = ?, error = ?, note = ? WHERE id = ?",
                [
                    iso(finished_at),
                    outcome,
                    json.dumps(counts),
                    None if complete_fetch is None else int(complete_fetch),
                    int((finished_at - started_at).total_seconds() * 1000),
                    self.redactor.text(error) if error else None,
                    note,
                    run_id,
                ],
            )
            if mark_complete_fetch:
                db.execute(SET_META, ["last_complete_fetch_at", iso(finished_at)])

    def close_unfinished_runs(self, now: datetime, *, outcome: str, error: str) -> int:
        """Close run records left `running` by a process that died (the caller holds the pass lock)."""
        with self.transaction() as db:
            return int(db.execute("UPDATE runs SET finished_at = ?, outcome = ?, error = ? WHERE outcome = 'running'", [iso(now), outcome, error]).rowcount)

    def is_new(self) -> bool:
        """No mapping and no finished pass yet: a new installation, or a wrong state.path."""
        return not self._query("SELECT 1 FROM events LIMIT 1") and not self._query("SELECT 1 FROM runs WHERE outcome != 'running' LIMIT 1")

    def runs(self, limit: int = 10) -> list[RunRow]:
        return [RunRow.from_row(r) for r in self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit])]

    def record_item_failure(self, remote_id: str, action: str, failure: FailureRecord, now: datetime, *, only_if_changed: bool = False) -> bool:
        """A failure that involved no call: an invalid item, a change that needs an operator.
        With `only_if_changed`, the same failure seen again on a later poll is not a new attempt."""
        with self.transaction() as db:
            return self._upsert_failure(db, remote_id, action, failure, now, only_if_changed=only_if_changed)

    def attempts(self, remote_id: str) -> int:
        """Attempts so far of the open failure of this remote id (0 without one)."""
        rows = self._query("SELECT attempts FROM failures WHERE remote_id = ? AND resolved_at IS NULL", [remote_id])
        return int(rows[0]["attempts"]) if rows else 0

    def resolve_failures(self, remote_ids: list[str], now: datetime, actions: tuple[str, ...] | None = None) -> int:
        """Close open failures of these remote ids (of the given actions only, if set)."""
        total = 0
        action_sql = f" AND action IN ({_marks(actions)})" if actions else ""
        with self.transaction() as db:
            for chunk in _chunks(remote_ids):
                cursor = db.execute(
                    f"UPDATE failures SET resolved_at = ?, next_attempt_at = NULL WHERE resolved_at IS NULL{action_sql} AND remote_id IN ({_marks(chunk)})",
                    [iso(now), *(actions or ()), *chunk],
                )
                total += cursor.rowcount
        return total

    def open_failure_ids(self, kinds: tuple[str, ...], actions: tuple[str, ...]) -> set[str]:
        rows = self._query(
            f"SELECT remote_id FROM failures WHERE resolved_at IS NULL AND kind IN ({_marks(kinds)}) AND action IN ({_marks(actions)})",
            [*kinds, *actions],
        )
        return {r["remote_id"] for r in rows}

    def forget_event(self, remote_id: str, now: datetime, *, run_id: int | None, action: str, message: str) -> None:
        """Mark a mapping deleted without a call (nothing in Jobylon to delete)."""
        with self.transaction() as db:
            db.execute("UPDATE events SET status = 'deleted', event_id = NULL, last_synced_at = ? WHERE remote_id = ?", [iso(now), remote_id])
            self._record_operation(db, run_id, remote_id, None, action, message, now)
            self._resolve_failures(db, remote_id, now)

    def orphaned_intents(self) -> list[Intent]:
        """Intents whose outcome was never written: their process died mid-call."""
        return [
            Intent(
                r["id"],
                r["run_id"],
                r["remote_id"],
                r["action"],
                r["method"],
                r["event_id"],
                json.loads(r["request"]) if r["request"] else None,
                r["content_hash"],
                parse_iso(r["started_at"]) or utcnow(),
            )
            for r in self._query("SELECT * FROM intents ORDER BY id")
        ]
