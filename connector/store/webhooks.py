"""The webhook tables (schema m003): what Jobylon's calendar_event deliveries said, and the
repairs `connector.webhooks` decides on, recorded. No policy: the callers decide.

`WebhookStore(store)` works through the Store's transaction and helpers, so the same standard SQL
(`INSERT ... ON CONFLICT`, no SQLite-only functions) runs wherever the Store runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from connector.clock import iso
from connector.store.records import EventRow, EventState, FailureRecord, ForwardRow, RsvpRow, WebhookEventRecord, WebhookEventRow
from connector.store.sqlite import Store

UNSETTLED = ("waiting", "ambiguous", "unmatched")  # decided for now, looked at again while recent


class WebhookStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- deliveries --------------------------------------------------------------------------

    def record_event(self, event: WebhookEventRecord, now: datetime) -> bool:
        """Store the event's latest state and its RSVPs in one transaction, marked `received` (to be
        settled). False, and nothing written, when the same content is stored already: a duplicate
        delivery changes nothing."""
        with self.store.transaction() as db:
            row = db.execute("SELECT content_hash FROM webhook_events WHERE event_id = ?", [event.event_id]).fetchone()
            if row is not None and row[0] == event.content_hash:
                return False
            values = {
                "event_id": event.event_id,
                "status": event.status,
                "title": event.title,
                "description": event.description,
                "duration": event.duration,
                "start_time": event.start_time,
                "timezone": event.timezone,
                "organizer": event.organizer,
                "participants": json.dumps(list(event.participants)),
                "location": event.location,
                "videoconferencing": int(event.videoconferencing),
                "video_link": event.video_link,
                "content_hash": event.content_hash,
                "now": iso(now),
            }
            db.execute(
                """INSERT INTO webhook_events(event_id, status, title, description, duration, start_time, timezone, organizer,
                                              participants, location, videoconferencing, video_link, content_hash,
                                              received_at, first_received_at, settled_as)
                   VALUES (:event_id, :status, :title, :description, :duration, :start_time, :timezone, :organizer,
                           :participants, :location, :videoconferencing, :video_link, :content_hash, :now, :now, 'received')
                   ON CONFLICT(event_id) DO UPDATE SET
                     status = excluded.status, title = excluded.title, description = excluded.description,
                     duration = excluded.duration, start_time = excluded.start_time, timezone = excluded.timezone,
                     organizer = excluded.organizer, participants = excluded.participants, location = excluded.location,
                     videoconferencing = excluded.videoconferencing, video_link = excluded.video_link,
                     content_hash = excluded.content_hash, received_at = excluded.received_at, settled_as = 'received'""",
                values,
            )
            db.execute("DELETE FROM webhook_rsvps WHERE event_id = ?", [event.event_id])
            for application_id, rsvp in dict(event.rsvps).items():
                db.execute(
                    "INSERT INTO webhook_rsvps(event_id, application_id, rsvp, received_at) VALUES (?, ?, ?, ?)",
                    [event.event_id, application_id, rsvp, iso(now)],
                )
            return True

    def event(self, event_id: int) -> WebhookEventRow | None:
        rows = self.store._query("SELECT * FROM webhook_events WHERE event_id = ?", [event_id])
        return WebhookEventRow.from_row(rows[0]) if rows else None

    def events_of(self, remote_id: str) -> list[WebhookEventRow]:
        """Events settled to this remote id (its own, a healed create, a likely duplicate)."""
        rows = self.store._query("SELECT * FROM webhook_events WHERE remote_id = ? ORDER BY event_id", [remote_id])
        return [WebhookEventRow.from_row(r) for r in rows]

    def rsvps(self, event_id: int) -> list[RsvpRow]:
        rows = self.store._query("SELECT * FROM webhook_rsvps WHERE event_id = ? ORDER BY application_id", [event_id])
        return [RsvpRow.from_row(r) for r in rows]

    def unsettled(self, received_since: datetime) -> list[WebhookEventRow]:
        """Events not settled yet (`received`), and those left waiting, ambiguous or unmatched since
        `received_since`, oldest first."""
        rows = self.store._query(
            f"""SELECT * FROM webhook_events
                WHERE settled_as = 'received' OR (settled_as IN ({", ".join("?" for _ in UNSETTLED)}) AND received_at >= ?)
                ORDER BY received_at, event_id""",
            [*UNSETTLED, iso(received_since)],
        )
        return [WebhookEventRow.from_row(r) for r in rows]

    def settle(self, event_id: int, content_hash: str, *, settled_as: str, remote_id: str | None, note: str | None) -> bool:
        """Record what the connector made of the event, if its content is still the one decided on."""
        with self.store.transaction() as db:
            cursor = db.execute(
                "UPDATE webhook_events SET settled_as = ?, remote_id = COALESCE(?, remote_id), note = ? WHERE event_id = ? AND content_hash = ?",
                [settled_as, remote_id, note, event_id, content_hash],
            )
            return bool(cursor.rowcount)

    # -- what the state knows of an event id and of the creates it may answer ------------------

    def holder(self, event_id: int) -> EventRow | None:
        """The mapping whose event id this is (any status)."""
        rows = self.store._query("SELECT * FROM events WHERE event_id = ? ORDER BY remote_id LIMIT 1", [event_id])
        return EventRow.from_row(rows[0]) if rows else None

    def named_by_calls(self, event_id: int) -> bool:
        """Whether a call of ours (or an operator's repair) named this event id."""
        return bool(self.store._query("SELECT 1 AS x FROM operations WHERE event_id = ? LIMIT 1", [event_id]))

    def creates_in_flight(self) -> list[tuple[str, dict[str, Any]]]:
        """(remote id, body) of every create whose intent is open: sent or about to be, not answered."""
        rows = self.store._query("SELECT remote_id, request FROM intents WHERE method = 'POST' AND request IS NOT NULL ORDER BY id")
        return [(r["remote_id"], json.loads(r["request"])) for r in rows]

    def creates_in_doubt(self) -> list[tuple[str, dict[str, Any]]]:
        """(remote id, the exact body sent) of every open in-doubt create."""
        rows = self.store._query(
            """SELECT f.remote_id, f.request FROM failures f JOIN events e ON e.remote_id = f.remote_id
               WHERE f.kind = 'in_doubt' AND f.resolved_at IS NULL AND f.request IS NOT NULL AND e.status = 'in_doubt'
               ORDER BY f.id"""
        )
        return [(r["remote_id"], json.loads(r["request"])) for r in rows]

    def count_in_doubt(self) -> int:
        return int(self.store._query("SELECT count(*) AS n FROM failures WHERE kind = 'in_doubt' AND resolved_at IS NULL")[0]["n"])

    def unanswered_bodies(self, remote_id: str) -> list[dict[str, Any]]:
        """Bodies of this item's calls whose effect may not be recorded: open intents, and the open
        failure's request (a call that failed after perhaps reaching Jobylon)."""
        rows = self.store._query(
            """SELECT request FROM intents WHERE remote_id = ? AND request IS NOT NULL
               UNION ALL
               SELECT request FROM failures WHERE remote_id = ? AND resolved_at IS NULL AND request IS NOT NULL""",
            [remote_id, remote_id],
        )
        return [json.loads(r["request"]) for r in rows]

    def recent_states(self, remote_id: str, event_id: int, limit: int) -> list[str]:
        """The `state_hash` recorded by the last `limit` successful calls (and links) of this remote
        id that left this event in Jobylon, newest first."""
        rows = self.store._query(
            "SELECT state_hash FROM operations WHERE remote_id = ? AND event_id = ? AND state_hash IS NOT NULL ORDER BY id DESC LIMIT ?",
            [remote_id, event_id, limit],
        )
        return [r["state_hash"] for r in rows]

    def deleting(self, event_id: int) -> bool:
        """A delete of this event is in flight."""
        return bool(self.store._query("SELECT 1 AS x FROM intents WHERE event_id = ? AND method = 'DELETE' LIMIT 1", [event_id]))

    def starting_at(self, starts_at_utc: datetime) -> list[EventRow]:
        """Live mappings whose event starts at this instant (look-alikes of an unknown event)."""
        rows = self.store._query(
            "SELECT * FROM events WHERE starts_at_utc = ? AND event_id IS NOT NULL AND status NOT IN ('in_doubt', 'deleted', 'detached') ORDER BY remote_id",
            [iso(starts_at_utc)],
        )
        return [EventRow.from_row(r) for r in rows]

    # -- repairs -------------------------------------------------------------------------------

    def link(self, remote_id: str, state: EventState, now: datetime, *, message: str) -> bool:
        """An in-doubt create did make this event: map it, close the item's failures and record the
        repair in `operations`, in one transaction. Only while the item is still in doubt and no other
        mapping holds the event id (False otherwise, nothing written)."""
        assert state.event_id is not None
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM events WHERE event_id = ? AND remote_id != ?", [state.event_id, remote_id]).fetchone():
                return False
            cursor = db.execute(
                """UPDATE events SET event_id = ?, status = ?, payload = ?, mutable_hash = ?, fixed_hash = ?, starts_at_utc = ?,
                          ends_at_utc = ?, first_synced_at = COALESCE(first_synced_at, ?), last_synced_at = ?
                   WHERE remote_id = ? AND status = 'in_doubt'""",
                [
                    state.event_id,
                    state.status,
                    json.dumps(state.payload) if state.payload is not None else None,
                    state.mutable_hash,
                    state.fixed_hash,
                    iso(state.starts_at_utc),
                    iso(state.ends_at_utc),
                    iso(now),
                    iso(now),
                    remote_id,
                ],
            )
            if cursor.rowcount == 0:
                return False
            self.store._resolve_failures(db, remote_id, now)
            self.store._record_operation(db, None, remote_id, state.event_id, "webhook_link", message, now, state_hash=state.state_hash)
            return True

    def report(self, remote_id: str, action: str, failure: FailureRecord, now: datetime) -> bool:
        """Open (or refresh) the item's `drift` failure, unless a failure of another kind is open
        (at most one per remote id: that one's handling comes first). True when recorded."""
        with self.store.transaction() as db:
            row = db.execute("SELECT kind FROM failures WHERE remote_id = ? AND resolved_at IS NULL", [remote_id]).fetchone()
            if row is not None and row[0] != failure.kind:
                return False
            self.store._upsert_failure(db, remote_id, action, failure, now, only_if_changed=True)
            return True

    def plan_repair(self, remote_id: str, event_id: int, repair: str, now: datetime, *, message: str) -> None:
        """Make the next pass send the source's version: `update` clears the update hash (one PUT),
        `recreate` the fixed one (delete + create); recorded in `operations`."""
        column = "mutable_hash" if repair == "update" else "fixed_hash"
        with self.store.transaction() as db:
            db.execute(
                f"UPDATE events SET {column} = NULL WHERE remote_id = ? AND event_id = ? AND status NOT IN ('detached', 'deleted', 'in_doubt')",
                [remote_id, event_id],
            )
            self.store._record_operation(db, None, remote_id, event_id, f"drift_{repair}", message, now)

    def resolve_drift(self, remote_id: str, now: datetime) -> int:
        """Close the item's open drift failure (Jobylon's copy is in line again)."""
        with self.store.transaction() as db:
            cursor = db.execute(
                "UPDATE failures SET resolved_at = ?, next_attempt_at = NULL WHERE remote_id = ? AND kind = 'drift' AND resolved_at IS NULL",
                [iso(now), remote_id],
            )
            return int(cursor.rowcount)

    # -- the partner's copy (`[webhooks.forward]`) ---------------------------------------------

    def queue_forward(self, event_id: int, remote_id: str | None, record: dict[str, Any], now: datetime) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO webhook_forwards(event_id, remote_id, record, created_at, attempts) VALUES (?, ?, ?, ?, 0)",
                [event_id, remote_id, json.dumps(record, ensure_ascii=False), iso(now)],
            )

    def due_forwards(self, now: datetime, limit: int = 100) -> list[ForwardRow]:
        """Unsent records whose next attempt is due, oldest first (a permanent failure waits for a replay)."""
        rows = self.store._query(
            """SELECT * FROM webhook_forwards WHERE sent_at IS NULL AND (kind IS NULL OR kind != 'permanent')
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?""",
            [iso(now), limit],
        )
        return [ForwardRow.from_row(r) for r in rows]

    def forwards(self, *, unsent_only: bool = True) -> list[ForwardRow]:
        where = "WHERE sent_at IS NULL" if unsent_only else ""
        return [ForwardRow.from_row(r) for r in self.store._query(f"SELECT * FROM webhook_forwards {where} ORDER BY id")]

    def forward_sent(self, forward_id: int, http_status: int, now: datetime) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE webhook_forwards SET sent_at = ?, attempts = attempts + 1, http_status = ?, kind = NULL, message = NULL, last_at = ?, next_attempt_at = NULL WHERE id = ?",
                [iso(now), http_status, iso(now), forward_id],
            )

    def forward_failed(self, forward_id: int, failure: FailureRecord, now: datetime) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE webhook_forwards SET attempts = attempts + 1, kind = ?, http_status = ?, message = ?, last_at = ?, next_attempt_at = ? WHERE id = ?",
                [failure.kind, failure.http_status, self.store.redactor.text(failure.message), iso(now), iso(failure.next_attempt_at), forward_id],
            )

    def retry_forwards(self) -> int:
        """Every unsent record due now, permanent failures included (an operator's replay)."""
        with self.store.transaction() as db:
            return int(db.execute("UPDATE webhook_forwards SET kind = NULL, next_attempt_at = NULL WHERE sent_at IS NULL").rowcount)

    # -- counts for `connector status` ---------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        q = self.store._query
        return {
            "events": int(q("SELECT count(*) AS n FROM webhook_events")[0]["n"]),
            "by_status": {r["status"]: r["n"] for r in q("SELECT status, count(*) AS n FROM webhook_events GROUP BY status ORDER BY status")},
            "settled_as": {r["settled_as"]: r["n"] for r in q("SELECT settled_as, count(*) AS n FROM webhook_events GROUP BY settled_as ORDER BY settled_as")},
            "rsvps": {r["rsvp"]: r["n"] for r in q("SELECT rsvp, count(*) AS n FROM webhook_rsvps GROUP BY rsvp ORDER BY rsvp")},
            "healed": int(q("SELECT count(*) AS n FROM operations WHERE action = 'webhook_link'")[0]["n"]),
            "forwards_unsent": int(q("SELECT count(*) AS n FROM webhook_forwards WHERE sent_at IS NULL")[0]["n"]),
            "last_received_at": q("SELECT max(received_at) AS t FROM webhook_events")[0]["t"],
        }
