"""Field validation: raw canonical values -> an Interview, or an InvalidItem naming every failing field. Pure.

The limits below are Jobylon's documented rules (duration) and our own (text lengths, years, remote
id), see docs/design.md section 7.

Time rules:
- `start` offset-aware is converted to the item's timezone; `start` without an offset is local wall
  time in the item's timezone.
- A local time that does not exist (the spring DST gap) makes the item invalid.
- An ambiguous local time (the autumn hour that happens twice) means its *first* occurrence
  (`fold=0`, still summer time). Jobylon receives wall time plus zone, so this only decides the UTC
  instant we record locally (for "has this event ended").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.model import FieldError, Interview, InvalidItem, payload_hash, zone

MIN_DURATION, MAX_DURATION = 1, 480
MAX_TITLE = 500
MAX_TEXT = 65_535
MAX_REMOTE_ID = 255
MIN_YEAR, MAX_YEAR = 1970, 2100
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
TEXT_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, name: str, message: str) -> None:
        self.items.append(FieldError(name, storable(message)))


def storable(text: str) -> str:
    """The text with any lone UTF-16 surrogate written as `\\udXXX`: such text cannot be encoded
    as UTF-8, so it could reach no log, database or request."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _surrogate_at(text: str) -> int | None:
    """Position of the first lone surrogate (half an emoji, from a UTF-16 system that cut text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _half_character(name: str, text: str, position: int, errors: _Errors) -> None:
    errors.add(name, f"holds half of a character (lone surrogate U+{ord(text[position]):04X} at position {position}): the text was cut inside it")


def build_interview(values: dict[str, Any], index: int = 0) -> Interview | InvalidItem:
    """Validate raw canonical values (already extracted by the mapping) into an Interview, or an
    InvalidItem naming every failing field."""
    errors = _Errors()
    remote_id = _remote_id(values.get("remote_id"), errors)
    title = _text(values.get("title"), "title", errors, required=True, max_len=MAX_TITLE, single_line=True)
    description = _text(values.get("description"), "description", errors, required=True, max_len=MAX_TEXT)
    tz_name = _timezone(values.get("timezone"), errors)
    tz = zone(tz_name) if tz_name else None
    start = _start(values.get("start"), tz, errors)
    duration = _duration(values, start, tz, errors)
    organizer = _email(values.get("organizer_email"), errors)
    application_ids = _application_ids(values.get("application_ids"), errors)
    location = _text(values.get("location"), "location", errors, required=False, max_len=MAX_TITLE, single_line=True)
    video = _optional_bool(values.get("videoconferencing"), "videoconferencing", errors)
    cancelled = _optional_bool(values.get("cancelled"), "cancelled", errors) or False
    updated_at = _updated_at(values.get("updated_at"), errors)
    if errors.items:
        return InvalidItem(remote_id, index, tuple(errors.items), content_hash=payload_hash(values))
    assert remote_id is not None and title is not None and description is not None  # for the type checker
    assert start is not None and duration is not None and tz_name and organizer and application_ids
    return Interview(
        remote_id=remote_id,
        title=title,
        description=description,
        start=whole_second(start),
        duration_minutes=duration,
        timezone=tz_name,
        organizer_email=organizer,
        application_ids=application_ids,
        location=location,
        videoconferencing=video,
        cancelled=cancelled,
        updated_at=updated_at,
    )


def _describe(value: Any) -> str:
    return "boolean" if isinstance(value, bool) else type(value).__name__


def _remote_id(value: Any, errors: _Errors) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        errors.add("remote_id", "missing" if value is None else f"expected a string or integer, got {_describe(value)}")
        return None
    text = str(value).strip()
    if not text:
        errors.add("remote_id", "must not be empty")
        return None
    if len(text) > MAX_REMOTE_ID:
        errors.add("remote_id", f"longer than {MAX_REMOTE_ID} characters")
        return None
    if CONTROL_RE.search(text):
        errors.add("remote_id", "contains control characters")
        return None
    if (position := _surrogate_at(text)) is not None:
        _half_character("remote_id", text, position, errors)
        return storable(text)  # the record is kept under a safe rendering of the id
    return text


def _text(value: Any, name: str, errors: _Errors, *, required: bool, max_len: int, single_line: bool = False) -> str | None:
    if value is None:
        if required:
            errors.add(name, "missing")
        return None
    if not isinstance(value, str):
        errors.add(name, f"expected a string, got {_describe(value)}")
        return None
    if required and name == "title" and not value.strip():
        errors.add(name, "must not be empty")
        return None
    if len(value) > max_len:
        errors.add(name, f"longer than {max_len} characters ({len(value)})")
        return None
    if (CONTROL_RE if single_line else TEXT_CONTROL_RE).search(value):
        what = "control characters or line breaks" if single_line else "control characters"
        errors.add(name, f"contains {what}")
        return None
    if (position := _surrogate_at(value)) is not None:
        _half_character(name, value, position, errors)
        return None
    return value


def _timezone(value: Any, errors: _Errors) -> str | None:
    if not isinstance(value, str) or not value:
        errors.add("timezone", "missing" if value is None else f"expected an IANA zone name, got {_describe(value)}")
        return None
    try:
        zone(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        shown = value if len(value) <= 64 and not CONTROL_RE.search(value) else value[:64].encode("unicode_escape").decode() + "..."
        errors.add("timezone", f"unknown IANA time zone {shown!r}")
        return None
    return value


def _parse_datetime(value: Any, name: str, errors: _Errors) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors.add(name, "missing" if value is None else f"expected an ISO 8601 date-time, got {_describe(value)}")
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            errors.add(name, "timestamp out of range")
            return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        errors.add(name, "not an ISO 8601 date-time (e.g. 2026-03-01T09:30:00+01:00)")
        return None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        errors.add(name, f"year {parsed.year} is outside {MIN_YEAR}..{MAX_YEAR}")
        return None
    return parsed


def localize(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """Attach `tz` to a naive wall time; None if that wall time does not exist (DST gap).
    Ambiguous times take their first occurrence (fold=0)."""
    fields = (wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second, wall.microsecond, tz)
    aware = datetime(*fields)  # not wall.replace(): the constructor costs less (connector.model)
    if aware.utcoffset() == datetime(*fields, fold=1).utcoffset():
        return aware  # the common case: neither in a gap nor in an overlap
    round_trip = aware.astimezone(UTC).astimezone(tz)
    if round_trip.replace(tzinfo=None) != wall:
        return None
    return aware


def _aware(value: Any, name: str, tz: ZoneInfo | None, errors: _Errors) -> datetime | None:
    parsed = _parse_datetime(value, name, errors)
    if parsed is None:
        return None
    if parsed.tzinfo is not None:
        return parsed
    if tz is None:
        return None  # the timezone error is already reported
    aware = localize(parsed, tz)
    if aware is None:
        errors.add(name, f"local time {parsed.isoformat()} does not exist in {tz.key} (skipped by a daylight-saving change)")
    return aware


def _start(value: Any, tz: ZoneInfo | None, errors: _Errors) -> datetime | None:
    """The start as given, sub-seconds included: the duration is measured from it. Jobylon's
    `%Y-%m-%dT%H:%M:%S` then carries it cut to the whole second (see `whole_second`)."""
    return _aware(value, "start", tz, errors)


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) if moment.microsecond else moment


def _duration(values: dict[str, Any], start: datetime | None, tz: ZoneInfo | None, errors: _Errors) -> int | None:
    raw_duration = values.get("duration_minutes")
    raw_end = values.get("end")
    if raw_duration is not None:
        name = "duration_minutes"
        if isinstance(raw_duration, bool):
            errors.add(name, "expected an integer number of minutes, got boolean")
            return None
        if isinstance(raw_duration, str) and re.fullmatch(r"\s*-?\d+\s*", raw_duration):
            raw_duration = int(raw_duration)
        if isinstance(raw_duration, float) and raw_duration.is_integer():
            raw_duration = int(raw_duration)
        if not isinstance(raw_duration, int):
            errors.add(name, f"expected an integer number of minutes, got {_describe(raw_duration)}")
            return None
        minutes = raw_duration
    elif raw_end is not None:
        name = "end"
        end = _aware(raw_end, "end", tz, errors)
        if end is None or start is None:
            return None
        seconds = (end - start).total_seconds()
        if seconds <= 0:
            errors.add("end", "is not after start")
            return None
        if seconds % 60:
            errors.add("end", "is not a whole number of minutes after start")
            return None
        minutes = int(seconds // 60)
    else:
        errors.add("end", "missing: map `end` or `duration_minutes`")
        return None
    if not MIN_DURATION <= minutes <= MAX_DURATION:
        errors.add(name, f"duration must be {MIN_DURATION}..{MAX_DURATION} minutes, got {minutes}")
        return None
    return minutes


@lru_cache(maxsize=4096)
def _email_ok(email: str) -> bool:
    return len(email) <= 254 and len(email.partition("@")[0]) <= 64 and EMAIL_RE.match(email) is not None


def _email(value: Any, errors: _Errors) -> str | None:
    if not isinstance(value, str):
        errors.add("organizer_email", "missing" if value is None else f"expected an email address, got {_describe(value)}")
        return None
    email = value.strip()
    if not _email_ok(email):
        shown = email if len(email) <= 80 and not CONTROL_RE.search(email) else email[:80].encode("unicode_escape").decode() + "..."
        errors.add("organizer_email", f"not a well-formed email address: {shown!r}")
        return None
    return email


def _application_ids(value: Any, errors: _Errors) -> tuple[int, ...] | None:
    name = "application_ids"
    if value is None:
        errors.add(name, "missing")
        return None
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        errors.add(name, f"expected a list of integer application ids, got {_describe(value)}")
        return None
    ids: set[int] = set()
    for position, item in enumerate(value):
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            errors.add(name, f"item {position}: expected an integer application id, got {_describe(item)}")
            return None
        if item <= 0:
            errors.add(name, f"item {position}: application id must be positive, got {item}")
            return None
        ids.add(item)
    if not ids:
        errors.add(name, "must hold at least one application id")
        return None
    return tuple(sorted(ids))


def _optional_bool(value: Any, name: str, errors: _Errors) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    errors.add(name, f"expected true or false, got {_describe(value)}")
    return None


def _updated_at(value: Any, errors: _Errors) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = _parse_datetime(value, "updated_at", errors)
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
