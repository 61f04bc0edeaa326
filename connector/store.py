"""The state database: all SQL lives here. Mappings, failures, runs, the call audit, intents, meta.

Crash safety rests on one rule: before a call to Jobylon the engine writes an *intent* row, and
after it the *outcome* (operation, event row, failure) replaces the intent in one transaction.
An intent found at start-up belongs to a process that died mid-call (we hold the process lock,
so no live process owns it) and is settled by `settle_orphaned_intents`:
- a create (POST) may have reached Jobylon: the item becomes `in_doubt`, never re-sent by itself;
- an update or delete is idempotent: the intent is dropped and the next plan repeats it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from connector.errors import LockedError
from connector.plan import Known
from connector.redact import Redactor
from connector.retry import next_attempt_at

SCHEMA_VERSION = 1
migrations = Migrations("connector")


@migrations()
def m001_initial(db: Database) -> None:
    db["events"].create(
        {
            "remote_id": str,
            "event_id": int,
            "status": str,
            "payload": str,
            "mutable_hash": str,
            "fixed_hash": str,
            "starts_at_utc": str,
            "ends_at_utc": str,
            "first_synced_at": str,
            "last_synced_at": str,
            "source_updated_at": str,
        },
        pk="remote_id",
    )
    db["events"].create_index(["status"])
    db["failures"].create(
        {
            "id": int,
            "remote_id": str,
            "action": str,
            "kind": str,
            "http_status": int,
            "message": str,
            "request": str,
            "response": str,
            "attempts": int,
            "first_at": str,
            "last_at": str,
            "next_attempt_at": str,
            "resolved_at": str,
            "content_hash": str,
        },
        pk="id",
    )
    db.execute("CREATE INDEX idx_failures_open ON failures(remote_id) WHERE resolved_at IS NULL")
    db["runs"].create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "outcome": str,
            "complete_fetch": int,
            "counts": str,
            "duration_ms": int,
            "error": str,
        },
        pk="id",
    )
    db["operations"].create(
        {
            "id": int,
            "run_id": int,
            "remote_id": str,
            "event_id": int,
            "action": str,
            "method": str,
            "http_status": int,
            "outcome": str,
            "message": str,
            "at": str,
            "duration_ms": int,
        },
        pk="id",
    )
    db["operations"].create_index(["remote_id"])
    db["intents"].create(
        {
            "id": int,
            "run_id": int,
            "remote_id": str,
            "action": str,
            "method": str,
            "event_id": int,
            "request": str,
            "content_hash": str,
            "started_at": str,
            "pid": int,
        },
        pk="id",
    )
    db["meta"].create({"key": str, "value": str}, pk="key")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment is not None else None


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Intent:
    id: int
    run_id: int | None
    remote_id: str
    action: str
    method: str
    event_id: int | None
    request: dict[str, Any] | None
    content_hash: str | None
    started_at: datetime


@dataclass(frozen=True)
class EventState:
    """What to store for a remote id after a successful call."""

    event_id: int | None
    status: str
    payload: dict[str, Any] | None = None
    mutable_hash: str | None = None
    fixed_hash: str | None = None
    starts_at_utc: datetime | None = None
    ends_at_utc: datetime | None = None
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class FailureRecord:
    kind: str  # transient | permanent | in_doubt
    message: str
    http_status: int | None = None
    request: Any = None
    response: str | None = None
    content_hash: str | None = None
    # Transient failures: seconds to wait before the n-th retry (the last step repeats).
    backoff_schedule: tuple[float, ...] | None = None


def _secure_path(path: Path) -> None:
    """Create the folder 0700 and the database file 0600 before SQLite touches them; SQLite gives
    its -wal and -shm files the database file's mode."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


class Store:
    def __init__(self, path: str | os.PathLike[str], *, redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        self.redactor = redactor or Redactor()
        _secure_path(self.path)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self.db = Database(conn, execute_plugins=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.RLock()
        self._lock_file: Any = None
        with self._lock:
            if migrations.pending(self.db) and self.db["events"].exists():
                self.backup_path = self._backup(conn)
            migrations.apply(self.db)
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            self.db.conn.commit()

    backup_path: Path | None = None

    def _backup(self, conn: sqlite3.Connection) -> Path:
        """A consistent copy of the database before a schema migration touches it."""
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.bak-{stamp}")
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
        copy = sqlite3.connect(str(target))
        try:
            conn.backup(copy)
        finally:
            copy.close()
        return target

    def close(self) -> None:
        self.release_lock()
        self.db.close()

    # -- the process lock -------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Refuse to run beside another connector process on the same database."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = os.fdopen(os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600), "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LockedError(f"{self.path} is in use by connector process {holder}; stop it first (two processes would send the same calls twice)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self._lock, self.db.atomic():
            yield self.db

    def _query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [key, value])

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
            ids = list(dict.fromkeys(remote_ids))
            batches = [
                (f"{sql} WHERE e.remote_id IN ({', '.join('?' * len(chunk))})", chunk)
                for chunk in (ids[start : start + 500] for start in range(0, len(ids), 500))
            ]
        result: dict[str, Known] = {}
        with self._lock:
            for query, params in batches:
                for row in self.db.execute(query, params):
                    result[row[0]] = Known(
                        remote_id=row[0],
                        event_id=row[1],
                        status=row[2],
                        mutable_hash=row[3],
                        fixed_hash=row[4],
                        ends_at_utc=parse_iso(row[5]),
                        failure_kind=row[6],
                        next_attempt_at=parse_iso(row[7]),
                        failed_content_hash=row[8],
                    )
        return result

    def count_live_events(self) -> int:
        """Mappings with an event in Jobylon."""
        return self._query("SELECT count(*) AS n FROM events WHERE event_id IS NOT NULL AND status != 'deleted'")[0]["n"]

    def event(self, remote_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM events WHERE remote_id = ?", [remote_id])
        return rows[0] if rows else None

    def events(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM events ORDER BY remote_id")

    def count_events_by_status(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._query("SELECT status, count(*) AS n FROM events GROUP BY status ORDER BY status")}

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, started_at: datetime, complete_fetch: bool | None = None) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs(started_at, outcome, complete_fetch) VALUES (?, 'running', ?)",
                [iso(started_at), None if complete_fetch is None else int(complete_fetch)],
            )
            return int(cursor.lastrowid or 0)

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
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, counts = ?, complete_fetch = ?, duration_ms = ?, error = ? WHERE id = ?",
                [
                    iso(finished_at),
                    outcome,
                    json.dumps(counts),
                    None if complete_fetch is None else int(complete_fetch),
                    int((finished_at - started_at).total_seconds() * 1000),
                    self.redactor.text(error) if error else None,
                    run_id,
                ],
            )
            if outcome in ("ok", "failed_items") and complete_fetch:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_complete_fetch_at', ?)", [iso(finished_at)])

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit])
        for row in rows:
            row["counts"] = json.loads(row["counts"]) if row["counts"] else {}
            row["complete_fetch"] = None if row["complete_fetch"] is None else bool(row["complete_fetch"])
        return rows

    # -- intents and outcomes ----------------------------------------------------------------

    def write_intent(
        self,
        *,
        run_id: int | None,
        remote_id: str,
        action: str,
        method: str,
        event_id: int | None,
        request: dict[str, Any] | None,
        content_hash: str | None,
        now: datetime,
    ) -> Intent:
        request = self.redactor.data(request) if request is not None else None
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO intents(run_id, remote_id, action, method, event_id, request, content_hash, started_at, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, remote_id, action, method, event_id, json.dumps(request) if request is not None else None, content_hash, iso(now), os.getpid()],
            )
            if method == "POST":
                # A create in flight: the row exists (status pending, no event id) so a crash
                # leaves a trace even for an interview we never mapped before.
                db.execute(
                    """INSERT INTO events(remote_id, event_id, status) VALUES (?, NULL, 'pending')
                       ON CONFLICT(remote_id) DO UPDATE SET event_id = NULL, status = 'pending'""",
                    [remote_id],
                )
            return Intent(int(cursor.lastrowid or 0), run_id, remote_id, action, method, event_id, request, content_hash, now)

    def record_success(self, intent: Intent, *, state: EventState, http_status: int | None, now: datetime, resolve: bool = True) -> None:
        with self.transaction() as db:
            self._close_intent(db, intent, outcome="ok", http_status=http_status, event_id=state.event_id, message=None, now=now)
            self._put_event(db, intent.remote_id, state, now)
            if resolve:
                self._resolve_failures(db, intent.remote_id, now)

    def record_failure(self, intent: Intent, *, failure: FailureRecord, event_status: str, now: datetime) -> None:
        """The call failed: log it, open or bump the item's failure, mark the event."""
        with self.transaction() as db:
            self._close_intent(db, intent, outcome=failure.kind, http_status=failure.http_status, event_id=intent.event_id, message=failure.message, now=now)
            self._upsert_failure(db, intent.remote_id, intent.action, failure, now)
            db.execute("UPDATE events SET status = ? WHERE remote_id = ?", [event_status, intent.remote_id])

    def _close_intent(
        self, db: Database, intent: Intent, *, outcome: str, http_status: int | None, event_id: int | None, message: str | None, now: datetime
    ) -> None:
        db.execute("DELETE FROM intents WHERE id = ?", [intent.id])
        db.execute(
            "INSERT INTO operations(run_id, remote_id, event_id, action, method, http_status, outcome, message, at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                intent.run_id,
                intent.remote_id,
                event_id,
                intent.action,
                intent.method,
                http_status,
                outcome,
                self.redactor.text(message) if message else None,
                iso(now),
                int((now - intent.started_at).total_seconds() * 1000),
            ],
        )

    def _put_event(self, db: Database, remote_id: str, state: EventState, now: datetime) -> None:
        db.execute(
            """INSERT INTO events(remote_id, event_id, status, payload, mutable_hash, fixed_hash, starts_at_utc, ends_at_utc,
                                  first_synced_at, last_synced_at, source_updated_at)
               VALUES (:remote_id, :event_id, :status, :payload, :mutable_hash, :fixed_hash, :starts, :ends, :now, :now, :updated)
               ON CONFLICT(remote_id) DO UPDATE SET
                 event_id = excluded.event_id, status = excluded.status, payload = excluded.payload,
                 mutable_hash = excluded.mutable_hash, fixed_hash = excluded.fixed_hash,
                 starts_at_utc = excluded.starts_at_utc, ends_at_utc = excluded.ends_at_utc,
                 first_synced_at = COALESCE(events.first_synced_at, excluded.first_synced_at),
                 last_synced_at = excluded.last_synced_at, source_updated_at = excluded.source_updated_at""",
            {
                "remote_id": remote_id,
                "event_id": state.event_id,
                "status": state.status,
                "payload": json.dumps(self.redactor.data(state.payload)) if state.payload is not None else None,
                "mutable_hash": state.mutable_hash,
                "fixed_hash": state.fixed_hash,
                "starts": iso(state.starts_at_utc),
                "ends": iso(state.ends_at_utc),
                "now": iso(now),
                "updated": iso(state.source_updated_at),
            },
        )

    def _upsert_failure(self, db: Database, remote_id: str, action: str, failure: FailureRecord, now: datetime, *, only_if_changed: bool = False) -> bool:
        """Open a failure for this remote id, or update its open one; returns False when
        `only_if_changed` and the open failure already says the same (same kind, action and content)."""
        request = json.dumps(self.redactor.data(failure.request)) if failure.request is not None else None
        row = db.execute("SELECT attempts, kind, action, content_hash FROM failures WHERE remote_id = ? AND resolved_at IS NULL", [remote_id]).fetchone()
        if only_if_changed and row is not None and (row[1], row[2], row[3]) == (failure.kind, action, failure.content_hash):
            return False
        attempts = (row[0] if row else 0) + 1
        retry_at = next_attempt_at(attempts, list(failure.backoff_schedule), now) if failure.backoff_schedule else None
        values = [
            action,
            failure.kind,
            failure.http_status,
            self.redactor.text(failure.message),
            request,
            self.redactor.text(failure.response) if failure.response else None,
            iso(now),
            iso(retry_at),
            failure.content_hash,
        ]
        cursor = db.execute(
            """UPDATE failures SET action = ?, kind = ?, http_status = ?, message = ?, request = COALESCE(?, request),
                   response = ?, attempts = attempts + 1, last_at = ?, next_attempt_at = ?, content_hash = ?
               WHERE remote_id = ? AND resolved_at IS NULL""",
            values + [remote_id],
        )
        if cursor.rowcount == 0:
            db.execute(
                """INSERT INTO failures(action, kind, http_status, message, request, response, last_at, next_attempt_at, content_hash,
                                        remote_id, attempts, first_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)""",
                values + [remote_id, iso(now)],
            )
        return True

    def _resolve_failures(self, db: Database, remote_id: str, now: datetime) -> None:
        db.execute("UPDATE failures SET resolved_at = ?, next_attempt_at = NULL WHERE remote_id = ? AND resolved_at IS NULL", [iso(now), remote_id])

    def record_item_failure(self, remote_id: str, action: str, failure: FailureRecord, now: datetime, *, only_if_changed: bool = False) -> bool:
        """A failure that involved no call: an invalid item, a change that needs an operator.
        With `only_if_changed`, the same failure seen again on a later poll is not a new attempt."""
        with self.transaction() as db:
            return self._upsert_failure(db, remote_id, action, failure, now, only_if_changed=only_if_changed)

    def resolve_failures(self, remote_ids: list[str], now: datetime, actions: tuple[str, ...] | None = None) -> int:
        """Close open failures of these remote ids (of the given actions only, if set)."""
        if not remote_ids:
            return 0
        total = 0
        action_sql = f" AND action IN ({', '.join('?' * len(actions))})" if actions else ""
        with self.transaction() as db:
            for start in range(0, len(remote_ids), 500):
                chunk = remote_ids[start : start + 500]
                cursor = db.execute(
                    f"UPDATE failures SET resolved_at = ?, next_attempt_at = NULL WHERE resolved_at IS NULL{action_sql} AND remote_id IN ({', '.join('?' * len(chunk))})",
                    [iso(now), *(actions or ()), *chunk],
                )
                total += cursor.rowcount
        return total

    def open_failure_ids(self, kinds: tuple[str, ...], actions: tuple[str, ...]) -> set[str]:
        rows = self._query(
            f"SELECT remote_id FROM failures WHERE resolved_at IS NULL AND kind IN ({', '.join('?' * len(kinds))}) AND action IN ({', '.join('?' * len(actions))})",
            [*kinds, *actions],
        )
        return {r["remote_id"] for r in rows}

    def forget_event(self, remote_id: str, now: datetime, *, run_id: int | None, action: str, message: str) -> None:
        """Mark a mapping deleted without a call (nothing in Jobylon to delete, or an operator said so)."""
        with self.transaction() as db:
            db.execute("UPDATE events SET status = 'deleted', event_id = NULL, last_synced_at = ? WHERE remote_id = ?", [iso(now), remote_id])
            db.execute(
                "INSERT INTO operations(run_id, remote_id, action, outcome, message, at, duration_ms) VALUES (?, ?, ?, 'ok', ?, ?, 0)",
                [run_id, remote_id, action, message, iso(now)],
            )
            self._resolve_failures(db, remote_id, now)

    # -- crash recovery ----------------------------------------------------------------------

    def orphaned_intents(self) -> list[Intent]:
        rows = self._query("SELECT * FROM intents ORDER BY id")
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
            for r in rows
        ]

    def settle_orphaned_intents(self, now: datetime) -> list[tuple[Intent, str]]:
        """Settle intents left by a process that died mid-call (see the module docstring)."""
        settled = []
        for intent in self.orphaned_intents():
            if intent.method == "POST":
                failure = FailureRecord(
                    kind="in_doubt",
                    message="the connector stopped after sending this create and before its answer was recorded; the event may or may not exist in Jobylon",
                    request=intent.request,
                    content_hash=intent.content_hash,
                )
                self.record_failure(intent, failure=failure, event_status="in_doubt", now=now)
                settled.append((intent, "in_doubt"))
            else:
                with self.transaction() as db:
                    self._close_intent(
                        db,
                        intent,
                        outcome="interrupted",
                        http_status=None,
                        event_id=intent.event_id,
                        message="process stopped mid-call; the plan repeats it",
                        now=now,
                    )
                settled.append((intent, "repeat"))
        return settled

    # -- failures for operators --------------------------------------------------------------

    def failures(self, *, kind: str | None = None, include_resolved: bool = False, remote_id: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if not include_resolved:
            clauses.append("resolved_at IS NULL")
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if remote_id is not None:
            clauses.append("remote_id = ?")
            params.append(remote_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query(f"SELECT * FROM failures {where} ORDER BY id", params)

    def failure(self, failure_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM failures WHERE id = ?", [failure_id])
        return rows[0] if rows else None

    def count_open_failures(self) -> dict[str, int]:
        return {r["kind"]: r["n"] for r in self._query("SELECT kind, count(*) AS n FROM failures WHERE resolved_at IS NULL GROUP BY kind ORDER BY kind")}

    def operations(self, remote_id: str | None = None) -> list[dict[str, Any]]:
        if remote_id is None:
            return self._query("SELECT * FROM operations ORDER BY id")
        return self._query("SELECT * FROM operations WHERE remote_id = ? ORDER BY id", [remote_id])

    # -- operator repairs --------------------------------------------------------------------

    def record_operator_action(self, db: Database, remote_id: str, event_id: int | None, action: str, message: str, now: datetime) -> None:
        db.execute(
            "INSERT INTO operations(remote_id, event_id, action, outcome, message, at, duration_ms) VALUES (?, ?, ?, 'ok', ?, ?, 0)",
            [remote_id, event_id, action, message, iso(now)],
        )

    def resolve_with_event(self, remote_id: str, event_id: int, fixed_hash: str | None, now: datetime) -> None:
        """An in-doubt create did reach Jobylon as `event_id`. Its update-able fields are not known
        for sure, so the next pass sends one PUT to make them match the source."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO events(remote_id, event_id, status, fixed_hash, mutable_hash, first_synced_at, last_synced_at)
                   VALUES (?, ?, 'synced', ?, NULL, ?, ?)
                   ON CONFLICT(remote_id) DO UPDATE SET event_id = excluded.event_id, status = 'synced',
                     fixed_hash = excluded.fixed_hash, mutable_hash = NULL, last_synced_at = excluded.last_synced_at""",
                [remote_id, event_id, fixed_hash, iso(now), iso(now)],
            )
            self._resolve_failures(db, remote_id, now)
            self.record_operator_action(db, remote_id, event_id, "resolve", f"operator: the create reached Jobylon as event {event_id}", now)

    def forget(self, remote_id: str, now: datetime) -> None:
        """Drop the mapping; Jobylon is not touched."""
        with self.transaction() as db:
            row = db.execute("SELECT event_id FROM events WHERE remote_id = ?", [remote_id]).fetchone()
            db.execute("DELETE FROM events WHERE remote_id = ?", [remote_id])
            self._resolve_failures(db, remote_id, now)
            self.record_operator_action(db, remote_id, row[0] if row else None, "forget", "operator: mapping dropped, Jobylon untouched", now)

    def mark_for_create(self, remote_id: str, now: datetime) -> None:
        """The in-doubt (or failed) create did not reach Jobylon: the next pass creates it anew."""
        with self.transaction() as db:
            db.execute("UPDATE events SET event_id = NULL, status = 'failed', mutable_hash = NULL, fixed_hash = NULL WHERE remote_id = ?", [remote_id])
            self._resolve_failures(db, remote_id, now)
            self.record_operator_action(db, remote_id, None, "recreate", "operator: create anew", now)

    def last_request(self, remote_id: str) -> dict[str, Any] | None:
        """The payload of the open failure of this remote id (the in-doubt create's body)."""
        rows = self._query("SELECT request FROM failures WHERE remote_id = ? AND request IS NOT NULL ORDER BY id DESC LIMIT 1", [remote_id])
        return json.loads(rows[0]["request"]) if rows else None
