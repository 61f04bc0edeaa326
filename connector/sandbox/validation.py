"""Field validation of the sandbox's create, update and availability bodies, Jobylon's rules and messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from connector.sandbox.directory import ALL_USERS, Partner, application_exists, has_calendar

START_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
CREATE_REQUIRED = ("title", "description", "duration", "start_time", "timezone", "organizer", "participants")
CREATE_OPTIONAL = ("location", "videoconferencing")
CREATE_FIELDS = frozenset(CREATE_REQUIRED + CREATE_OPTIONAL)
UPDATE_FIELDS = ("description", "duration", "start_time", "timezone", "title")
AVAILABILITY_FIELDS = frozenset({"duration_min", "participants", "query_periods", "response_format"})
MIN_DURATION, MAX_DURATION = 1, 480
MAX_QUERY_PERIODS = 20
MAX_QUERY_PERIOD = timedelta(days=31)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

FIXED = "This field cannot be updated."
REQUIRED = "This field is required."
NULL = "This field may not be null."

_ZONES: frozenset[str] | None = None


def is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON true is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _zone(name: Any) -> ZoneInfo | None:
    """An IANA zone the tz database knows, by exact name; never a path."""
    global _ZONES
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if _ZONES and name not in _ZONES:
        return None
    try:
        return ZoneInfo(name)
    except Exception:  # any failure to load means "not a zone"
        return None


class _Errors(dict[str, list[str]]):
    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)


def _check_names(body: dict[str, Any], known: Any, required: Any, errors: _Errors, unknown_message: str) -> None:
    """Every name of `body` not in `known` gets `unknown_message`, every name of `required` missing from it REQUIRED."""
    for name in body:
        if name not in known:
            errors.add(name, unknown_message)
    for name in required:
        if name not in body:
            errors.add(name, REQUIRED)


def _string(body: dict[str, Any], name: str, errors: _Errors, *, blank: bool) -> None:
    value = body[name]
    if value is None:
        errors.add(name, NULL)
    elif not isinstance(value, str):
        errors.add(name, "Not a valid string.")
    elif not blank and not value.strip():
        errors.add(name, "This field may not be blank.")


def _validate_time_fields(body: dict[str, Any], errors: _Errors) -> None:
    """title, description, duration, start_time, timezone: shared by create and update."""
    if "title" in body:
        _string(body, "title", errors, blank=False)
    if "description" in body:
        _string(body, "description", errors, blank=True)
    if "duration" in body:
        duration = body["duration"]
        if duration is None:
            errors.add("duration", NULL)
        elif not is_int(duration):
            errors.add("duration", "A valid integer is required.")
        elif duration < MIN_DURATION:
            errors.add("duration", f"Ensure this value is greater than or equal to {MIN_DURATION}.")
        elif duration > MAX_DURATION:
            errors.add("duration", f"Ensure this value is less than or equal to {MAX_DURATION}.")
    zone = None
    if "timezone" in body:
        zone = _zone(body["timezone"])
        if body["timezone"] is None:
            errors.add("timezone", NULL)
        elif zone is None:
            errors.add("timezone", f'"{str(body["timezone"])[:64]}" is not a valid time zone.')
    if "start_time" in body:
        value = body["start_time"]
        wall = None
        if value is None:
            errors.add("start_time", NULL)
        else:
            try:
                if not isinstance(value, str):
                    raise ValueError
                wall = datetime.strptime(value, START_TIME_FORMAT)
                if wall.strftime(START_TIME_FORMAT) != value:  # no unpadded fields, offsets or fractions
                    raise ValueError
            except ValueError:
                wall = None
                errors.add("start_time", "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm:ss.")
        if wall is not None and zone is not None:
            try:
                instant = wall.replace(tzinfo=zone).astimezone(UTC)
                roundtrip = instant.astimezone(zone).replace(tzinfo=None)
                instant + timedelta(minutes=MAX_DURATION)  # the end must be representable too
            except (OverflowError, ValueError):
                errors.add("start_time", "Datetime is out of range.")
            else:
                if roundtrip != wall:
                    errors.add("start_time", f"{value} does not exist in {zone.key} (daylight saving time gap).")


def validate_create(body: dict[str, Any], partner: Partner) -> dict[str, list[str]]:
    """Jobylon's rules for a new event, every failing field reported."""
    errors = _Errors()
    _check_names(body, CREATE_FIELDS, CREATE_REQUIRED, errors, "Unknown field.")
    _validate_time_fields(body, errors)
    if "organizer" in body:
        organizer = body["organizer"]
        if organizer is None:
            errors.add("organizer", NULL)
        elif not isinstance(organizer, str) or not EMAIL_RE.match(organizer):
            errors.add("organizer", "Enter a valid email address.")
        elif organizer not in ALL_USERS:
            errors.add("organizer", "No Jobylon user has this email address.")
        elif not partner.may_use_user(organizer):
            errors.add("organizer", "This user is not in a customer account available to this partner.")
    if "participants" in body:
        participants = body["participants"]
        if participants is None:
            errors.add("participants", NULL)
        elif not isinstance(participants, list):
            errors.add("participants", f'Expected a list of items but got type "{type(participants).__name__}".')
        elif not participants:
            errors.add("participants", "This list may not be empty.")
        else:
            not_int = [i for i, p in enumerate(participants) if not is_int(p)]
            if not_int:
                errors.add("participants", f"A valid integer is required (items {not_int[:10]}).")
            else:
                if len(set(participants)) != len(participants):
                    errors.add("participants", "Duplicate application ids.")
                unknown = [p for p in participants if not application_exists(p)]
                if unknown:
                    errors.add("participants", f"Applications {unknown[:10]} do not exist.")
                foreign = [p for p in participants if application_exists(p) and not partner.may_use_application(p)]
                if foreign:
                    errors.add("participants", f"Applications {foreign[:10]} are not in a customer account available to this partner.")
    if "location" in body:
        _string(body, "location", errors, blank=True)
    if "videoconferencing" in body:
        if body["videoconferencing"] is None:
            errors.add("videoconferencing", NULL)
        elif not isinstance(body["videoconferencing"], bool):
            errors.add("videoconferencing", "Must be a valid boolean.")
    return dict(errors)


def validate_update(body: dict[str, Any]) -> dict[str, list[str]]:
    """PUT: exactly the five time fields, all required; anything else cannot be updated."""
    errors = _Errors()
    _check_names(body, UPDATE_FIELDS, UPDATE_FIELDS, errors, FIXED)
    _validate_time_fields(body, errors)
    return dict(errors)


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _needed(required: Any, members: int) -> int | None:
    """How many of a group's `members` must be free: "all" or a count 1..members (Jobylon's form, as
    Cronofy's); true / false are the sandbox's earlier form, kept: all, or none (only reported)."""
    if required == "all" or required is True:
        return members
    if required is False:
        return 0
    if is_int(required) and 1 <= required <= members:
        return int(required)
    return None


def validate_availability(body: dict[str, Any], partner: Partner) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Errors, and the parsed query: duration, groups [(emails, how many must be free)], the emails
    of groups that need all (required) and of the others (optional), periods, format."""
    errors = _Errors()
    _check_names(body, AVAILABILITY_FIELDS, sorted(AVAILABILITY_FIELDS), errors, "Unknown field.")
    query: dict[str, Any] = {"groups": [], "required": [], "optional": [], "periods": []}
    duration: Any = body.get("duration_min")
    if "duration_min" in body:
        if not is_int(duration):
            errors.add("duration_min", "A valid integer is required.")
        elif not MIN_DURATION <= duration <= MAX_DURATION:
            errors.add("duration_min", f"Ensure this value is between {MIN_DURATION} and {MAX_DURATION}.")
        else:
            query["duration"] = timedelta(minutes=duration)
    fmt = body.get("response_format")
    if "response_format" in body and fmt not in ("slots", "periods"):
        errors.add("response_format", f'"{str(fmt)[:20]}" is not a valid choice; use "slots" or "periods".')
    query["format"] = fmt
    participants = body.get("participants")
    if "participants" in body:
        if not isinstance(participants, list) or not participants:
            errors.add("participants", "Expected a non-empty list of {members: [{email}], required}.")
        else:
            for index, group in enumerate(participants):
                members = group.get("members") if isinstance(group, dict) else None
                if not isinstance(group, dict) or set(group) - {"members", "required"}:
                    errors.add("participants", f"Item {index}: expected an object {{members, required}}.")
                elif not isinstance(members, list) or not members or not all(isinstance(m, dict) and set(m) == {"email"} for m in members):
                    errors.add("participants", f"Item {index}: members must be a non-empty list of {{email}}.")
                elif (needed := _needed(group.get("required"), len(members))) is None:
                    errors.add("participants", f'Item {index}: required must be "all" or a number of members from 1 to {len(members)}.')
                else:
                    emails = []
                    for member in members:
                        email = member["email"]
                        if not isinstance(email, str) or not EMAIL_RE.match(email):
                            errors.add("participants", f"Item {index}: enter a valid email address.")
                        elif email not in ALL_USERS:
                            errors.add("participants", f"Item {index}: {email[:80]} is not a Jobylon user.")
                        elif not partner.may_use_user(email):
                            errors.add("participants", f"Item {index}: {email[:80]} is not a user in a customer account available to this partner.")
                        elif not has_calendar(email):
                            errors.add("participants", f"Item {index}: {email[:80]} has no calendar connection.")
                        else:
                            emails.append(email)
                    query["groups"].append((emails, needed))
                    query["required" if needed == len(members) else "optional"].extend(emails)
    periods = body.get("query_periods")
    if "query_periods" in body:
        if not isinstance(periods, list) or not periods:
            errors.add("query_periods", "Expected a non-empty list of {start, end}.")
        elif len(periods) > MAX_QUERY_PERIODS:
            errors.add("query_periods", f"At most {MAX_QUERY_PERIODS} periods.")
        else:
            for index, period in enumerate(periods):
                ok = isinstance(period, dict) and set(period) == {"start", "end"}
                start = _parse_instant(period.get("start")) if ok else None
                end = _parse_instant(period.get("end")) if ok else None
                if start is None or end is None:
                    errors.add("query_periods", f"Item {index}: start and end must be ISO 8601 date-times with an offset.")
                elif end <= start:
                    errors.add("query_periods", f"Item {index}: end must be after start.")
                elif end - start > MAX_QUERY_PERIOD:
                    errors.add("query_periods", f"Item {index}: a period may span at most {MAX_QUERY_PERIOD.days} days.")
                else:
                    query["periods"].append((start, end))
    return dict(errors), query
