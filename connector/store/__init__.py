"""The state: its tables (`schema`), typed records (`records`), the file on disk (`file`) and the
`Store` that reads and writes them (`sqlite`). Only this package speaks SQL."""

from typing import Any

from connector.store.file import ProcessLock
from connector.store.records import Answered, EventRow, EventState, FailureRecord, FailureRow, Intent, OperationRow, RunRow
from connector.store.schema import SCHEMA_VERSION, migrations
from connector.store.sqlite import Store


def open_store(state: Any, *, redactor: Any = None, create: bool = True) -> Store:
    """The state named by the `[state]` config: PostgreSQL with `state.url`, else the SQLite file
    at `state.path`. Without `create`, a missing database is an error, never a new one."""
    if state.url is not None:
        from connector.store.postgres import PostgresStore  # psycopg only where PostgreSQL is used

        password = state.password.get_secret_value() if state.password is not None else None
        return PostgresStore(state.url.get_secret_value(), password=password, redactor=redactor, create=create)
    return Store(state.path, redactor=redactor, create=create)


__all__ = [
    "SCHEMA_VERSION",
    "Answered",
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
    "open_store",
]
