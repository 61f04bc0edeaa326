"""JobylonClient: the only code that speaks HTTP to Jobylon's Push API, and the one place where HTTP
outcomes become the typed errors of `connector.errors`.

Which failures are repeated:
- POST (create) has no idempotency key, so it is repeated only where the request surely was not
  processed: connect errors, 429 and 503. A read timeout, a dropped connection after sending, or
  500/502/504 leave the outcome unknown: InDoubtError, never repeated by itself.
- PUT and DELETE are idempotent: every transient failure is retried.

Which refusals stop the pass (AuthError): a 401 on any call, a 403 on a create (the partner may
create nothing), or a 403 on one event that a credentials probe confirms. A 403 on PUT/DELETE of
one event while the probe is accepted is that event's own permanent failure (ForbiddenError: made
by another partner or inside Jobylon) and the pass goes on.

What is never trusted in an answer:
- Redirects are not followed (the app key would go wherever `Location` says): any 3xx is a
  PermanentError naming the status and the place, without its query string.
- A create is created only by a 2xx carrying an integer `id` in 1..2**63-1 (what the state database
  can hold); any other answer to a POST leaves it in doubt.
- Every call has one deadline, `jobylon.timeout_seconds`, for the whole answer (an answer trickling
  in is a timeout), and at most ANSWER_MAX_BYTES of an answer are read (more is an invalid answer).
- Answers are kept for the failure record masked, then cut to RESPONSE_KEEP characters.

Each request and its answer travel through `connector.jobylon_http` (a urllib3 pool, or a requests
Session where a proxy may apply), which says how far a failed one got.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from connector import __version__, availability, httpread
from connector.config import JobylonConfig, RetryConfig
from connector.errors import (
    AuthError,
    AvailabilityRefusedError,
    ForbiddenError,
    InDoubtError,
    JobylonError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from connector.jobylon_http import Answer, JobylonHttp, Lost, TimedOut, TooLarge, TransportFailed, Unreached
from connector.redact import Redactor
from connector.retry import RateLimiter, call_with_retries, parse_retry_after

log = logging.getLogger("connector.jobylon")
RESPONSE_KEEP = 2000  # characters of an answer kept for the failure record (after masking)
EVENT_ID_MAX = 2**63 - 1  # SQLite's largest integer
PROBE_FRESH_SECONDS = 60.0  # a 403 on one event within this long of an accepted probe needs no new one
SAFE_TO_REPEAT_STATUSES = {429, 503}  # the server says it did not process the request


def _place(url: str, location: str | None) -> str:
    """Where a redirect points, as it may be shown: resolved, without user info, query or fragment."""
    if not location or not location.strip():
        return "(no Location)"
    try:
        return httpread.public_url(urljoin(url, location.strip()))
    except ValueError:
        return "(an unreadable Location)"


class JobylonClient:
    def __init__(
        self,
        config: JobylonConfig,
        retry: RetryConfig,
        *,
        pool_size: int = 4,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._retry = retry
        self._limiter = limiter or RateLimiter(config.max_requests_per_second)
        self._sleep = sleep
        self._events_url = config.base_url + config.events_path
        self._redactor = Redactor([config.app_key.get_secret_value()])
        self._probed_at = -PROBE_FRESH_SECONDS
        headers = {
            "X-App-Id": config.app_id,
            "X-App-Key": config.app_key.get_secret_value(),
            "Accept": "application/json",
            "User-Agent": f"jobylon-connector/{__version__} (pid {os.getpid()})",
        }
        # The CA bundle requests would read from the environment on every call, read once here.
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        verify: bool | str = (ca_bundle or True) if config.verify_tls else False
        self._http = JobylonHttp(config.base_url, headers, verify=verify, pool_size=pool_size)

    def close(self) -> None:
        self._http.close()

    def create(self, payload: dict[str, Any], *, text: str | None = None) -> int:
        """POST the event; returns Jobylon's event id. `text`: the payload's JSON, if the caller has
        encoded it already (the executor does, for the intent's record)."""
        answer = self._call("POST", self._events_url, payload if text is None else text, None)
        where = f"POST {self._config.events_path}: {answer.status}"
        try:
            event_id = json.loads(answer.body)["id"]
            if isinstance(event_id, bool) or not isinstance(event_id, int):
                raise TypeError(event_id)
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):
            # The event may well exist: the answer just does not say which one it is.
            raise self._in_doubt(f"{where} without an event id in the answer", answer) from None
        if not 1 <= event_id <= EVENT_ID_MAX:
            shown = str(event_id) if len(str(event_id)) <= 40 else f"{str(event_id)[:40]}..."
            raise self._in_doubt(f"{where} with event id {shown}, outside 1..2**63-1; the event may exist", answer)
        return event_id

    def _in_doubt(self, message: str, answer: Answer) -> InDoubtError:
        return InDoubtError(message, method="POST", http_status=answer.status, response=self._keep(answer.text))

    def update(self, event_id: int, payload: dict[str, Any], *, text: str | None = None) -> None:
        try:
            self._call("PUT", self._event_url(event_id), payload if text is None else text, event_id)
        except ForbiddenError as exc:
            raise self._confirm_forbidden(exc) from None

    def delete(self, event_id: int) -> bool:
        """DELETE the event; False when it was already gone (404), which is success too."""
        try:
            self._call("DELETE", self._event_url(event_id), None, event_id)
        except NotFoundError:
            return False
        except ForbiddenError as exc:
            raise self._confirm_forbidden(exc) from None
        return True

    def availability(self, query: availability.AvailabilityQuery) -> list[availability.Slot]:
        """POST an availability query; the free slots (or periods) Jobylon answers, in UTC.

        A query changes nothing in Jobylon, so an answer lost on the way (a timeout, a 5xx) is just
        a failed query, to be asked again: TransientError, not in doubt. A 400 is the users' problem
        (unknown, in an account the partner cannot access, without a calendar connection):
        AvailabilityRefusedError, naming them."""
        path = self._config.availability_path
        try:
            answer = self._call("POST", self._config.base_url + path, availability.request_body(query), None)
        except InDoubtError as exc:
            message = exc.message.split("; the event may", 1)[0]  # no event: nothing can have been made
            raise TransientError(
                f"{message}; the availability query failed, ask again", method="POST", http_status=exc.http_status, response=exc.response
            ) from None
        except NotFoundError as exc:
            raise PermanentError(
                f"POST {path}: 404, Jobylon has no availability call there; check jobylon.availability_path",
                method="POST",
                http_status=404,
                response=exc.response,
            ) from None
        except PermanentError as exc:
            if exc.http_status != 400:
                raise
            raise AvailabilityRefusedError(
                availability.explain_refusal(exc.response, query.users), method="POST", http_status=400, response=exc.response
            ) from None
        try:
            return availability.parse_answer(json.loads(answer.body))
        except (ValueError, RecursionError) as exc:  # AnswerError is a ValueError
            raise PermanentError(
                f"POST {path}: {answer.status}, an availability answer the connector cannot read: {exc}",
                method="POST",
                http_status=answer.status,
                response=self._keep(answer.text),
            ) from None

    def probe(self) -> str:
        """Are the credentials accepted? Sends a PUT to an event id that never exists with an empty
        body, which changes nothing: 404 or 400 means accepted; a 401 or 403 means refused."""
        try:
            self._send("PUT", self._event_url(0), {}, 0)
        except ForbiddenError as exc:
            raise AuthError(
                f"{exc.message}: Jobylon refused the credentials' probe", method="PUT", event_id=0, http_status=403, response=exc.response
            ) from None
        except PermanentError:
            pass
        self._probed_at = time.monotonic()
        return "accepted"

    def _confirm_forbidden(self, exc: ForbiddenError) -> JobylonError:
        """A 403 on one event: the partner may not touch that event, or is refused as a whole. A
        probe tells them apart (at most one a minute): refused -> AuthError, the pass stops;
        accepted -> this event alone fails, permanently, and the pass goes on."""
        if time.monotonic() - self._probed_at > PROBE_FRESH_SECONDS:
            try:
                self.probe()
            except AuthError as refused:
                return AuthError(
                    f"{exc.message}; the credentials' probe was refused too: Jobylon refuses this partner",
                    method=exc.method,
                    event_id=exc.event_id,
                    http_status=exc.http_status,
                    response=refused.response,
                )
            except JobylonError:
                pass  # the probe could not tell (timeout, 5xx): judge this event alone
        return exc

    def _event_url(self, event_id: int) -> str:
        return f"{self._events_url}{event_id}/"

    def _call(self, method: str, url: str, body: dict[str, Any] | str | None, event_id: int | None) -> Answer:
        """`body`: the JSON to send, as data or already encoded."""

        def attempt() -> Answer:
            return self._send(method, url, body, event_id)

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            log.info("retrying %s %s after %s (attempt %d)", method, self._path(url), exc, state.attempt_number)

        return call_with_retries(attempt, self._retry, sleep=self._sleep, before_sleep=before_sleep)

    def _path(self, url: str) -> str:
        return url.removeprefix(self._config.base_url)

    def _send(self, method: str, url: str, body: dict[str, Any] | str | None, event_id: int | None) -> Answer:
        self._limiter.acquire()
        where = f"{method} {self._path(url)}"
        context: dict[str, Any] = {"method": method, "event_id": event_id}
        data = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else None
        timeout = self._config.timeout_seconds
        try:
            answer = self._http.exchange(method, url, data, timeout)
        except Unreached:
            raise TransientError(f"{where}: could not connect to Jobylon", **context) from None
        except Lost:
            if method == "POST":
                raise InDoubtError(f"{where}: connection lost after the request was sent; the event may or may not exist", **context) from None
            raise TransientError(f"{where}: connection lost", **context) from None
        except TimedOut:
            if method == "POST":
                raise InDoubtError(f"{where}: no answer within {timeout:g} s; the event may or may not exist", **context) from None
            raise TransientError(f"{where}: no answer within {timeout:g} s", **context) from None
        except TooLarge as exc:
            message = f"{where}: {exc.head.status}, the answer exceeded 1 MiB; stopped reading"
            head = exc.head.text
            details = {**context, "http_status": exc.head.status, "response": self._keep(head) if head else None}
            if method == "POST":
                raise InDoubtError(f"{message}; the event may or may not exist", **details) from None
            raise TransientError(message, **details) from None
        except TransportFailed as exc:
            raise TransientError(f"{where}: {exc}", **context) from None
        if 200 <= answer.status < 300:
            return answer
        raise self._error(where, url, answer, context)

    def _keep(self, text: str) -> str:
        """What is kept of an answer: secrets masked, then cut to RESPONSE_KEEP characters."""
        return self._redactor.truncate(text, RESPONSE_KEEP)

    def _error(self, where: str, url: str, answer: Answer, context: dict[str, Any]) -> JobylonError:
        status = answer.status
        text = self._keep(answer.text)
        details = {**context, "http_status": status, "response": text}
        if 300 <= status < 400:
            # Never followed: the app key would go wherever Location points. The place is named
            # without user info, query string or fragment (they may carry tokens).
            place = _place(url, answer.headers.get("Location"))
            return PermanentError(f"{where}: {status}, Jobylon redirects to {self._redactor.text(place)}; redirects are not followed", **details)
        if status == 401 or (status == 403 and context["method"] == "POST"):
            return AuthError(f"{where}: {status}, Jobylon refused the credentials or the permission: {text}", **details)
        if status == 403:
            event = context.get("event_id")
            return ForbiddenError(
                f"{where}: 403, Jobylon does not let this partner change event {event} (made by another partner or inside Jobylon): {text}", **details
            )
        if status == 404:
            return NotFoundError(f"{where}: 404, event not found in Jobylon", **details)
        if status in SAFE_TO_REPEAT_STATUSES:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            return TransientError(f"{where}: {status}, Jobylon asks to try later", retry_after=retry_after, **details)
        if status >= 500 or status == 408:
            if context["method"] == "POST":
                return InDoubtError(f"{where}: {status} after the request was sent; the event may or may not exist", **details)
            return TransientError(f"{where}: {status} from Jobylon", **details)
        return PermanentError(f"{where}: {status}, Jobylon refused the request: {text}", **details)
