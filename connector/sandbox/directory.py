"""The sandbox's seeded world: partners with their app keys, the users (organizers) and the
application ids each partner's customer accounts give it access to."""

from __future__ import annotations

from dataclasses import dataclass, field

DEMO_APP_ID = "demo-app"
DEMO_APP_KEY = "demo-key-0123456789"
OTHER_APP_ID = "other-app"
OTHER_APP_KEY = "other-key-9876543210"

ORGANIZERS = (
    "recruiter@acme.example",
    "hiring.manager@acme.example",
    "talent@globex.example",
    "ops@initech.example",
)
FOREIGN_ORGANIZER = "outsider@umbrella.example"  # exists, in an account no partner can access
APPLICATION_IDS = range(1000, 200_000)  # `in` on a range is O(1)
FOREIGN_APPLICATION_IDS = range(900_000, 900_100)  # exist, in an account no partner can access

ALL_USERS = frozenset(ORGANIZERS) | {FOREIGN_ORGANIZER}


def application_exists(application_id: int) -> bool:
    return application_id in APPLICATION_IDS or application_id in FOREIGN_APPLICATION_IDS


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
