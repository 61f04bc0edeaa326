"""JobylonClient: the only code that speaks HTTP to Jobylon's Push API, and the one place where HTTP
outcomes become the typed errors of `connector.errors`.

Which failures are repeated:
- POST (create) has no idempotency key, so it is repeated only where the request surely was not
  processed: connect errors, 429 and 503. A read timeout, a dropped connection after sending, or
  500/502/504 leave the outcome unknown: InDoubtError, never repeated by itself.
- PUT and DELETE are idempotent: every transient failure is retried.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from connector import __version__
from connector.config import JobylonConfig, RetryConfig
from connector.errors import AuthError, InDoubtError, JobylonError, NotFoundError, PermanentError, TransientError
from connector.retry import RateLimiter, call_with_retries, parse_retry_after

log = logging.getLogger("connector.jobylon")
RESPONSE_KEEP = 2000
SAFE_TO_REPEAT_STATUSES = {429, 503}  # the server says it did not process the request


def _is_connect_failure(exc: requests.ConnectionError) -> bool:
    """True when the request never reached the server (no TCP connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _truncate(text: str) -> str:
    return text if len(text) <= RESPONSE_KEEP else text[:RESPONSE_KEEP] + f"... ({len(text)} characters)"


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
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # What requests would read from the environment on every call (proxies, CA bundle),
        # read once here instead: per call it costs more CPU than the rest of the client.
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(config.base_url)
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.session.verify = (ca_bundle or True) if config.verify_tls else False
        self.session.headers.update(
            {
                "X-App-Id": config.app_id,
                "X-App-Key": config.app_key.get_secret_value(),
                "Accept": "application/json",
                "User-Agent": f"jobylon-connector/{__version__}",
            }
        )

    def close(self) -> None:
        self.session.close()

    def create(self, payload: dict[str, Any]) -> int:
        """POST the event; returns Jobylon's event id."""
        response = self._call("POST", self._events_url, payload, None)
        try:
            event_id = response.json()["id"]
            if isinstance(event_id, bool) or not isinstance(event_id, int):
                raise TypeError(event_id)
        except (ValueError, KeyError, TypeError):
            # The event may well exist: the answer just does not say which one it is.
            raise InDoubtError(
                f"POST {self._config.events_path}: {response.status_code} without an event id in the answer",
                method="POST",
                http_status=response.status_code,
                response=_truncate(response.text),
            ) from None
        return event_id

    def update(self, event_id: int, payload: dict[str, Any]) -> None:
        self._call("PUT", self._event_url(event_id), payload, event_id)

    def delete(self, event_id: int) -> bool:
        """DELETE the event; False when it was already gone (404), which is success too."""
        try:
            self._call("DELETE", self._event_url(event_id), None, event_id)
        except NotFoundError:
            return False
        return True

    def probe(self) -> str:
        """Are the credentials accepted? Sends a PUT to an event id that never exists with an empty
        body, which changes nothing: 404 or 400 means accepted; AuthError means refused."""
        try:
            self._send("PUT", self._event_url(0), {}, 0)
        except PermanentError:
            pass
        return "accepted"

    def _event_url(self, event_id: int) -> str:
        return f"{self._events_url}{event_id}/"

    def _call(self, method: str, url: str, body: dict[str, Any] | None, event_id: int | None) -> requests.Response:
        def attempt() -> requests.Response:
            return self._send(method, url, body, event_id)

        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            log.info("retrying %s %s after %s (attempt %d)", method, self._path(url), exc, state.attempt_number)

        return call_with_retries(attempt, self._retry, sleep=self._sleep, before_sleep=before_sleep)

    def _path(self, url: str) -> str:
        return url.removeprefix(self._config.base_url)

    def _send(self, method: str, url: str, body: dict[str, Any] | None, event_id: int | None) -> requests.Response:
        self._limiter.acquire()
        where = f"{method} {self._path(url)}"
        context: dict[str, Any] = {"method": method, "event_id": event_id}
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self.session.request(method, url, data=data, headers=headers, timeout=self._config.timeout_seconds)
        except requests.ConnectionError as exc:
            if _is_connect_failure(exc):
                raise TransientError(f"{where}: could not connect to Jobylon", **context) from None
            if method == "POST":
                raise InDoubtError(f"{where}: connection lost after the request was sent; the event may or may not exist", **context) from None
            raise TransientError(f"{where}: connection lost", **context) from None
        except requests.Timeout:
            if method == "POST":
                raise InDoubtError(f"{where}: no answer within {self._config.timeout_seconds:g} s; the event may or may not exist", **context) from None
            raise TransientError(f"{where}: no answer within {self._config.timeout_seconds:g} s", **context) from None
        except requests.RequestException as exc:
            raise TransientError(f"{where}: {type(exc).__name__}", **context) from None
        status = response.status_code
        if status < 300:
            return response
        raise self._error(where, response, context)

    def _error(self, where: str, response: requests.Response, context: dict[str, Any]) -> JobylonError:
        status = response.status_code
        answer = _truncate(response.text)
        details = {**context, "http_status": status, "response": answer}
        if status in (401, 403):
            return AuthError(f"{where}: {status}, Jobylon refused the credentials or the permission: {answer}", **details)
        if status == 404:
            return NotFoundError(f"{where}: 404, event not found in Jobylon", **details)
        if status in SAFE_TO_REPEAT_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return TransientError(f"{where}: {status}, Jobylon asks to try later", retry_after=retry_after, **details)
        if status >= 500 or status == 408:
            if context["method"] == "POST":
                return InDoubtError(f"{where}: {status} after the request was sent; the event may or may not exist", **details)
            return TransientError(f"{where}: {status} from Jobylon", **details)
        return PermanentError(f"{where}: {status}, Jobylon refused the request: {answer}", **details)
