"""A `calendar_event` delivery read into a checked, normalised `CalendarEvent`. Pure, no I/O.

Jobylon's documentation differs in places, so both forms are accepted: the video link as `vc_link`
or `vc_link_url` (also inside a `videoconferencing` object), RSVPs as `no_rsvp` or "no rsvp",
the status `canceled` or `cancelled`, the organizer as an email or an object with one. A delivery
that is not about a calendar event is None (acknowledged, nothing stored); one that is, but lacks
what every record needs (an integer event id, a list of participants), is a PayloadError (400).
Unknown status or RSVP words are kept as sent (lower case): refusing them would make Jobylon
retry for days over a word it added.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.model import zone

STATUSES = ("created", "invited", "rescheduled", "canceled")
RSVPS = ("no_rsvp", "awaiting", "accepted", "declined")
MAX_EVENT_ID = 2**63 - 1
CREATE_FIELDS = ("title", "description", "duration", "start_time", "timezone", "organizer", "participants", "location", "videoconferencing")


class PayloadError(ValueError):
    """The delivery is a calendar_event one but cannot be recorded (answered 400, nothing stored)."""


@dataclass(frozen=True)
class CalendarEvent:
    """One event as a delivery describes it: every field of the event, normalised."""

    event_id: int
    status: str
    title: str | None
    description: str | None
    duration: int | None
    start_time: str | None  # local wall time in `timezone`, %Y-%m-%dT%H:%M:%S
    timezone: str | None
    organizer: str | None
    participants: tuple[int, ...]  # application ids, in the order sent
    rsvps: tuple[tuple[int, str], ...]  # (application id, rsvp)
    location: str | None
    videoconferencing: bool
    video_link: str | None

    @property
    def cancelled(self) -> bool:
        return self.status == "canceled"

    def fields(self) -> dict[str, Any]:
        """The create fields as a create body would carry them (for comparisons: `create_fields`)."""
        return {
            "title": self.title,
            "description": self.description,
            "duration": self.duration,
            "start_time": self.start_time,
            "timezone": self.timezone,
            "organizer": self.organizer,
            "participants": list(self.participants),
            "location": self.location,
            "videoconferencing": self.videoconferencing,
        }

    @property
    def content_hash(self) -> str:
        """Everything recorded about the event: the same delivery twice hashes the same."""
        document = {**self.fields(), "id": self.event_id, "status": self.status, "rsvps": list(self.rsvps), "video_link": self.video_link}
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def create_fields(body: dict[str, Any]) -> dict[str, Any]:
    """A create body (or a delivery's `fields()`) in the one form compared field by field: a missing
    location and an empty one are the same, videoconferencing defaults to false, participants are a
    sorted list of ids (Jobylon keeps no order)."""
    participants = body.get("participants") or []
    return {
        "title": body.get("title"),
        "description": body.get("description"),
        "duration": body.get("duration"),
        "start_time": body.get("start_time"),
        "timezone": body.get("timezone"),
        "organizer": (body.get("organizer") or "").lower() or None,
        "participants": sorted(p for p in participants if isinstance(p, int)),
        "location": body.get("location") or None,
        "videoconferencing": bool(body.get("videoconferencing")),
    }


def state_hash(body: dict[str, Any]) -> str:
    """Hash of an event's state as `create_fields` compares it, from a create body or a delivery's
    `fields()`: the executor records it for the state each successful call leaves in Jobylon, so a
    late redelivery of one of those states is told from a change made inside Jobylon."""
    text = json.dumps(create_fields(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def parse_delivery(document: Any) -> CalendarEvent | None:
    """The event a delivery carries; None for a delivery of another event type."""
    if not isinstance(document, dict):
        raise PayloadError("expected a JSON object")
    event_type = document.get("event_type")
    if event_type is not None and event_type != "calendar_event":
        return None
    event = document.get("calendar_event")
    if event is None and event_type is None:
        raise PayloadError("no event_type and no calendar_event object")
    if not isinstance(event, dict):
        raise PayloadError("calendar_event must be an object")
    return read_event(event)


def read_event(event: dict[str, Any]) -> CalendarEvent:
    event_id = event.get("id")
    if isinstance(event_id, str) and event_id.isdigit():
        event_id = int(event_id)
    if not isinstance(event_id, int) or isinstance(event_id, bool) or not 1 <= event_id <= MAX_EVENT_ID:
        raise PayloadError("calendar_event.id must be a positive integer")
    raw_participants = event.get("participants") or []
    if not isinstance(raw_participants, list):
        raise PayloadError("calendar_event.participants must be a list")
    participants: list[int] = []
    rsvps: list[tuple[int, str]] = []
    for index, participant in enumerate(raw_participants):
        if isinstance(participant, int) and not isinstance(participant, bool):
            participants.append(participant)
            continue
        if not isinstance(participant, dict):
            raise PayloadError(f"calendar_event.participants[{index}] must be an object with an id")
        application_id = _int(participant.get("id"))
        if application_id is None:
            raise PayloadError(f"calendar_event.participants[{index}].id must be an integer")
        participants.append(application_id)
        rsvps.append((application_id, normal_rsvp(participant.get("rsvp"))))
    video = event.get("videoconferencing")
    link = event.get("vc_link_url") or event.get("vc_link")
    if isinstance(video, dict):
        link = link or video.get("vc_link_url") or video.get("vc_link") or video.get("url")
        video = True
    return CalendarEvent(
        event_id=event_id,
        status=normal_status(event.get("status")),
        title=_text(event.get("title")),
        description=_text(event.get("description")),
        duration=_int(event.get("duration")),
        start_time=_wall_time(event.get("start_time"), _text(event.get("timezone"))),
        timezone=_text(event.get("timezone")),
        organizer=_organizer(event.get("organizer")),
        participants=tuple(participants),
        rsvps=tuple(rsvps),
        location=_text(event.get("location")) or None,
        videoconferencing=bool(video),
        video_link=_text(link) or None,
    )


def normal_status(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text == "cancelled":
        return "canceled"
    return text[:40] or "unknown"


def normal_rsvp(value: Any) -> str:
    """`no_rsvp` for the documented "no rsvp" spelling (and a missing one); other words as sent."""
    text = "_".join(str(value or "").strip().lower().replace("-", " ").split())
    return text[:40] or "no_rsvp"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _organizer(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("email")
    return value.strip() if isinstance(value, str) else None


def _wall_time(value: Any, timezone: str | None) -> str | None:
    """The start as local wall time in the event's zone: `2030-01-02T10:00:00` as sent, an offset or
    `Z` converted (Jobylon may write either), fractions of a second dropped."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None and timezone:
        try:
            moment = moment.astimezone(zone(timezone))
        except (KeyError, ValueError, OSError):
            return value
    return moment.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
