"""Calendar availability (`connector availability`): the checked query, the body Jobylon's availability
call takes, and its answer read into slots. Pure: no I/O; the call itself is `JobylonClient.availability`.

The query is one group of users (`--user`, repeated) of whom all, or at least N (`--required`), must
be free, one period (`--from`, `--to`) and a meeting length (`--duration`). Jobylon answers a list of
`{start, end, participants}`: back-to-back slots of the length (`response_format: slots`), or the
free periods (`periods`), each naming the users free in it. Every bad input is a QueryError naming
the option, found before anything is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.validation import MAX_DURATION, MIN_DURATION
from connector.validation import _email_ok as email_ok

MAX_PERIOD = timedelta(days=31)  # the longest query period the sandbox takes; Jobylon documents none
FORMATS = ("slots", "periods")
REASON_KEEP = 300  # characters of Jobylon's reason shown
GROUP_PREFIX = re.compile(r"^Item \d+: ")  # the query has one group of participants: its index says nothing


class QueryError(ValueError):
    """A bad input to an availability query; `option` is the command-line option that gave it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


class AnswerError(ValueError):
    """An availability answer that is not a list of {start, end, participants}."""


@dataclass(frozen=True)
class AvailabilityQuery:
    users: tuple[str, ...]
    required: int | None  # at least this many of the users free; None: all of them
    start: datetime  # aware
    end: datetime
    duration_minutes: int
    response_format: str  # "slots" | "periods"

    @property
    def needs(self) -> str:
        """Who must be free, in words: "all 2 users are free", "at least 1 of 2 users is free"."""
        count = len(self.users)
        if count == 1:
            return f"{self.users[0]} is free"
        if self.required is None or self.required == count:
            return f"all {count} users are free"
        return f"at least {self.required} of {count} users {'is' if self.required == 1 else 'are'} free"


@dataclass(frozen=True)
class Slot:
    start: datetime  # aware, UTC
    end: datetime
    participants: tuple[str, ...]  # the users free in it, as Jobylon lists them

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


def parse_instant(text: str, option: str) -> datetime:
    """An ISO 8601 date-time with an offset (`Z` too); a time without one is ambiguous, so refused."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(option, f"{text!r} is not an ISO 8601 date-time, e.g. 2030-06-03T09:00:00+02:00") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise QueryError(option, f"{text!r} has no UTC offset; add one, e.g. {moment.isoformat()}+02:00 or {moment.isoformat()}Z")
    return moment


def parse_required(text: str, users: int) -> int | None:
    """`all` (None: every user), or a count 1..users."""
    text = text.strip().lower()
    if text == "all":
        return None
    if not text.isdecimal() or not 1 <= int(text) <= users:
        raise QueryError("--required", f"expected all or a number from 1 to {users} (the number of --user), not {text!r}")
    return int(text)


def build_query(users: tuple[str, ...], required: str, start: str, end: str, duration: int, response_format: str = "slots") -> AvailabilityQuery:
    """Every input checked, each problem naming its option."""
    cleaned = tuple(user.strip() for user in users)
    if not cleaned:
        raise QueryError("--user", "give at least one user's email address")
    seen: set[str] = set()
    for user in cleaned:
        if not email_ok(user):
            raise QueryError("--user", f"{user!r} is not an email address")
        if user.lower() in seen:
            raise QueryError("--user", f"{user} is given twice")
        seen.add(user.lower())
    if not MIN_DURATION <= duration <= MAX_DURATION:  # duration_min has an event's range
        raise QueryError("--duration", f"{duration} is not in {MIN_DURATION}..{MAX_DURATION} minutes")
    begins, ends = parse_instant(start, "--from"), parse_instant(end, "--to")
    if ends <= begins:
        raise QueryError("--to", f"{end} is not after --from {start}")
    if ends - begins > MAX_PERIOD:
        raise QueryError("--to", f"the period from --from to --to spans {ends - begins}; at most {MAX_PERIOD.days} days")
    if ends - begins < timedelta(minutes=duration):
        raise QueryError("--duration", f"{duration} minutes do not fit in the period from --from to --to ({ends - begins})")
    if response_format not in FORMATS:
        raise QueryError("--periods", f"response format must be one of {', '.join(FORMATS)}")
    return AvailabilityQuery(cleaned, parse_required(required, len(cleaned)), begins, ends, duration, response_format)


def request_body(query: AvailabilityQuery) -> dict[str, Any]:
    """The JSON body of Jobylon's availability call."""
    return {
        "duration_min": query.duration_minutes,
        "participants": [{"members": [{"email": user} for user in query.users], "required": "all" if query.required is None else query.required}],
        "query_periods": [{"start": query.start.isoformat(), "end": query.end.isoformat()}],
        "response_format": query.response_format,
    }


def _answer_instant(value: Any, where: str) -> datetime:
    moment = None
    if isinstance(value, str) and len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
    if moment is None or moment.tzinfo is None:
        raise AnswerError(f"{where} is not an ISO 8601 date-time with an offset: {str(value)[:40]!r}")
    return moment.astimezone(UTC)


def _participant(value: Any, where: str) -> str:
    """An email, given as a string or as {"email": ...}."""
    email = value.get("email") if isinstance(value, dict) else value
    if not isinstance(email, str):
        raise AnswerError(f"{where} is neither an email nor {{email}}")
    return email


def parse_answer(document: Any) -> list[Slot]:
    """Jobylon's answer (decoded JSON) as slots in UTC, sorted by start."""
    if not isinstance(document, list):
        raise AnswerError(f"expected a list of {{start, end, participants}}, got {type(document).__name__}")
    slots = []
    for index, entry in enumerate(document):
        where = f"item {index}"
        if not isinstance(entry, dict):
            raise AnswerError(f"{where} is not an object")
        start, end = _answer_instant(entry.get("start"), f"{where}: start"), _answer_instant(entry.get("end"), f"{where}: end")
        if end <= start:
            raise AnswerError(f"{where} ends before it starts")
        members = entry.get("participants", [])
        if not isinstance(members, list):
            raise AnswerError(f"{where}: participants is not a list")
        slots.append(Slot(start, end, tuple(_participant(m, f"{where}: participant {i}") for i, m in enumerate(members))))
    return sorted(slots, key=lambda slot: (slot.start, slot.end))


def slots_document(slots: list[Slot]) -> list[dict[str, Any]]:
    """`availability --json`: a list of {start, end, participants}, times in UTC with their offset."""
    return [{"start": s.start.isoformat(), "end": s.end.isoformat(), "participants": list(s.participants)} for s in slots]


def _names(text: str, email: str) -> bool:
    """`email` in `text` as a whole address (not a@x.example inside ba@x.example), in any case."""
    return re.search(rf"(?<![\w.+-]){re.escape(email)}(?![\w-]|\.\w)", text, re.IGNORECASE) is not None


def explain_refusal(answer: str | None, users: tuple[str, ...]) -> str:
    """One line for a 400 to an availability query: the users it names (all of them, when it names
    none) and Jobylon's reasons, e.g. `x@acme.example: participants: ... has no calendar connection`."""
    reasons: list[str] = []
    try:
        document = json.loads(answer or "")
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict):
        for field, messages in document.items():
            for message in messages if isinstance(messages, list) else [messages]:
                message = GROUP_PREFIX.sub("", str(message))
                reasons.append(message if field in ("detail", "non_field_errors") else f"{field}: {message}")
    elif answer and answer.strip():
        reasons.append(" ".join(answer.split()))
    reason = "; ".join(reasons)[:REASON_KEEP] or "no reason given"
    named = [user for user in users if _names(reason, user)] or list(users)
    return f"Jobylon refused the availability query for {', '.join(named)}: {reason}"
