"""The canonical Interview and the exact payloads and hashes sent to Jobylon. Pure, no I/O.

Validation of raw values into an Interview lives in `connector.validation`. The two hashes are part
of the state format (stored in every user's database): see `mutable_hash` and `fixed_hash`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

START_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
UPDATE_FIELDS = ("title", "description", "duration", "start_time", "timezone")
FIXED_FIELDS = ("organizer", "participants", "location", "videoconferencing")


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class BrokenItem:
    """A record of the source that could not even be parsed (a broken CSV row, an ndjson line that
    is not JSON). Sources put it in place of the item, so it is reported like any invalid item.

    `readable` holds the top-level fields whose value the source could still read with certainty,
    as (name, value) pairs: the mapper takes the item's remote id from them when its `remote_id`
    expression is a plain key, so the record is filed under the id the partner knows. They are
    data of the record, not its identity: left out of equality and repr."""

    position: str  # e.g. "line 17", "row 4"
    message: str
    readable: tuple[tuple[str, str | int], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class InvalidItem:
    """A source item that cannot be synced, with every reason. `remote_id` is None when even the id
    could not be read; `index` is the item's position in the fetch. `deleted`: the source marks it
    deleted (mapping.deleted), so only its remote id matters: the plan deletes its event."""

    remote_id: str | None
    index: int
    errors: tuple[FieldError, ...]
    content_hash: str = ""
    deleted: bool = False

    @property
    def label(self) -> str:
        return self.remote_id if self.remote_id is not None else f"<item #{self.index}>"

    @property
    def message(self) -> str:
        return "; ".join(str(e) for e in self.errors)


@dataclass(frozen=True, slots=True)
class Interview:
    """One interview as Jobylon should hold it. Its fingerprints (local start time, end, the two
    hashes) are computed once at construction: every pass needs them for every interview, and
    slots keep 100,000 of these small."""

    remote_id: str
    title: str
    description: str
    start: datetime
    duration_minutes: int
    timezone: str
    organizer_email: str
    application_ids: tuple[int, ...]
    location: str | None = None
    videoconferencing: bool | None = None
    cancelled: bool = False
    updated_at: datetime | None = field(default=None, compare=False)
    start_time: str = field(init=False, compare=False, repr=False)  # local wall time in `timezone`
    ends_at_utc: datetime = field(init=False, compare=False, repr=False)
    mutable_hash: str = field(init=False, compare=False, repr=False)  # of the fields PUT can change
    fixed_hash: str = field(init=False, compare=False, repr=False)  # of the fields only a recreate changes

    def __post_init__(self) -> None:
        local = self.start.astimezone(zone(self.timezone))
        # The wall time's text: a naive copy's isoformat (START_TIME_FORMAT's text for four-digit
        # years, no sub-seconds). Built with the constructor, as below: datetime.replace() and
        # keyword arguments cost several times more, and every interview of every pass pays them.
        start_time = datetime(local.year, local.month, local.day, local.hour, local.minute, local.second).isoformat()
        set_ = object.__setattr__
        set_(self, "start_time", start_time)
        set_(self, "ends_at_utc", self.start.astimezone(UTC) + timedelta(0, 60 * self.duration_minutes))
        # The payload's values, passed straight to the functions mutable_hash(payload) / fixed_hash(payload)
        # use, without building the payload dict.
        set_(
            self,
            "mutable_hash",
            _mutable_digest(title=self.title, description=self.description, duration=self.duration_minutes, start_time=start_time, timezone=self.timezone),
        )
        set_(
            self,
            "fixed_hash",
            _fixed_digest(
                organizer=self.organizer_email,
                participants=list(self.application_ids),
                location=self.location,
                videoconferencing=self.videoconferencing,
            ),
        )

    @property
    def starts_at_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def payload(self) -> dict[str, Any]:
        """The create body."""
        body: dict[str, Any] = {
            "title": self.title,
            "description": self.description,
            "duration": self.duration_minutes,
            "start_time": self.start_time,
            "timezone": self.timezone,
            "organizer": self.organizer_email,
            "participants": list(self.application_ids),
        }
        if self.location is not None:
            body["location"] = self.location
        if self.videoconferencing is not None:
            body["videoconferencing"] = self.videoconferencing
        return body

    @property
    def update_payload(self) -> dict[str, Any]:
        """The update body: only the fields PUT may change, all of them."""
        return {
            "title": self.title,
            "description": self.description,
            "duration": self.duration_minutes,
            "start_time": self.start_time,
            "timezone": self.timezone,
        }

    @property
    def content_hash(self) -> str:
        """Everything the source says about this interview that matters, cancellation included."""
        return _digest(f"{self.mutable_hash}|{self.fixed_hash}|{self.cancelled}")


_BLAKE2B_16 = hashlib.blake2b(digest_size=16)  # copied for each digest: cheaper than a new one with its parameters


def _digest(text: str) -> str:
    try:
        data = text.encode()
    except UnicodeEncodeError:  # an invalid item's raw values may hold a lone surrogate
        data = text.encode("utf-8", "surrogatepass")
    digest = _BLAKE2B_16.copy()
    digest.update(data)
    return digest.hexdigest()


# The one definition of each hash, called by Interview (from its attributes) and by the functions below
# (from a stored payload): `connector resolve` compares the two. Keyword names are the payload keys, in
# UPDATE_FIELDS / FIXED_FIELDS order. The values are in users' databases: changing the text hashed needs a
# migration that rehashes the stored payloads (docs/design.md section 7).
def _mutable_digest(*, title: Any, description: Any, duration: Any, start_time: Any, timezone: Any) -> str:
    return _digest(repr((title, description, duration, start_time, timezone)))


def _fixed_digest(*, organizer: Any, participants: Any, location: Any, videoconferencing: Any) -> str:
    return _digest(repr((organizer, participants, location, videoconferencing)))


def mutable_hash(payload: dict[str, Any]) -> str:
    """Hash of the fields PUT can change, from a create or update body (a missing field counts as None)."""
    return _mutable_digest(**{name: payload.get(name) for name in UPDATE_FIELDS})


def fixed_hash(payload: dict[str, Any]) -> str:
    """Hash of the fields only a recreate can change, from a create body (a missing field counts as None)."""
    return _fixed_digest(**{name: payload.get(name) for name in FIXED_FIELDS})


def payload_hash(data: Any) -> str:
    """Hash of any JSON-able value, key order ignored (the content hash of an invalid item)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return _digest(text)


# -- the reference marker (sync.reference_marker) ---------------------------------------------
# The last line of an event's description names the interview it was made for, so a webhook about
# an event whose create went unanswered can be matched to its item without comparing every field.
# The executor adds it to the bodies it sends (create and update); the Interview and its hashes never
# hold it, so the state format is unchanged and turning it on or off is no change by itself: each
# event gets (or loses) it with its next create or update. A marker edited away inside Jobylon is
# drift like any other change of the description.

MARKER_PREFIX = "[connector ref: "
MARKER_SUFFIX = "]"


def reference_marker(remote_id: str) -> str:
    """The marker line of a remote id: `[connector ref: "INT-1002"]` (JSON-quoted, so any id fits one line)."""
    return f"{MARKER_PREFIX}{json.dumps(remote_id, ensure_ascii=True)}{MARKER_SUFFIX}"


def with_marker(payload: dict[str, Any], remote_id: str) -> dict[str, Any]:
    """A create or update body whose description ends with the remote id's marker line."""
    description = payload.get("description") or ""
    marker = reference_marker(remote_id)
    return {**payload, "description": f"{description}\n\n{marker}" if description else marker}


def without_marker(payload: dict[str, Any]) -> dict[str, Any]:
    """The body with a trailing marker line taken off its description (what the Interview hashed)."""
    description = payload.get("description")
    if not isinstance(description, str) or read_marker(description) is None:
        return payload
    text = description.rstrip()
    head, _, _ = text.rpartition("\n")
    return {**payload, "description": head[:-1] if head.endswith("\n") else head}


def read_marker(description: str | None) -> str | None:
    """The remote id named by a marker on the description's last line, or None."""
    if not description:
        return None
    last = description.rstrip().rsplit("\n", 1)[-1].strip()
    if not (last.startswith(MARKER_PREFIX) and last.endswith(MARKER_SUFFIX)):
        return None
    try:
        value = json.loads(last[len(MARKER_PREFIX) : -len(MARKER_SUFFIX)])
    except ValueError:
        return None
    return value if isinstance(value, str) and value else None


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo of an IANA name, cached (every interview needs its zone)."""
    return ZoneInfo(name)
