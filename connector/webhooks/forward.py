"""`[webhooks.forward]`: the partner's copy of what Jobylon tells us, from the outbox table.

Each event settled to an interview queues one normalised record (remote id, event id, status,
RSVPs, video link) in `webhook_forwards`, in the state database, so a record survives a restart.
`Forwarder.send_due` posts the due ones: a connection error, a timeout, 429 or 5xx is retried at
once (`retry.attempts`, with backoff), then the record waits `retry.failed_item_backoff_seconds`
before the next try (transient); another 4xx or a redirect is permanent (kept, not tried again
until `connector webhooks replay-forwards`). Each failure is recorded on the row: kind, HTTP status,
message, attempts, next attempt time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

import requests

from connector.clock import utcnow
from connector.config import RetryConfig, WebhookForwardConfig
from connector.redact import Redactor
from connector.retry import call_with_retries, next_attempt_at
from connector.store import FailureRecord
from connector.store.records import ForwardRow
from connector.store.webhooks import WebhookStore

log = logging.getLogger("connector.webhooks")


class _Refused(Exception):
    kind = "permanent"

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


class _TryAgain(_Refused):
    kind = "transient"


class Forwarder:
    def __init__(
        self,
        config: WebhookForwardConfig,
        retry: RetryConfig,
        tables: WebhookStore,
        redactor: Redactor,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.retry = retry
        self.tables = tables
        self.redactor = redactor
        self.clock = clock
        self.sleep = sleep
        self.session = requests.Session()

    @property
    def enabled(self) -> bool:
        return bool(self.config.url.get_secret_value())

    def close(self) -> None:
        self.session.close()

    def send_due(self) -> int:
        """Post every due record; how many were sent."""
        if not self.enabled:
            return 0
        sent = 0
        for row in self.tables.due_forwards(self.clock()):
            sent += self._send(row)
        return sent

    def _send(self, row: ForwardRow) -> int:
        try:
            status = call_with_retries(lambda: self._post(row), self.retry, retryable=lambda exc: isinstance(exc, _TryAgain), sleep=self.sleep)
        except _Refused as exc:
            now = self.clock()
            retry_at = next_attempt_at(row.attempts + 1, list(self.retry.failed_item_backoff_seconds), now) if exc.kind == "transient" else None
            message = self.redactor.text(exc.message)
            self.tables.forward_failed(row.id, FailureRecord(kind=exc.kind, message=message, http_status=exc.http_status, next_attempt_at=retry_at), now)
            log.warning("webhooks.forward: record of event %d (%s) not delivered, %s: %s", row.event_id, row.remote_id, exc.kind, message)
            return 0
        self.tables.forward_sent(row.id, status, self.clock())
        return 1

    def _post(self, row: ForwardRow) -> int:
        try:
            answer = self.session.post(
                self.config.url.get_secret_value(),
                data=row.record.encode(),
                headers={"Content-Type": "application/json", **self.config.headers},
                timeout=self.config.timeout_seconds,
                allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _TryAgain(f"the partner's URL could not be reached ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise _Refused(f"the request could not be made ({type(exc).__name__})") from None
        with answer:
            status = answer.status_code
        if 200 <= status < 300:
            return status
        if status == 429 or status >= 500:
            raise _TryAgain(f"the partner answered {status}", status)
        raise _Refused(f"the partner answered {status}" + (" (a redirect; never followed)" if 300 <= status < 400 else ""), status)
