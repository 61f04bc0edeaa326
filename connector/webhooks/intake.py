"""A delivery's effects on the state: store it, settle it (`matching` decides), apply the decision.

`Intake.receive` stores a checked event durably first (the receiver answers 2xx only after that),
then settles it; `Intake.settle_pending` settles again what is left unsettled: a delivery that
arrived before the answer to its own create was recorded, one whose settling failed, one that
matched nothing yet. The service runs it on a timer and `connector run` after every pass.
Decisions are applied with conditional writes (a link only while the item is still in doubt), so
a pass or an operator's repair running at the same time cannot be undone or doubled.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from connector.clock import iso, utcnow
from connector.config import Settings
from connector.errors import DriftError
from connector.model import fixed_hash, mutable_hash, read_marker, without_marker, zone
from connector.store import EventRow, EventState, FailureRecord, Store
from connector.store.records import WebhookEventRecord, WebhookEventRow
from connector.store.webhooks import WebhookStore
from connector.webhooks import matching
from connector.webhooks.payload import CalendarEvent, state_hash

log = logging.getLogger("connector.webhooks")
RESETTLE_WINDOW = timedelta(days=7)  # unmatched deliveries are looked at again this long (Jobylon retries for 3.5 days)


def to_record(event: CalendarEvent) -> WebhookEventRecord:
    return WebhookEventRecord(
        event_id=event.event_id,
        status=event.status,
        title=event.title,
        description=event.description,
        duration=event.duration,
        start_time=event.start_time,
        timezone=event.timezone,
        organizer=event.organizer,
        participants=event.participants,
        rsvps=event.rsvps,
        location=event.location,
        videoconferencing=event.videoconferencing,
        video_link=event.video_link,
        content_hash=event.content_hash,
    )


def from_row(row: WebhookEventRow, rsvps: list[tuple[int, str]]) -> CalendarEvent:
    return CalendarEvent(
        event_id=row.event_id,
        status=row.status,
        title=row.title,
        description=row.description,
        duration=row.duration,
        start_time=row.start_time,
        timezone=row.timezone,
        organizer=row.organizer,
        participants=tuple(row.participant_ids),
        rsvps=tuple(rsvps),
        location=row.location,
        videoconferencing=bool(row.videoconferencing),
        video_link=row.video_link,
    )


def _item(row: EventRow | None) -> matching.Item | None:
    return None if row is None else matching.Item(row.remote_id, row.status, row.event_id, row.payload_data)


def _span(body: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """The UTC start and end of a create body (local wall time in its zone, a duration in minutes)."""
    try:
        start = datetime.fromisoformat(str(body["start_time"])).replace(tzinfo=zone(str(body["timezone"]))).astimezone(UTC)
        return start, start + timedelta(minutes=int(body["duration"]))
    except (KeyError, TypeError, ValueError, OSError):
        return None


def forward_record(event: CalendarEvent, remote_id: str | None, received_at: datetime) -> dict[str, Any]:
    """The normalised record `[webhooks.forward]` posts to the partner."""
    return {
        "remote_id": remote_id,
        "event_id": event.event_id,
        "status": event.status,
        "rsvps": [{"application_id": application_id, "rsvp": rsvp} for application_id, rsvp in event.rsvps],
        "video_link": event.video_link,
        "received_at": iso(received_at),
    }


@dataclass
class Settled:
    """What one settle did, for logs, tests and the chaos run."""

    decisions: Counter[str] = field(default_factory=Counter)
    linked: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)


Received = Literal["stored", "duplicate", "stale"]


class Intake:
    def __init__(self, settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.tables = WebhookStore(store)
        self.on_drift: matching.OnDrift = settings.sync.on_drift
        self.forwarding = bool(settings.webhooks.forward.url.get_secret_value())
        self.clock = clock
        self._lock = threading.Lock()  # one settle at a time: decide and apply must see the same state

    def receive(self, event: CalendarEvent) -> Received:
        """Store the event (durably: the caller answers 2xx after this), then settle it. A duplicate
        delivery, or a late one of an older state of ours (`matching.late_redelivery`), changes
        nothing: the newer state and its RSVPs stay. A failure to settle leaves the delivery stored
        as `received`, settled by the next `settle_pending`."""
        if self._late_redelivery(event):
            return "stale"
        if not self.tables.record_event(to_record(event), self.clock()):
            return "duplicate"
        try:
            self.settle(event)
        except Exception:
            log.exception("calendar_event %d stored, settling it failed; it is tried again later", event.event_id)
        return "stored"

    def _late_redelivery(self, event: CalendarEvent) -> bool:
        item = _item(self.tables.holder(event.event_id))
        if item is None or self.tables.event(event.event_id) is None:
            return False  # nothing newer stored to keep
        return matching.late_redelivery(event, item, self.tables.recent_states(item.remote_id, event.event_id, matching.RECENT_STATES))

    def settle_pending(self) -> Settled:
        """Settle every delivery left unsettled (see the module docstring)."""
        summary = Settled()
        for row in self.tables.unsettled(self.clock() - RESETTLE_WINDOW):
            rsvps = [(r.application_id, r.rsvp) for r in self.tables.rsvps(row.event_id)]
            self.settle(from_row(row, rsvps), summary)
        return summary

    def settle(self, event: CalendarEvent, summary: Settled | None = None) -> matching.Decision:
        with self._lock:
            decision = matching.settle(self._situation(event))
            self._apply(event, decision, summary or Settled())
            return decision

    def _situation(self, event: CalendarEvent) -> matching.Situation:
        tables = self.tables
        holder = _item(tables.holder(event.event_id))
        if holder is not None:
            return matching.Situation(event, holder=holder)
        if tables.named_by_calls(event.event_id):
            return matching.Situation(event, seen=True)
        marked = read_marker(event.description)
        look_alikes: list[matching.Item] = []
        span = _span(event.fields())
        if marked is None and span is not None:
            look_alikes = [item for row in tables.starting_at(span[0]) if (item := _item(row)) is not None]
        return matching.Situation(
            event,
            marker_item=_item(self.store.event(marked)) if marked is not None else None,
            in_flight=[matching.Candidate(rid, body) for rid, body in tables.creates_in_flight()],
            in_doubt=[matching.Candidate(rid, body) for rid, body in tables.creates_in_doubt()],
            look_alikes=look_alikes,
        )

    def _apply(self, event: CalendarEvent, decision: matching.Decision, summary: Settled) -> None:
        now = self.clock()
        summary.decisions[decision.settled_as] += 1
        note: str | None = None
        remote_id: str | None = None
        settled_as = decision.settled_as
        if isinstance(decision, matching.Link):
            remote_id = decision.remote_id
            if self._link(event, decision, now):
                summary.linked.append(decision.remote_id)
                note = f"healed the in-doubt create of {remote_id} ({decision.how} match)"
                note = self._check_drift(event, remote_id, summary, now) or note
            else:
                settled_as, note = "waiting", f"matched the in-doubt create of {remote_id}, which changed meanwhile; looked at again"
        elif isinstance(decision, matching.Mapped):
            remote_id = decision.remote_id
            note = self._check_drift(event, remote_id, summary, now)
        elif isinstance(decision, matching.Duplicate):
            remote_id = decision.remote_id
            note = self._duplicate(event, decision, now)
        elif isinstance(decision, matching.Wait):
            note = f"a create of {decision.remote_id} is in flight; settled once its answer is recorded"
        elif isinstance(decision, matching.Ambiguous):
            note = f"matches every field of the in-doubt creates of {', '.join(decision.remote_ids)}: a person decides (connector resolve)"
            log.warning("calendar_event %d %s", event.event_id, note)
        elif isinstance(decision, matching.Stale):
            note = decision.note
        else:
            note = decision.note
        if self.tables.settle(event.event_id, event.content_hash, settled_as=settled_as, remote_id=remote_id, note=note) and self.forwarding:
            if settled_as in ("mapped", "linked"):
                self.tables.queue_forward(event.event_id, remote_id, forward_record(event, remote_id, now), now)

    def _link(self, event: CalendarEvent, decision: matching.Link, now: datetime) -> bool:
        request = dict(decision.request)
        span = _span(request)
        # The fixed fields as sent (the Interview's own hash); the update-able ones as Jobylon holds
        # them, so the next pass sends one PUT if they differ from the source.
        seen = {**request, **{name: value for name, value in event.fields().items() if name in ("title", "description", "duration", "start_time", "timezone")}}
        state = EventState(
            event_id=event.event_id,
            status="synced",
            payload=request,
            mutable_hash=mutable_hash(without_marker(seen)),
            fixed_hash=fixed_hash(request),
            starts_at_utc=span[0] if span else None,
            ends_at_utc=span[1] if span else None,
            state_hash=state_hash(request),  # the state the create left in Jobylon
        )
        message = f"the create in doubt reached Jobylon as event {event.event_id}: settled by its calendar_event webhook ({decision.how} match)"
        linked = self.tables.link(decision.remote_id, state, now, message=message)
        if linked:
            log.warning("%s: %s", decision.remote_id, message, extra={"remote_id": decision.remote_id, "event_id": event.event_id, "outcome": "healed"})
        return linked

    def _check_drift(self, event: CalendarEvent, remote_id: str, summary: Settled, now: datetime) -> str | None:
        row = self.store.event(remote_id)
        item = _item(row)
        if item is None or item.event_id != event.event_id:
            return None
        # Read in this order: a call's intent is closed and its state recorded in one transaction, so
        # a call of ours whose answer is recorded while these reads run is seen by one or the other.
        expected = self.tables.unanswered_bodies(remote_id)
        recent = self.tables.recent_states(remote_id, event.event_id, matching.RECENT_STATES)
        found = matching.drift(event, item, expected=expected, recent=recent, deleting=self.tables.deleting(event.event_id))
        if found is None:
            if item.live:
                self.tables.resolve_drift(remote_id, now)
            return None
        message = matching.drift_message(found, event.event_id, remote_id, self.on_drift)
        error = DriftError(message, remote_id=remote_id, event_id=event.event_id)
        reported = self.tables.report(remote_id, "drift", FailureRecord(kind=error.kind, message=message, content_hash=event.content_hash), now)
        repair = matching.repair(found, self.on_drift)
        if repair is not None:
            self.tables.plan_repair(remote_id, event.event_id, repair, now, message=message)
        summary.drift.append(remote_id)
        log.warning(
            "drift: %s%s",
            message,
            "" if reported else " (not recorded: another failure of it is open)",
            extra={"remote_id": remote_id, "event_id": event.event_id, "outcome": "drift"},
        )
        return message

    def _duplicate(self, event: CalendarEvent, decision: matching.Duplicate, now: datetime) -> str:
        how = "its marker" if decision.how == "marker" else "every field"
        message = (
            f"event {event.event_id} in Jobylon looks like a second copy of {decision.remote_id} (mapped to event {decision.original_event_id}; "
            f"{how} matches); the connector never deletes it: if it is a copy, delete it in Jobylon"
        )
        error = DriftError(message, remote_id=decision.remote_id, event_id=event.event_id)
        self.tables.report(decision.remote_id, "duplicate", FailureRecord(kind=error.kind, message=message, content_hash=event.content_hash), now)
        log.warning("likely duplicate: %s", message, extra={"remote_id": decision.remote_id, "event_id": event.event_id, "outcome": "duplicate"})
        return message


def repair_drift(store: Store, remote_ids: Iterable[str], now: datetime) -> list[str]:
    """`connector replay` of drift failures: make the pass that follows put the source's version back
    in Jobylon: a PUT over a change, delete + create for a cancellation or a fixed field. A likely
    duplicate's report is closed (the person looked at it). The remote ids repaired."""
    tables = WebhookStore(store)
    repaired = []
    for remote_id in remote_ids:
        open_drift = store.failures(kind="drift", remote_id=remote_id)
        row = store.event(remote_id)
        if not open_drift or row is None or row.event_id is None:
            continue
        if open_drift[0].action == "duplicate":
            store.resolve_failures([remote_id], now, actions=("duplicate",))
            continue
        seen = tables.event(row.event_id)
        item = _item(row)
        found = None
        if seen is not None and item is not None:
            found = matching.drift(from_row(seen, []), item, recent=tables.recent_states(remote_id, row.event_id, matching.RECENT_STATES))
        if found is None:  # in line again, as far as the last delivery says
            tables.resolve_drift(remote_id, now)
            continue
        repair = "update" if found.kind == "changed" else "recreate"
        tables.plan_repair(remote_id, row.event_id, repair, now, message=f"operator: replay of a drift failure ({repair})")
        repaired.append(remote_id)
    return repaired
