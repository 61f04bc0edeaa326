"""The state an operator reads and repairs: failures and operations listed, a mapping set, detached
or cleared for a new create (`connector resolve`, `failures`, `events`). A part of the Store, kept
apart from the pass's reads and writes (connector.store.sqlite); the same SQL runs on PostgreSQL."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from connector.clock import iso
from connector.store.records import FailureRow, OperationRow


def failure_filter(kind: str | None, include_resolved: bool, remote_id: str | None = None) -> tuple[list[str], list[Any]]:
    """The WHERE clauses and parameters choosing failures: open ones unless `include_resolved`."""
    clauses: list[str] = []
    params: list[Any] = []
    if not include_resolved:
        clauses.append("resolved_at IS NULL")
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    if remote_id is not None:
        clauses.append("remote_id = ?")
        params.append(remote_id)
    return clauses, params


class _Store(Protocol):
    """What these methods use of the Store they are part of."""

    def _query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]: ...
    def transaction(self) -> AbstractContextManager[Any]: ...
    def _resolve_failures(self, db: Any, remote_id: str, now: datetime) -> None: ...
    def _record_operation(
        self, db: Any, run_id: int | None, remote_id: str, event_id: int | None, action: str, message: str, now: datetime, *, state_hash: str | None = None
    ) -> None: ...


class OperatorRecords:
    """Mixed into the Store: the operator's reads and repairs."""

    def failures(self: _Store, *, kind: str | None = None, include_resolved: bool = False, remote_id: str | None = None) -> list[FailureRow]:
        clauses, params = failure_filter(kind, include_resolved, remote_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [FailureRow.from_row(r) for r in self._query(f"SELECT * FROM failures {where} ORDER BY id", params)]

    def failure(self: _Store, failure_id: int) -> FailureRow | None:
        rows = self._query("SELECT * FROM failures WHERE id = ?", [failure_id])
        return FailureRow.from_row(rows[0]) if rows else None

    def count_open_failures(self: _Store) -> dict[str, int]:
        return {r["kind"]: r["n"] for r in self._query("SELECT kind, count(*) AS n FROM failures WHERE resolved_at IS NULL GROUP BY kind ORDER BY kind")}

    def count_open_failures_with_status(self: _Store, http_status: int) -> int:
        return int(self._query("SELECT count(*) AS n FROM failures WHERE resolved_at IS NULL AND http_status = ?", [http_status])[0]["n"])

    def operations(self: _Store, remote_id: str | None = None) -> list[OperationRow]:
        if remote_id is None:
            rows = self._query("SELECT * FROM operations ORDER BY id")
        else:
            rows = self._query("SELECT * FROM operations WHERE remote_id = ? ORDER BY id", [remote_id])
        return [OperationRow.from_row(r) for r in rows]

    def last_request(self: _Store, remote_id: str) -> dict[str, Any] | None:
        """The payload of the latest failure of this remote id that kept one (an in-doubt create's body)."""
        rows = self._query("SELECT request FROM failures WHERE remote_id = ? AND request IS NOT NULL ORDER BY id DESC LIMIT 1", [remote_id])
        return json.loads(rows[0]["request"]) if rows else None

    # -- operator repairs --------------------------------------------------------------------

    def _record_operation(
        self: _Store,
        db: Any,
        run_id: int | None,
        remote_id: str,
        event_id: int | None,
        action: str,
        message: str,
        now: datetime,
        *,
        state_hash: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO operations(run_id, remote_id, event_id, action, outcome, message, at, duration_ms, state_hash) VALUES (?, ?, ?, ?, 'ok', ?, ?, 0, ?)",
            [run_id, remote_id, event_id, action, message, iso(now), state_hash],
        )

    def map_to_event(self: _Store, remote_id: str, event_id: int, fixed_hash: str | None, now: datetime, *, message: str) -> None:
        """Map the remote id to `event_id` with its update hash cleared, so the next pass sends one
        PUT that makes the event's update-able fields match the source."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO events(remote_id, event_id, status, fixed_hash, mutable_hash, first_synced_at, last_synced_at)
                   VALUES (?, ?, 'synced', ?, NULL, ?, ?)
                   ON CONFLICT(remote_id) DO UPDATE SET event_id = excluded.event_id, status = 'synced',
                     fixed_hash = excluded.fixed_hash, mutable_hash = NULL, last_synced_at = excluded.last_synced_at""",
                [remote_id, event_id, fixed_hash, iso(now), iso(now)],
            )
            self._resolve_failures(db, remote_id, now)
            self._record_operation(db, None, remote_id, event_id, "resolve", message, now)

    def detach(self: _Store, remote_id: str, now: datetime, *, message: str) -> None:
        """Status `detached` (the event id kept for the record) and its failures closed."""
        with self.transaction() as db:
            row = db.execute("SELECT event_id FROM events WHERE remote_id = ?", [remote_id]).fetchone()
            db.execute("UPDATE events SET status = 'detached', last_synced_at = ? WHERE remote_id = ?", [iso(now), remote_id])
            self._resolve_failures(db, remote_id, now)
            self._record_operation(db, None, remote_id, row[0] if row else None, "forget", message, now)

    def remote_id_for_event(self: _Store, event_id: int) -> str | None:
        """The remote id mapped to this live event, if any."""
        rows = self._query("SELECT remote_id FROM events WHERE event_id = ? AND status NOT IN ('deleted', 'in_doubt')", [event_id])
        return rows[0]["remote_id"] if rows else None

    def clear_for_create(self: _Store, remote_id: str, now: datetime, *, message: str) -> None:
        """Unmap the remote id (status failed, no hashes) and close its failures: the next pass creates it."""
        with self.transaction() as db:
            db.execute("UPDATE events SET event_id = NULL, status = 'failed', mutable_hash = NULL, fixed_hash = NULL WHERE remote_id = ?", [remote_id])
            self._resolve_failures(db, remote_id, now)
            self._record_operation(db, None, remote_id, None, "recreate", message, now)
