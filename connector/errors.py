"""The connector's exception tree: what can go wrong, and what an operator needs to know about it.

    ConnectorError
     +-- UserError                 shown without traceback; carries the process exit code
     |    +-- ConfigError          exit 2: a wrong, missing or unknown config key
     |    +-- SourceError          the partner's system could not be read (the pass changes nothing)
     |    +-- GuardError           exit 3: a safety guard refused the planned deletions
     |    +-- LockedError          another connector process holds the state database
     +-- JobylonError              one call to Jobylon failed; carries method, event id, HTTP status, answer
          +-- TransientError       worth retrying later (timeouts, 429, 5xx, connection errors)
          +-- PermanentError       Jobylon refused the request (400 and other 4xx); retrying changes nothing
          |    +-- NotFoundError   404: the event is not (or no longer) in Jobylon
          +-- AuthError            exit 4: 401/403, the credentials were refused; the pass stops
          +-- InDoubtError         a create may or may not have been applied; never repeated by itself

No exception message ever contains a secret: the app key and source credentials are kept out of
every message at the point where the message is built.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""


class UserError(ConnectorError):
    exit_code = 1


class ConfigError(UserError):
    exit_code = 2


class SourceError(UserError):
    exit_code = 1


class GuardError(UserError):
    exit_code = 3


class LockedError(UserError):
    exit_code = 1


class JobylonError(ConnectorError):
    kind = "transient"

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
    kind = "permanent"


class AuthError(JobylonError):
    kind = "permanent"


class InDoubtError(JobylonError):
    kind = "in_doubt"
