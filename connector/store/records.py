"""The typed records the store takes and hands out; times are the ISO text of `connector.clock.iso`."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self, cast


class _Row:
    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        """The record from a row dict with at least its fields' columns."""
        return cast(Any, cls)(**{f.name: row[f.name] for f in fields(cast(Any, cls))})


@dataclass(frozen=True)
class Intent:
    """A call about to be made; replaced by its outcome in one transaction after the call."""

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
    state_hash: str | None = None  # the event's whole state after the call, hashed by the caller (kept in `operations`)


@dataclass(frozen=True)
class Answered:
    """A call Jobylon answered whose outcome is not written yet: `Store.record_success`'s arguments,
    carried by a worker into the transaction of its next intent (`Store.write_intent(settle=...)`)."""

    intent: Intent
    state: EventState
    http_status: int | None
    now: datetime
    resolve: bool = True
    payload_text: str | None = None


@dataclass(frozen=True)
class FailureRecord:
    """A failure to record; the caller decides its kind and when it may be tried again."""

    kind: str  # transient | permanent | in_doubt
    message: str
    http_status: int | None = None
    request: Any = None
    response: str | None = None
    content_hash: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class EventRow(_Row):
    """A row of `events`: one remote id and its Jobylon event."""

    remote_id: str
    event_id: int | None
    status: str
    payload: str | None  # the JSON body last sent
    mutable_hash: str | None
    fixed_hash: str | None
    starts_at_utc: str | None
    ends_at_utc: str | None
    first_synced_at: str | None
    last_synced_at: str | None
    source_updated_at: str | None

    @property
    def payload_data(self) -> dict[str, Any] | None:
        return json.loads(self.payload) if self.payload else None

    @property
    def live(self) -> bool:
        """Mapped to an event that exists in Jobylon, as far as we know."""
        return self.event_id is not None and self.status not in ("in_doubt", "deleted", "detached")


@dataclass(frozen=True)
class FailureRow(_Row):
    """A row of `failures`: the dead-letter record of one remote id."""

    id: int
    remote_id: str
    action: str
    kind: str
    http_status: int | None
    message: str | None
    request: str | None  # the redacted JSON body sent
    response: str | None
    attempts: int
    first_at: str | None
    last_at: str | None
    next_attempt_at: str | None
    resolved_at: str | None
    content_hash: str | None

    @property
    def request_data(self) -> Any:
        return json.loads(self.request) if self.request else None


@dataclass(frozen=True)
class RunRow:
    """A row of `runs`: one pass."""

    id: int
    started_at: str | None
    finished_at: str | None
    outcome: str
    complete_fetch: bool | None
    counts: dict[str, int]
    duration_ms: int | None
    error: str | None
    note: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRow:
        return cls(
            id=row["id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            outcome=row["outcome"],
            complete_fetch=None if row["complete_fetch"] is None else bool(row["complete_fetch"]),
            counts=json.loads(row["counts"]) if row["counts"] else {},
            duration_ms=row["duration_ms"],
            error=row["error"],
            note=row.get("note"),
        )


@dataclass(frozen=True)
class OperationRow(_Row):
    """A row of `operations`: the append-only audit of every call and operator action."""

    id: int
    run_id: int | None
    remote_id: str
    event_id: int | None
    action: str
    method: str | None
    http_status: int | None
    outcome: str
    message: str | None
    at: str
    duration_ms: int | None


# -- webhooks (connector.webhooks): what Jobylon's calendar_event deliveries said ----------------


@dataclass(frozen=True)
class WebhookEventRecord:
    """An event's latest state as a delivery described it, to store."""

    event_id: int
    status: str
    title: str | None
    description: str | None
    duration: int | None
    start_time: str | None
    timezone: str | None
    organizer: str | None
    participants: tuple[int, ...]
    rsvps: tuple[tuple[int, str], ...]  # (application id, rsvp)
    location: str | None
    videoconferencing: bool
    video_link: str | None
    content_hash: str


@dataclass(frozen=True)
class WebhookEventRow(_Row):
    """A row of `webhook_events`: the latest state Jobylon told us of one event, and what the
    connector made of it (`settled_as`, `remote_id`, `note`)."""

    event_id: int
    status: str
    title: str | None
    description: str | None
    duration: int | None
    start_time: str | None
    timezone: str | None
    organizer: str | None
    participants: str | None  # JSON list of application ids
    location: str | None
    videoconferencing: int | None
    video_link: str | None
    content_hash: str
    received_at: str
    first_received_at: str
    remote_id: str | None
    settled_as: str
    note: str | None

    @property
    def participant_ids(self) -> list[int]:
        return list(json.loads(self.participants)) if self.participants else []


@dataclass(frozen=True)
class RsvpRow(_Row):
    """A row of `webhook_rsvps`: one participant's answer to one event."""

    event_id: int
    application_id: int
    rsvp: str
    received_at: str


@dataclass(frozen=True)
class ForwardRow(_Row):
    """A row of `webhook_forwards`: a record for the partner (`[webhooks.forward]`), sent or not yet."""

    id: int
    event_id: int
    remote_id: str | None
    record: str  # the JSON document posted
    created_at: str
    sent_at: str | None
    attempts: int
    kind: str | None  # of the last failure: transient | permanent
    http_status: int | None
    message: str | None
    last_at: str | None
    next_attempt_at: str | None

    @property
    def record_data(self) -> dict[str, Any]:
        return dict(json.loads(self.record))
