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
FOREIGN_ORGANIZER = "outsider@umbrella.example"  # exists, in an account the partners cannot access
APPLICATION_IDS = range(1000, 200_000)
FOREIGN_APPLICATION_IDS = range(900_000, 900_100)


@dataclass(frozen=True)
class Partner:
    app_id: str
    app_key: str
    users: frozenset[str] = field(default=frozenset(ORGANIZERS))
    application_ids: range = APPLICATION_IDS


PARTNERS = {
    DEMO_APP_ID: Partner(DEMO_APP_ID, DEMO_APP_KEY),
    OTHER_APP_ID: Partner(OTHER_APP_ID, OTHER_APP_KEY),
}
ALL_USERS = frozenset(ORGANIZERS) | {FOREIGN_ORGANIZER}
