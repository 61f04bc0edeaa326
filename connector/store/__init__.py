"""The state: its tables (`schema`), typed records (`records`), the file on disk (`file`) and the
`Store` that reads and writes them (`sqlite`). Only this package speaks SQL."""

from connector.store.file import ProcessLock
from connector.store.records import EventRow, EventState, FailureRecord, FailureRow, Intent, OperationRow, RunRow
from connector.store.schema import SCHEMA_VERSION, migrations
from connector.store.sqlite import Store

__all__ = [
    "SCHEMA_VERSION",
    "EventRow",
    "EventState",
    "FailureRecord",
    "FailureRow",
    "Intent",
    "OperationRow",
    "ProcessLock",
    "RunRow",
    "Store",
    "migrations",
]
