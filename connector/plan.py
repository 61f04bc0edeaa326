"""The diff: desired interviews x known mappings -> the actions that make Jobylon match. Pure, no I/O.

Decision table for a desired interview `d` and what we know of it, `k` (first match wins):

    d invalid                                  -> Invalid (its mapped event is left alone)
    k detached (resolve --forget)              -> nothing, ever: an operator took it out of sync
    k in_doubt                                 -> Skip: an operator must resolve it first
    k open failure, parked or backing off      -> Skip until the backoff ends / the content changes
    d ended                                    -> Skip: ended events are left alone
    d cancelled, k has an event                -> Delete
    d cancelled, no event                      -> nothing
    (an invalid item the source marks deleted: detached, in doubt, held, ended as above from `k`;
     k has an event -> Delete, else nothing)
    no event for k (new, deleted, failed)      -> Create
    fixed fields changed                       -> Recreate, or Skip(report) by policy
    update-able fields changed                 -> Update
    otherwise                                  -> nothing (unchanged)

A known mapping whose remote id is absent from the fetch is deleted only when the fetch was
complete, nothing in it was unidentifiable, and its event has not already ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from connector.model import Interview, InvalidItem

EventStatus = Literal["synced", "pending", "in_doubt", "failed", "deleted", "detached"]


@dataclass(frozen=True, slots=True)
class Known:
    """What the state database knows about one remote id."""

    remote_id: str
    event_id: int | None
    status: EventStatus
    mutable_hash: str | None = None
    fixed_hash: str | None = None
    ends_at_utc: datetime | None = None
    # From the open failure of this remote id, if any:
    failure_kind: str | None = None
    next_attempt_at: datetime | None = None
    failed_content_hash: str | None = None


@dataclass(frozen=True)
class Create:
    interview: Interview
    name = "create"

    @property
    def remote_id(self) -> str:
        return self.interview.remote_id

    event_id = None


@dataclass(frozen=True)
class Update:
    interview: Interview
    event_id: int
    name = "update"

    @property
    def remote_id(self) -> str:
        return self.interview.remote_id


@dataclass(frozen=True)
class Recreate:
    """Delete the event and create it anew: a fixed field (participants, organizer, location,
    videoconferencing) changed, and PUT cannot change those."""

    interview: Interview
    event_id: int
    reason: str
    name = "recreate"

    @property
    def remote_id(self) -> str:
        return self.interview.remote_id


@dataclass(frozen=True)
class Delete:
    """Delete the event; with `event_id` None there is nothing in Jobylon and only the mapping goes."""

    remote_id: str
    event_id: int | None
    reason: str
    by_absence: bool = False  # absent from a complete fetch, rather than cancelled at the source
    name = "delete"


@dataclass(frozen=True)
class Skip:
    remote_id: str
    event_id: int | None
    reason: str
    report: bool = False  # True: an operator must act (recorded as a failure)
    content_hash: str | None = None
    name = "skip"


@dataclass(frozen=True)
class Invalid:
    item: InvalidItem
    event_id: int | None
    name = "invalid"

    @property
    def remote_id(self) -> str:
        return self.item.label


Action = Create | Update | Recreate | Delete | Skip | Invalid
CALL_ACTIONS = (Create, Update, Recreate, Delete)


@dataclass(frozen=True)
class Policy:
    on_fixed_field_change: Literal["recreate", "report"] = "recreate"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    unchanged: int = 0
    deletions_held_back: str | None = None  # why deletions by absence were not planned

    @property
    def calls(self) -> list[Create | Update | Recreate | Delete]:
        return [a for a in self.actions if isinstance(a, CALL_ACTIONS)]

    @property
    def deletes(self) -> list[Delete]:
        return [a for a in self.actions if isinstance(a, Delete) and a.event_id is not None]

    def count(self, name: str) -> int:
        return sum(1 for a in self.actions if a.name == name)


def plan(
    desired: Iterable[Interview],
    known: Mapping[str, Known],
    now: datetime,
    *,
    invalid: Iterable[InvalidItem] = (),
    complete: bool = True,
    unidentified: int = 0,
    policy: Policy = Policy(),
) -> Plan:
    result = Plan()
    seen: set[str] = set()
    for item in invalid:
        k = known.get(item.remote_id) if item.remote_id is not None else None
        if item.remote_id is not None:
            seen.add(item.remote_id)
        if item.deleted and item.remote_id is not None:
            gone = _deleted_at_source(item, k, now)
            if gone is None:
                result.unchanged += 1
            else:
                result.actions.append(gone)
            continue
        result.actions.append(Invalid(item, k.event_id if k else None))
    for d in desired:
        seen.add(d.remote_id)
        action = _decide(d, known.get(d.remote_id), now, policy)
        if action is None:
            result.unchanged += 1
        else:
            result.actions.append(action)
    if not complete:
        return result
    if unidentified:
        result.deletions_held_back = f"{unidentified} item(s) in the fetch had no readable remote id"
        return result
    for remote_id, k in known.items():
        if remote_id in seen or k.status in ("deleted", "detached"):
            continue
        if k.status == "in_doubt":
            result.actions.append(Skip(remote_id, k.event_id, "in doubt and absent from the source: resolve it"))
        elif k.failure_kind is not None and (held := _held(k, None, now)) is not None:
            result.actions.append(held)
        elif k.event_id is None:
            result.actions.append(Delete(remote_id, None, "absent from a complete fetch; never reached Jobylon", by_absence=True))
        elif k.ends_at_utc is not None and k.ends_at_utc <= now:
            continue
        else:
            result.actions.append(Delete(remote_id, k.event_id, "absent from a complete fetch", by_absence=True))
    return result


def _decide(d: Interview, k: Known | None, now: datetime, policy: Policy) -> Action | None:
    if k is not None and k.status == "detached":
        return None
    event_id = k.event_id if k is not None and k.status != "deleted" else None
    if k is not None and k.status == "in_doubt":
        return Skip(d.remote_id, k.event_id, "create in doubt: resolve it (connector resolve)")
    if k is not None and k.failure_kind is not None and (held := _held(k, d.content_hash, now)) is not None:
        return held
    if d.ends_at_utc <= now:
        return Skip(d.remote_id, event_id, "event has ended") if event_id is None and not d.cancelled else None
    if d.cancelled:
        return Delete(d.remote_id, event_id, "cancelled at the source") if event_id is not None else None
    if event_id is None or k is None:
        return Create(d)
    if k.fixed_hash != d.fixed_hash:
        if policy.on_fixed_field_change == "report":
            return Skip(
                d.remote_id,
                event_id,
                'a field PUT cannot change (participants, organizer, location or videoconferencing) changed; on_fixed_field_change = "report"',
                report=True,
                content_hash=d.content_hash,
            )
        return Recreate(d, event_id, "participants, organizer, location or videoconferencing changed")
    if k.mutable_hash != d.mutable_hash:
        return Update(d, event_id)
    return None


def _deleted_at_source(item: InvalidItem, k: Known | None, now: datetime) -> Action | None:
    """An item the source marks deleted whose other fields do not validate: only its id matters."""
    assert item.remote_id is not None
    if k is None or k.status in ("deleted", "detached"):
        return None
    if k.status == "in_doubt":
        return Skip(item.remote_id, k.event_id, "create in doubt: resolve it (connector resolve)")
    if k.failure_kind is not None and (held := _held(k, item.content_hash, now)) is not None:
        return held
    if k.event_id is None or (k.ends_at_utc is not None and k.ends_at_utc <= now):
        return None
    return Delete(item.remote_id, k.event_id, "deleted at the source")


def _held(k: Known, content_hash: str | None, now: datetime) -> Skip | None:
    """An open failure holds the item back: a permanent one until the content changes (or a
    replay), a transient one until its next attempt time."""
    event_id = k.event_id if k.status != "deleted" else None
    if k.failure_kind == "permanent" and k.failed_content_hash == content_hash:
        return Skip(k.remote_id, event_id, "parked after a permanent failure until the source changes or a replay")
    if k.failure_kind == "transient" and k.next_attempt_at is not None and k.next_attempt_at > now:
        return Skip(k.remote_id, event_id, f"transient failure; next attempt at {k.next_attempt_at.isoformat()}")
    return None


def guard(
    planned: Plan,
    *,
    mapped: int,
    fetched: int,
    complete: bool,
    max_deletes: int,
    max_delete_fraction: float,
) -> str | None:
    """Why the planned deletions must not run, or None. `mapped` counts events live in Jobylon.

    `max_deletes` caps every deletion; `max_delete_fraction` caps deletions by absence, the kind a
    truncated or misconfigured source produces (a cancellation is an explicit per-item signal)."""
    deletes = len(planned.deletes)
    if not deletes:
        return None
    if complete and fetched == 0 and mapped > 0:
        return f"the source returned no interviews while {mapped} events are mapped; refusing to delete {deletes}"
    if deletes > max_deletes:
        return f"{deletes} deletions planned, above sync.max_deletes = {max_deletes}"
    absent = sum(1 for d in planned.deletes if d.by_absence)
    if mapped and absent / mapped > max_delete_fraction:
        return f"{absent} of {mapped} mapped events ({absent / mapped:.0%}) are absent from the source, above sync.max_delete_fraction = {max_delete_fraction}"
    return None
