"""One request to Jobylon and its whole answer, and nothing about what the answer means (that is
`connector.jobylon`'s). The requests go straight over a urllib3 connection pool
(`connector.httpread.pool`): the same requests on the wire as a requests Session sent, at well under
half the CPU per call. Where a proxy may apply (a `*_proxy` variable in the environment) a requests
Session carries them instead, so requests' proxy and `no_proxy` rules still hold.

A failure of the transport comes out as one of the five exceptions below, each saying how far the
request got: JobylonClient decides what that means for a create and for the other calls.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import urllib3.exceptions
import urllib3.util

from connector import httpread

ANSWER_MAX_BYTES = 1 << 20  # what is read of any answer; more is an invalid answer


class Answer(NamedTuple):
    status: int
    headers: Any  # case-insensitive: urllib3's HTTPHeaderDict, or requests' dict through a proxy
    body: bytes
    encoding: str | None

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


class Unreached(Exception):
    """No connection was made: the request surely did not reach Jobylon."""


class Lost(Exception):
    """The connection broke after the request may have been sent."""


class TimedOut(Exception):
    """The whole answer did not arrive within the deadline."""


class TooLarge(Exception):
    def __init__(self, head: Answer) -> None:
        self.head = head  # status, headers and the first bytes read


class TransportFailed(Exception):
    """Any other failure of the transport; the message names its class."""


def _encoding(content_type: str | None) -> str | None:
    """The text encoding of an answer, as requests reads it from Content-Type: the charset named,
    else ISO-8859-1 for text, UTF-8 for JSON, else none (the caller falls back to UTF-8)."""
    if not content_type:
        return None
    kind, *params = content_type.split(";")
    for param in params:
        key, equals, value = param.strip().partition("=")
        if equals and key.strip("\"' ").lower() == "charset":
            return value.strip("\"' ")
    if "text" in kind:
        return "ISO-8859-1"
    if "application/json" in kind:
        return "utf-8"
    return None


def proxied(url: str) -> bool:
    """Whether a proxy may apply to `url`: any *_proxy variable in the environment (requests then
    decides, `no_proxy` included), or user info, a query or a fragment in the URL itself."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return True
    return any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value for name, value in os.environ.items())


def _is_connect_failure(exc: Any) -> bool:
    """True when the request never reached the server (no TCP connection was made); `exc` is a
    requests.ConnectionError."""
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


class JobylonHttp:
    """The connections to Jobylon's API at `base_url`, every request with `headers`."""

    def __init__(self, base_url: str, headers: dict[str, str], *, verify: bool | str, pool_size: int) -> None:
        self.session: Any = None
        self._pool: Any = None
        self._base_url = base_url
        if proxied(base_url):
            self._open_session(headers, verify, pool_size)
        else:
            self._pool = httpread.pool(base_url, maxsize=max(pool_size, 1), verify=verify)
            parts = urlsplit(base_url)
            self._origin = f"{parts.scheme}://{parts.netloc}"
            self._headers = {**headers, "Accept-Encoding": urllib3.util.make_headers(accept_encoding=True)["accept-encoding"], "Connection": "keep-alive"}
            self._json_headers = {**self._headers, "Content-Type": "application/json"}

    def _open_session(self, headers: dict[str, str], verify: bool | str, pool_size: int) -> None:
        """A requests Session, for a proxy (requests' handling of *_proxy and no_proxy)."""
        import requests

        self.session = requests.Session()
        adapter = httpread.DeadlineAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # What requests would read from the environment on every call (proxies, CA bundle),
        # read once here instead: per call it costs more CPU than the rest of the client.
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(self._base_url)
        self.session.verify = verify
        self.session.headers.update(headers)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self._pool is not None:
            self._pool.close()

    def exchange(self, method: str, url: str, data: bytes | None, timeout: float) -> Answer:
        """One request and its whole answer, within `timeout` seconds for all of it."""
        if self._pool is not None:
            return self._exchange(method, url, data, timeout)
        return self._exchange_via_session(method, url, data, timeout)

    def _exchange(self, method: str, url: str, data: bytes | None, timeout: float) -> Answer:
        """One request and its whole answer over the pool; transport failures as Unreached, Lost,
        TimedOut, TooLarge or TransportFailed."""
        headers = self._json_headers if data is not None else self._headers
        target = url[len(self._origin) :] or "/"
        try:
            # An empty body still says Content-Length: 0, as requests does for a DELETE.
            response, deadline = httpread.request(self._pool, method, target, timeout, body=data if data is not None else b"", headers=headers)
        except urllib3.exceptions.ConnectTimeoutError:  # NewConnectionError too: no connection was made
            raise Unreached() from None
        except urllib3.exceptions.ReadTimeoutError:
            raise TimedOut() from None
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError):
            raise Lost() from None
        except urllib3.exceptions.HTTPError as exc:
            raise TransportFailed(type(exc).__name__) from None
        encoding = _encoding(response.headers.get("Content-Type"))
        try:
            body = httpread.read_answer(response, deadline, ANSWER_MAX_BYTES)
        except httpread.BodyBroken:
            raise Lost() from None
        except httpread.BodyTimeout:
            raise TimedOut() from None
        except httpread.BodyTooLarge as exc:
            raise TooLarge(Answer(response.status, response.headers, exc.head, encoding)) from None
        return Answer(response.status, response.headers, body, encoding)

    def _exchange_via_session(self, method: str, url: str, data: bytes | None, timeout: float) -> Answer:
        """`_exchange` through the requests Session (a proxy)."""
        import requests

        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            response, deadline = httpread.send(self.session, method, url, timeout, data=data, headers=headers, allow_redirects=False)
            with response:
                try:
                    return Answer(response.status_code, response.headers, httpread.read_body(response, deadline, ANSWER_MAX_BYTES), response.encoding)
                except httpread.BodyTooLarge as exc:
                    raise TooLarge(Answer(response.status_code, response.headers, exc.head, response.encoding)) from None
        except requests.ConnectionError as exc:
            raise (Unreached() if _is_connect_failure(exc) else Lost()) from None
        except httpread.BodyBroken:
            raise Lost() from None
        except (requests.Timeout, httpread.BodyTimeout):
            raise TimedOut() from None
        except requests.RequestException as exc:
            raise TransportFailed(type(exc).__name__) from None
