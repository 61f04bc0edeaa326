"""The connector's exception tree: what can go wrong, and what an operator needs to know about it.

    ConnectorError                 exit 1 unless a subclass says otherwise
     +-- UserError                 shown as one line, without traceback
     |    +-- ConfigError          exit 2: a wrong, missing or unknown config key; the service stays down
     |    +-- SourceError          the partner's system could not be read (the pass changes nothing)
     |    +-- LockedError          exit 6: another connector process holds the state database
     |    +-- StateError           exit 5: the state database cannot be read or written (damaged,
     |    |                        missing, read-only, disk full, not a file); nothing is sent
     |    +-- LeaseLost            a replica's lease ran out or was taken over: no further call
     +-- JobylonError              one call to Jobylon failed; carries method, event id, HTTP status, answer
          +-- TransientError       kind transient: worth retrying later (timeouts, 429, 5xx, connection errors)
          +-- PermanentError       kind permanent: Jobylon refused the request (400 and other 4xx)
          |    +-- NotFoundError   404: the event is not (or no longer) in Jobylon
          |    +-- ForbiddenError  403 on one event (PUT/DELETE) while the partner itself is accepted:
          |                        an event of another partner or made inside Jobylon; per item
          |    +-- AvailabilityRefusedError  exit 1: a 400 to an availability query (an unknown user, one in
          |                        an account the partner cannot access, one without a calendar
          |                        connection); one line naming the user, never recorded as a failure
          +-- AuthError            exit 4, kind transient: the credentials were refused; the pass stops,
          |                        and the item is tried again once they are fixed
          +-- InDoubtError         kind in_doubt: a create may or may not have been applied; never repeated
     +-- DriftError                kind drift: Jobylon's copy of a mapped event was cancelled or changed inside
                                   Jobylon, or a second event looks like a copy of it (a calendar_event webhook
                                   said so); per item, reported, never raised past the webhook intake

The failure kinds recorded in `failures.kind` are `FAILURE_KINDS`.

Every class carries its process exit code (`exit_code`); Jobylon errors also carry the failure kind
they are recorded as (`kind`) and whether they stop the whole pass (`stops_pass`). The CLI's error
boundary and the executor read these attributes; nothing else maps errors to codes.

No exception message ever contains a secret: the app key and source credentials are kept out of
every message at the point where the message is built.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

FAILURE_KINDS = ("transient", "permanent", "in_doubt", "drift")


class ExitCode(IntEnum):
    """The process exit codes, the only place they are defined."""

    OK = 0
    FAILED = 1  # failed items, a source error, an interrupted pass, an unexpected error
    CONFIG = 2  # bad config or usage: systemd's RestartPreventExitStatus
    GUARD = 3  # a safety guard held changes back
    AUTH = 4  # Jobylon refused the credentials
    STATE = 5  # the state database cannot be used; nothing was sent after the problem began
    LOCKED = 6  # another connector process held the state database for longer than the wait


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED


class UserError(ConnectorError):
    """A problem a person fixes; shown as one line."""


class ConfigError(UserError):
    exit_code = ExitCode.CONFIG


class SourceError(UserError):
    pass


class LockedError(UserError):
    exit_code = ExitCode.LOCKED


class StateError(UserError):
    exit_code = ExitCode.STATE


class LeaseLost(StateError):
    """This replica's lease (PostgreSQL state) ran out or another replica took it over."""


class JobylonError(ConnectorError):
    kind: ClassVar[str] = "transient"
    stops_pass: ClassVar[str | None] = None  # the pass outcome this error forces, if any

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        event_id: int | None = None,
        http_status: int | None = None,
        response: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.event_id = event_id
        self.http_status = http_status
        self.response = response
        self.retry_after = retry_after


class TransientError(JobylonError):
    kind = "transient"


class PermanentError(JobylonError):
    kind = "permanent"


class NotFoundError(PermanentError):
    pass


class ForbiddenError(PermanentError):
    pass


class AvailabilityRefusedError(PermanentError):
    exit_code = ExitCode.FAILED


class AuthError(JobylonError):
    kind = "transient"
    exit_code = ExitCode.AUTH
    stops_pass = "auth"


class InDoubtError(JobylonError):
    kind = "in_doubt"


class DriftError(ConnectorError):
    """Jobylon's copy of an event no longer matches what the source schedules (changed or cancelled
    inside Jobylon, or a likely second copy); `sync.on_drift` decides what the next pass does."""

    kind: ClassVar[str] = "drift"

    def __init__(self, message: str, *, remote_id: str, event_id: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.remote_id = remote_id
        self.event_id = event_id
