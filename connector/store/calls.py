"""The call path's records: an intent written before its call, the call's outcome after it (the
operation logged, the event mapped or marked, the item's failure opened, bumped or closed). A part of
the Store (connector.store.sqlite), kept apart from its engine parts and the pass's reads; the same SQL
runs on PostgreSQL, whose store adds the fence (`_fence`) that refuses a writer whose lease is gone."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from connector.clock import iso
from connector.store.records import Answered, EventState, FailureRecord, Intent

if TYPE_CHECKING:
    from connector.redact import Redactor


class Runner(Protocol):
    """What the SQL below needs of a connection: sqlite-utils' Database, or the PostgreSQL adapter."""

    def execute(self, sql: str, parameters: Any = ...) -> Any: ...


class CallRecords:
    """Mixed into the Store: the writes of the call path."""

    if TYPE_CHECKING:  # the Store's, which these methods use
        redactor: Redactor
        epoch: int | None

        def transaction(self) -> AbstractContextManager[Any]: ...
        def _call_transaction(self) -> AbstractContextManager[Any]: ...

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
        request_text: str | None = None,
        settle: Answered | None = None,
    ) -> Intent:
        """`request_text`: the JSON of `request` as it is sent, if the caller has it (kept as is when
        masking changes nothing: a payload is encoded once per call, not once per record).

        `settle`: the outcome of the caller's previous call, committed in the same transaction, before
        this intent: one lock turn and one commit per call instead of two. Should the intent fail (the
        fence, the disk), that outcome is still written, in a transaction of its own."""
        stored = None
        if request is not None:
            request, stored = self.redactor.masked_json(request, request_text)
        try:
            with self._call_transaction() as db:
                if settle is not None:
                    self._record_success(db, settle)
                self._fence(db)
                intent_id = db.execute(
                    "INSERT INTO intents(run_id, remote_id, action, method, event_id, request, content_hash, started_at, pid, epoch)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [run_id, remote_id, action, method, event_id, stored, content_hash, iso(now), os.getpid(), self.epoch],
                ).fetchone()[0]
                if method == "POST":
                    # A create in flight: the row exists (status pending, no event id) so a crash
                    # leaves a trace even for an interview we never mapped before.
                    db.execute(
                        """INSERT INTO events(remote_id, event_id, status) VALUES (?, NULL, 'pending')
                           ON CONFLICT(remote_id) DO UPDATE SET event_id = NULL, status = 'pending'""",
                        [remote_id],
                    )
        except BaseException:
            if settle is not None:
                self.record_answered(settle)
            raise
        return Intent(int(intent_id), run_id, remote_id, action, method, event_id, request, content_hash, now)

    def _fence(self, db: Any) -> None:
        """Refuse an intent from a writer that lost its lease: nothing to check with one process per
        SQLite file; the PostgreSQL store checks the writer's epoch here."""

    def record_success(
        self, intent: Intent, *, state: EventState, http_status: int | None, now: datetime, resolve: bool = True, payload_text: str | None = None
    ) -> None:
        """`payload_text`: the JSON of `state.payload`, if the caller has it (see write_intent)."""
        self.record_answered(Answered(intent, state, http_status, now, resolve, payload_text))

    def record_answered(self, answered: Answered) -> None:
        """A successful call's outcome, in a transaction of its own."""
        with self._call_transaction() as db:
            self._record_success(db, answered)

    def _record_success(self, db: Runner, answered: Answered) -> None:
        intent, state, now = answered.intent, answered.state, answered.now
        self._close_intent(
            db, intent, outcome="ok", http_status=answered.http_status, event_id=state.event_id, message=None, now=now, state_hash=state.state_hash
        )
        self._put_event(db, intent.remote_id, state, now, answered.payload_text)
        if answered.resolve:
            self._resolve_failures(db, intent.remote_id, now)

    def record_failure(self, intent: Intent, *, failure: FailureRecord, event_status: str, now: datetime) -> None:
        """The call failed: log it, open or bump the item's failure, mark the event."""
        with self._call_transaction() as db:
            self._close_intent(db, intent, outcome=failure.kind, http_status=failure.http_status, event_id=intent.event_id, message=failure.message, now=now)
            self._upsert_failure(db, intent.remote_id, intent.action, failure, now)
            db.execute("UPDATE events SET status = ? WHERE remote_id = ?", [event_status, intent.remote_id])

    def close_intent(self, intent: Intent, *, outcome: str, message: str, now: datetime) -> None:
        """Close an intent without touching the event or its failures (e.g. one to be repeated)."""
        with self.transaction() as db:
            self._close_intent(db, intent, outcome=outcome, http_status=None, event_id=intent.event_id, message=message, now=now)

    def _close_intent(
        self,
        db: Runner,
        intent: Intent,
        *,
        outcome: str,
        http_status: int | None,
        event_id: int | None,
        message: str | None,
        now: datetime,
        state_hash: str | None = None,
    ) -> None:
        db.execute("DELETE FROM intents WHERE id = ?", [intent.id])
        db.execute(
            "INSERT INTO operations(run_id, remote_id, event_id, action, method, http_status, outcome, message, at, duration_ms, state_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                state_hash,
            ],
        )

    def _put_event(self, db: Runner, remote_id: str, state: EventState, now: datetime, payload_text: str | None = None) -> None:
        payload = self.redactor.masked_json(state.payload, payload_text)[1] if state.payload is not None else None
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
                "payload": payload,
                "mutable_hash": state.mutable_hash,
                "fixed_hash": state.fixed_hash,
                "starts": iso(state.starts_at_utc),
                "ends": iso(state.ends_at_utc),
                "now": iso(now),
                "updated": iso(state.source_updated_at),
            },
        )

    def _upsert_failure(self, db: Runner, remote_id: str, action: str, failure: FailureRecord, now: datetime, *, only_if_changed: bool = False) -> bool:
        """Open a failure for this remote id, or update its open one; returns False when
        `only_if_changed` and the open failure already says the same (same kind, action and content)."""
        request = json.dumps(self.redactor.data(failure.request)) if failure.request is not None else None
        row = db.execute("SELECT kind, action, content_hash FROM failures WHERE remote_id = ? AND resolved_at IS NULL", [remote_id]).fetchone()
        if only_if_changed and row is not None and tuple(row) == (failure.kind, action, failure.content_hash):
            return False
        values = [
            action,
            failure.kind,
            failure.http_status,
            self.redactor.text(failure.message),
            request,
            self.redactor.text(failure.response) if failure.response else None,
            iso(now),
            iso(failure.next_attempt_at),
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

    def _resolve_failures(self, db: Runner, remote_id: str, now: datetime) -> None:
        db.execute("UPDATE failures SET resolved_at = ?, next_attempt_at = NULL WHERE remote_id = ? AND resolved_at IS NULL", [iso(now), remote_id])
