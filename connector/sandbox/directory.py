"""The sandbox's seeded world: partners with their app keys, the users (organizers) and the
application ids each partner's customer accounts give it access to, and the users' busy calendars."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

DEMO_APP_ID = "demo-app"
DEMO_APP_KEY = "demo-key-0123456789"
OTHER_APP_ID = "other-app"
OTHER_APP_KEY = "other-key-9876543210"

ORGANIZERS = (
    "recruiter@acme.example",
    "hiring.manager@acme.example",
    "talent@globex.example",
    "ops@initech.example",
    "coordinator@initech.example",
)
NO_CALENDAR_USER = "coordinator@initech.example"  # a user of the partners' accounts without a calendar connection
FOREIGN_ORGANIZER = "outsider@umbrella.example"  # exists, in an account no partner can access
APPLICATION_IDS = range(1000, 200_000)  # `in` on a range is O(1)
FOREIGN_APPLICATION_IDS = range(900_000, 900_100)  # exist, in an account no partner can access

ALL_USERS = frozenset(ORGANIZERS) | {FOREIGN_ORGANIZER}

WORKDAYS = frozenset(range(5))  # Monday..Friday, as date.weekday() counts them
# The seeded calendars: (weekdays, start, end) in UTC, every week. A user is busy at these times and
# during the events they organize; a user with a calendar connection and nothing here is free but
# for their events. 2030-06-03 is a Monday: recruiter and hiring manager are both free 09:00-11:30,
# 13:00-14:00 and 14:30-17:00 UTC that day.
BUSY_WEEKLY: dict[str, tuple[tuple[frozenset[int], time, time], ...]] = {
    "recruiter@acme.example": ((WORKDAYS, time(12, 0), time(13, 0)), (WORKDAYS, time(14, 0), time(14, 30))),
    "hiring.manager@acme.example": ((WORKDAYS, time(11, 30), time(12, 30)), (frozenset({1, 3}), time(15, 0), time(17, 0))),
    "talent@globex.example": ((WORKDAYS, time(13, 0), time(14, 0)),),
}
CALENDAR_USERS = frozenset(ORGANIZERS) - {NO_CALENDAR_USER} | {FOREIGN_ORGANIZER}


def application_exists(application_id: int) -> bool:
    return application_id in APPLICATION_IDS or application_id in FOREIGN_APPLICATION_IDS


def has_calendar(email: str) -> bool:
    return email in CALENDAR_USERS


def seeded_busy(email: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The UTC (start, end) of `email`'s seeded busy times that overlap start..end (aware datetimes)."""
    weekly = BUSY_WEEKLY.get(email, ())
    out = []
    day = start.astimezone(UTC).date()
    while day <= end.astimezone(UTC).date():
        for weekdays, begins, ends in weekly:  # each block within one UTC day
            if day.weekday() in weekdays:
                block_start, block_end = datetime.combine(day, begins, UTC), datetime.combine(day, ends, UTC)
                if block_start < end and block_end > start:
                    out.append((block_start, block_end))
        day += timedelta(days=1)
    return out


@dataclass(frozen=True)
class Partner:
    """One API client and what its customer accounts let it see."""

    app_id: str
    app_key: str = field(repr=False)  # never in a repr, a log line or a traceback summary
    users: frozenset[str] = frozenset(ORGANIZERS)
    application_ids: range = APPLICATION_IDS

    def may_use_user(self, email: str) -> bool:
        return email in self.users

    def may_use_application(self, application_id: int) -> bool:
        return application_id in self.application_ids


PARTNERS: dict[str, Partner] = {
    DEMO_APP_ID: Partner(DEMO_APP_ID, DEMO_APP_KEY),
    OTHER_APP_ID: Partner(OTHER_APP_ID, OTHER_APP_KEY),
}
