"""Reading an HTTP answer within a total deadline and a byte cap (shared by the Jobylon client and
the http source).

`requests`' timeout bounds each socket read, not the answer: a server sending one byte every half
second is never cut off, in the headers or in the body. Sessions with `DeadlineAdapter` mounted
give every request made through `send` one deadline for the whole answer (connect, status line,
headers, body, redirects followed): each read from the socket waits at most until the deadline,
and a read after it raises a read timeout. (A TLS handshake is bounded per read only.)
`read_body` then reads the streamed body, up to a byte cap.

`pool` / `request` / `read_answer` do the same straight over urllib3, for the Jobylon client's calls:
requests' machinery around each call (preparing, merging settings, cookies, hooks, adapters)
cost more CPU than everything else the connector does per call, and a pass is CPU-bound.
"""

from __future__ import annotations

import http.client
import io
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import urllib3
import urllib3.exceptions
import urllib3.util
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

CHUNK = 64 * 1024
_local = threading.local()  # the deadline of the request this thread is sending, while it sends it


class BodyError(Exception):
    """The body could not be read in full."""


class BodyTimeout(BodyError):
    """The deadline passed while reading the body."""


class BodyBroken(BodyError):
    """The connection broke (or the encoding was broken) while reading the body."""


class BodyTooLarge(BodyError):
    """The body is larger than the cap; `declared` is its Content-Length if that said so already,
    `head` the first chunk read, if any (for an error record)."""

    def __init__(self, declared: int | None = None, head: bytes = b"") -> None:
        super().__init__("larger than the cap")
        self.declared = declared
        self.head = head


def public_url(url: str) -> str:
    """The URL as it may be shown: no user info, no query string, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host += f":{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def send(session: requests.Session, method: str, url: str, seconds: float, **kwargs: Any) -> tuple[requests.Response, float]:
    """`session.request(...)`, streamed, within `seconds` in total; returns the response (headers
    read, body not yet) and the deadline to hand to `read_body`. Past the deadline it raises
    `requests.ReadTimeout`, as a read timeout would."""
    deadline = time.monotonic() + seconds
    _local.deadline = deadline
    try:
        return session.request(method, url, timeout=seconds, stream=True, **kwargs), deadline
    finally:
        _local.deadline = None


def pool(url: str, *, maxsize: int, verify: bool | str) -> HTTPConnectionPool:
    """A keep-alive pool of connections to the host of `url` (http or https) whose answers honour
    the deadline `request` sets. `verify`: check the TLS certificate against certifi's bundle (as
    requests does), against this CA bundle file or folder, or (False) not at all."""
    parts = urllib3.util.parse_url(url)
    scheme = parts.scheme or "http"
    tls: dict[str, Any] = {}
    if scheme == "https":
        if verify is False:
            tls = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
        elif isinstance(verify, str):
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir" if os.path.isdir(verify) else "ca_certs": verify}
        else:
            try:
                import certifi
            except ImportError:  # the system's store then
                tls = {"cert_reqs": "CERT_REQUIRED"}
            else:
                tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
    cls = _POOLS[scheme]
    return cls(parts.host, parts.port, maxsize=maxsize, block=False, retries=False, **tls)


def request(
    connections: HTTPConnectionPool, method: str, target: str, seconds: float, *, body: bytes | None, headers: dict[str, str]
) -> tuple[urllib3.BaseHTTPResponse, float]:
    """One request (no retry, no redirect followed), within `seconds` in total for the whole answer;
    returns the response (headers read, body not yet) and the deadline to hand to `read_answer`.
    Raises urllib3's errors as they are: NewConnectionError or ConnectTimeoutError (never reached
    the server), ReadTimeoutError (past the deadline), ProtocolError or SSLError (the connection
    broke), another urllib3 HTTPError."""
    deadline = time.monotonic() + seconds
    _local.deadline = deadline
    try:
        response = connections.urlopen(
            method,
            target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            preload_content=False,
            timeout=urllib3.Timeout(connect=seconds, read=seconds),
        )
        return response, deadline
    finally:
        _local.deadline = None


def read_answer(response: urllib3.BaseHTTPResponse, deadline: float, cap: int) -> bytes:
    """`read_body` for a response of `request`: the whole body, decoded as its Content-Encoding
    says, or BodyTooLarge / BodyTimeout / BodyBroken. The connection goes back to the pool when
    the body was read in full, else it is closed."""
    try:
        _refuse_declared(response.headers.get("Content-Length"), cap)
        try:
            return _gather(response.stream(CHUNK, decode_content=True), deadline, cap)
        except urllib3.exceptions.ReadTimeoutError:
            raise BodyTimeout() from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError):
            raise BodyBroken() from None
    finally:
        response.close()  # a no-op for a connection already back in the pool, else it is not reused
        response.release_conn()


def read_body(response: requests.Response, deadline: float, cap: int) -> bytes:
    """The whole body (decoded as its Content-Encoding says), or BodyTooLarge past `cap` bytes
    (reading stops there: memory stays bounded by the cap), BodyTimeout past `deadline`,
    BodyBroken if the connection breaks. The caller closes the response."""
    import requests

    _refuse_declared(response.headers.get("Content-Length"), cap)
    try:
        return _gather(response.iter_content(CHUNK), deadline, cap)
    except requests.ConnectionError as exc:
        if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
            raise BodyTimeout() from None
        raise BodyBroken() from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise BodyBroken() from None


def _refuse_declared(content_length: str | None, cap: int) -> None:
    declared = (content_length or "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(int(declared))


def _gather(chunks: Iterable[bytes], deadline: float, cap: int) -> bytes:
    """The chunks joined; BodyTooLarge past `cap` bytes (reading stops there), BodyTimeout past
    `deadline`. What the transport raises while reading is the caller's to translate."""
    kept: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise BodyTooLarge(head=kept[0] if kept else chunk[:CHUNK])
        if time.monotonic() > deadline:
            raise BodyTimeout()
        kept.append(chunk)
    return kept[0] if len(kept) == 1 else b"".join(kept)


class _DeadlineReader(io.RawIOBase):
    """The socket as http.client reads it: every read waits at most until the deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._file = sock.makefile("rb", buffering=0)  # counts as a user of the socket, like http.client's own
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer did not arrive in full within its deadline")
        self._sock.settimeout(remaining)
        return self._file.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _DeadlineSocket:
    """Handed to http.client's response in place of the socket, which it only uses for makefile()."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _Response(http.client.HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(_local, "deadline", None)
        reads_from: Any = sock if deadline is None else _DeadlineSocket(sock, deadline)
        super().__init__(reads_from, *args, **kwargs)


class _Connection(HTTPConnection):
    response_class = _Response


class _TLSConnection(HTTPSConnection):
    response_class = _Response


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


def _deadline_adapter() -> type:
    from requests.adapters import HTTPAdapter

    class DeadlineAdapter(HTTPAdapter):
        """An HTTPAdapter whose connections honour the deadline `send` sets (directly and through an
        HTTP(S) proxy; through a SOCKS proxy only `read_body`'s per-chunk check applies)."""

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = _POOLS

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if isinstance(manager, ProxyManager):
                manager.pool_classes_by_scheme = _POOLS
            return manager

    DeadlineAdapter.__qualname__ = "DeadlineAdapter"
    return DeadlineAdapter


# requests is imported by what uses it (the http source, the Jobylon client behind a proxy), not by
# every command that loads this module: `DeadlineAdapter` is made on first use (PEP 562).
if TYPE_CHECKING:
    import requests
    from requests.adapters import HTTPAdapter

    class DeadlineAdapter(HTTPAdapter): ...

else:

    def __getattr__(name: str) -> Any:
        if name == "DeadlineAdapter":
            globals()[name] = adapter = _deadline_adapter()
            return adapter
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
