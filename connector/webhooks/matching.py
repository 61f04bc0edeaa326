"""What a calendar_event webhook means for the state: which interview an event belongs to, and
whether Jobylon's copy drifted from what we sent. Pure, no I/O: the caller reads the state, this
decides, the caller writes (`connector.webhooks.intake`).

Which interview an event belongs to (`settle`), for an event `e` (first match wins):

    a mapping holds e's id                          -> Mapped: then check for drift (below)
    our calls named e, no mapping holds it now      -> Stale: an event we deleted or replaced
    e's description ends with a marker naming R:
      R has a create in flight                      -> Wait: its answer decides (settled again later)
      R is in doubt                                 -> Link(R): the unanswered create made e
      R is mapped to e itself (just now)            -> Mapped
      R is mapped to another live event             -> Duplicate(R): likely a second copy, reported
      otherwise (unknown, deleted, detached R)      -> Unmatched
    no marker, comparing every create field with the exact request each create sent:
      an in-flight create's request                 -> Wait
      exactly one in-doubt create's request         -> Link(R)
      two or more in-doubt creates' requests        -> Ambiguous: a person decides
      a mapping of e itself (just now)              -> Mapped
      a live mapping's last payload                 -> Duplicate(R): likely a second copy, reported
      nothing                                       -> Unmatched (looked at again while recent)

Drift of a mapped event (`drift`), for the mapping `k` holding e (first match wins):

    k detached or deleted, or a delete of e in flight -> none: nothing of ours to keep in line
    e cancelled                                      -> Drift(cancelled)
    no payload recorded for k                        -> none: nothing to compare with
    e matches k's payload, or a call in flight or
      failed for k (its answer may not be recorded)  -> none (in line)
    e is a state one of k's last successful calls
      left (a late redelivery of an older state)     -> none (stale, not a change inside Jobylon)
    only fields PUT can change differ                -> Drift(changed)
    a field only a recreate can change differs       -> Drift(fixed)

And what `sync.on_drift` does about it (`repair`): "report" leaves the event alone; "update"
makes the next pass PUT the source's version over a change, and reports what a PUT cannot undo
(a cancellation, a fixed field); "recreate" also re-creates the event in those two cases. Every
drift is reported as a `drift` failure either way, closed by the next successful call.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from connector.model import FIXED_FIELDS, UPDATE_FIELDS, read_marker
from connector.webhooks.payload import CalendarEvent, create_fields, state_hash

RECENT_STATES = 8  # the states of an item's last successful calls a delivery may repeat (Jobylon retries lost ones late)


@dataclass(frozen=True)
class Item:
    """A row of the event map, as matching needs it."""

    remote_id: str
    status: str
    event_id: int | None
    payload: Mapping[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.event_id is not None and self.status not in ("in_doubt", "deleted", "detached")


@dataclass(frozen=True)
class Candidate:
    """A create whose outcome we do not know (in flight, or in doubt) and the exact body it sent."""

    remote_id: str
    request: Mapping[str, Any]


@dataclass(frozen=True)
class Situation:
    """What the state says about one event id and the creates it might answer."""

    event: CalendarEvent
    holder: Item | None = None  # the mapping whose event id it is
    seen: bool = False  # our calls named the event id (operations), whether or not a mapping holds it now
    marker_item: Item | None = None  # the mapping of the remote id the marker names
    in_flight: Sequence[Candidate] = ()
    in_doubt: Sequence[Candidate] = ()
    look_alikes: Sequence[Item] = ()  # live mappings whose payload may equal the event's fields


@dataclass(frozen=True)
class Mapped:
    remote_id: str
    settled_as = "mapped"


@dataclass(frozen=True)
class Stale:
    note: str = "an event our calls deleted or replaced"
    settled_as = "stale"


@dataclass(frozen=True)
class Wait:
    remote_id: str
    settled_as = "waiting"


@dataclass(frozen=True)
class Link:
    remote_id: str
    request: Mapping[str, Any]
    how: Literal["marker", "exact"]
    settled_as = "linked"


@dataclass(frozen=True)
class Duplicate:
    remote_id: str
    original_event_id: int | None
    how: Literal["marker", "exact"]
    settled_as = "duplicate"


@dataclass(frozen=True)
class Ambiguous:
    remote_ids: tuple[str, ...]
    settled_as = "ambiguous"


@dataclass(frozen=True)
class Unmatched:
    note: str
    settled_as = "unmatched"


Decision = Mapped | Stale | Wait | Link | Duplicate | Ambiguous | Unmatched
UNSETTLED = ("waiting", "ambiguous", "unmatched")  # looked at again by later settles


def same_fields(event: CalendarEvent, body: Mapping[str, Any]) -> bool:
    """Every create field of the event equals the body's, as `create_fields` compares them."""
    return create_fields(event.fields()) == create_fields(dict(body))


def settle(situation: Situation) -> Decision:
    event = situation.event
    if situation.holder is not None:
        return Mapped(situation.holder.remote_id)
    if situation.seen:
        return Stale()
    marked = read_marker(event.description)
    if marked is not None:
        return _by_marker(marked, situation)
    if any(same_fields(event, c.request) for c in situation.in_flight):
        return Wait(next(c.remote_id for c in situation.in_flight if same_fields(event, c.request)))
    matches = sorted({c.remote_id: c for c in situation.in_doubt if same_fields(event, c.request)}.items())
    if len(matches) == 1:
        remote_id, candidate = matches[0]
        return Link(remote_id, candidate.request, "exact")
    if matches:
        return Ambiguous(tuple(remote_id for remote_id, _ in matches))
    for item in situation.look_alikes:
        if item.event_id == event.event_id:  # mapped while the situation was being read
            return Mapped(item.remote_id)
        if item.live and item.payload is not None and same_fields(event, item.payload):
            return Duplicate(item.remote_id, item.event_id, "exact")
    return Unmatched("no mapping, create in flight or in-doubt create matches every field")


def _by_marker(remote_id: str, situation: Situation) -> Decision:
    item = situation.marker_item
    if any(c.remote_id == remote_id for c in situation.in_flight):
        return Wait(remote_id)
    doubt = next((c for c in situation.in_doubt if c.remote_id == remote_id), None)
    if doubt is not None and item is not None and item.status == "in_doubt":
        return Link(remote_id, doubt.request, "marker")
    if item is not None and item.event_id == situation.event.event_id:  # mapped while the situation was being read
        return Mapped(remote_id)
    if item is not None and item.live:
        return Duplicate(remote_id, item.event_id, "marker")
    if item is None:
        return Unmatched(f"its marker names {remote_id}, which the state database does not hold")
    return Unmatched(f"its marker names {remote_id}, which is {item.status} and not in doubt")


# -- drift ---------------------------------------------------------------------------------------

DriftKind = Literal["cancelled", "changed", "fixed"]
OnDrift = Literal["report", "update", "recreate"]


@dataclass(frozen=True)
class Drift:
    kind: DriftKind
    fields: tuple[str, ...] = ()

    def describe(self, event_id: int, remote_id: str) -> str:
        if self.kind == "cancelled":
            return f"event {event_id} was cancelled inside Jobylon while the source still schedules {remote_id}"
        return f"event {event_id} was changed inside Jobylon ({', '.join(self.fields)} differ from what {remote_id} sent)"


def drift(
    event: CalendarEvent, item: Item, *, expected: Sequence[Mapping[str, Any]] = (), recent: Collection[str] = (), deleting: bool = False
) -> Drift | None:
    """How Jobylon's copy of a mapped event differs from ours. `expected`: bodies of calls for the
    item whose outcome is not recorded as sent (in flight, or failed after maybe reaching Jobylon);
    `recent`: the `state_hash` of the state each of the item's last successful calls left in the
    event (Jobylon's object carries no version: a state of ours is stale, never drift);
    `deleting`: a delete of this event is in flight."""
    if item.status in ("detached", "deleted") or deleting:
        return None
    if event.cancelled:
        return Drift("cancelled")
    if item.payload is None:
        return None
    seen = create_fields(event.fields())
    ours = create_fields(dict(item.payload))
    if seen == ours or any(seen == create_fields({**item.payload, **body}) for body in expected):
        return None
    if state_hash(event.fields()) in recent:
        return None
    differ = tuple(name for name in (*UPDATE_FIELDS, *FIXED_FIELDS) if seen[name] != ours[name])
    if any(name in FIXED_FIELDS for name in differ):
        return Drift("fixed", differ)
    return Drift("changed", differ)


def late_redelivery(event: CalendarEvent, item: Item | None, recent: Collection[str]) -> bool:
    """Whether the delivery repeats an older state one of the item's own calls left in the event,
    after a newer one: Jobylon retrying a lost delivery late. Stored, it would roll the event's
    fields and RSVPs back to that older delivery's. A cancellation is never taken for one."""
    if item is None or item.payload is None or item.event_id != event.event_id or item.status in ("detached", "deleted") or event.cancelled:
        return False
    seen = state_hash(event.fields())
    return seen != state_hash(dict(item.payload)) and seen in recent


def repair(found: Drift, on_drift: OnDrift) -> Literal["update", "recreate"] | None:
    """What the next pass does about the drift: a PUT, a delete + create, or nothing (reported)."""
    if on_drift == "report":
        return None
    if found.kind == "changed":
        return "update"
    return "recreate" if on_drift == "recreate" else None


def drift_message(found: Drift, event_id: int, remote_id: str, on_drift: OnDrift) -> str:
    action = repair(found, on_drift)
    if action == "update":
        then = "the next pass sends the source's version (a PUT)"
    elif action == "recreate":
        then = "the next pass re-creates it (delete + create)"
    elif on_drift == "update":
        then = 'a PUT cannot undo this (on_drift = "update"): left alone for a person'
    else:
        then = f'left alone (on_drift = "{on_drift}")'
    return f"{found.describe(event_id, remote_id)}; {then}"
