"""Reading an HTTP answer within a total deadline and a byte cap (shared by the Jobylon client and
the http source).

`requests`' timeout bounds each socket read, not the answer: a server sending one byte every half
second is never cut off, in the headers or in the body. Sessions with `DeadlineAdapter` mounted
give every request made through `send` one deadline for the whole answer (connect, status line,
headers, body, redirects followed): each read from the socket waits at most until the deadline,
and a read after it raises a read timeout. (A TLS handshake is bounded per read only.)
`read_body` then reads the streamed body, up to a byte cap.
"""

from __future__ import annotations

import http.client
import io
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
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


def read_body(response: requests.Response, deadline: float, cap: int) -> bytes:
    """The whole body (decoded as its Content-Encoding says), or BodyTooLarge past `cap` bytes
    (reading stops there: memory stays bounded by the cap), BodyTimeout past `deadline`,
    BodyBroken if the connection breaks. The caller closes the response."""
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(int(declared))
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(CHUNK):
            total += len(chunk)
            if total > cap:
                raise BodyTooLarge(head=chunks[0] if chunks else chunk[:CHUNK])
            if time.monotonic() > deadline:
                raise BodyTimeout()
            chunks.append(chunk)
    except requests.ConnectionError as exc:
        if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
            raise BodyTimeout() from None
        raise BodyBroken() from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise BodyBroken() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
