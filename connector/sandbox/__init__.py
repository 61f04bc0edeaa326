"""The Jobylon Push API emulator: `SandboxServer` for tests and the demo, `serve_forever` for
`connector sandbox`, and the seeded directory (partners, users, application ids)."""

from connector.sandbox.directory import (
    APPLICATION_IDS,
    DEMO_APP_ID,
    DEMO_APP_KEY,
    FOREIGN_APPLICATION_IDS,
    FOREIGN_ORGANIZER,
    ORGANIZERS,
    OTHER_APP_ID,
    OTHER_APP_KEY,
    PARTNERS,
)
from connector.sandbox.faults import FAULT_KINDS
from connector.sandbox.server import SandboxServer, serve_forever

__all__ = [
    "APPLICATION_IDS",
    "DEMO_APP_ID",
    "DEMO_APP_KEY",
    "FAULT_KINDS",
    "FOREIGN_APPLICATION_IDS",
    "FOREIGN_ORGANIZER",
    "ORGANIZERS",
    "OTHER_APP_ID",
    "OTHER_APP_KEY",
    "PARTNERS",
    "SandboxServer",
    "serve_forever",
]
