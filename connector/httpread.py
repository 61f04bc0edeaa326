"""Reading an HTTP answer within a total deadline and a byte cap (shared by the Jobylon client and
the http source).

`requests`' timeout bounds each socket read, not the answer: a server sending one byte every half
second is never cut off, in the headers or in the body. Sessions with `DeadlineAdapter` mounted
give every request made through `send` one deadline for the whole answer (connect, status line,
headers, body, redirects followed): each read from the socket waits at most until the deadline,
and a read after it raises a read timeout. (A TLS handshake is bounded per read only.)
`read_body` then reads the streamed body, up to a byte cap.

`Connections` / `request` / `read_answer` do the same straight over http.client, for the Jobylon
client's calls: requests' machinery around each call (preparing, merging settings, cookies, hooks,
adapters), and urllib3's below it, cost more CPU than everything else the connector does per call,
and a pass is CPU-bound. What they send is what a requests Session sent.
"""

from __future__ import annotations

import http.client
import io
import os
import select
import socket
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import ssl

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


class NotReached(Exception):
    """No connection could be made: the request surely did not reach the server."""


class Connections:
    """Keep-alive HTTP/1.1 connections to the host of one base URL (http or https), straight over
    http.client, for `request`: at most `maxsize` idle ones are kept, more are opened when needed.
    `verify`: check the TLS certificate against certifi's bundle (as requests does), against this
    CA bundle file or folder, or (False) not at all."""

    def __init__(self, url: str, *, maxsize: int, verify: bool | str) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._context = _tls_context(verify) if parts.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def take(self, seconds: float) -> http.client.HTTPConnection:
        """An idle connection the server has not closed, or a new one (not yet connected)."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.sock is not None and not _readable(conn.sock):  # an idle connection that can be read from was closed
                    conn.timeout = seconds
                    conn.sock.settimeout(seconds)
                    return conn
                conn.close()
        return _PlainConnection(self.host, self.port, timeout=seconds)

    def give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def connect(self, conn: http.client.HTTPConnection) -> None:
        """Open `conn`: NotReached when no TCP connection is made; a TLS handshake that fails is
        BodyBroken (a connection was made), as requests has it."""
        try:
            http.client.HTTPConnection.connect(conn)
        except OSError:
            conn.close()
            raise NotReached() from None
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is not None:
            try:
                conn.sock = self._context.wrap_socket(conn.sock, server_hostname=self.host)
            except (OSError, ValueError):  # ssl.SSLError and CertificateError are OSError / ValueError
                conn.close()
                raise BodyBroken() from None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    import ssl

    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(capath=verify) if os.path.isdir(verify) else ssl.create_default_context(cafile=verify)
    try:
        import certifi
    except ImportError:  # the system's store then
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _readable(sock: Any) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def request(
    connections: Connections, method: str, target: str, seconds: float, *, body: bytes, headers: dict[str, str]
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection, float]:
    """One request (no retry, no redirect followed), within `seconds` in total for the whole answer;
    returns the response (status and headers read, body not yet), its connection and the deadline,
    for `read_answer`. NotReached: no connection was made; BodyBroken: the connection broke (the
    request may have been sent); BodyTimeout: the deadline passed."""
    deadline = time.monotonic() + seconds
    conn = connections.take(seconds)
    if conn.sock is None:
        connections.connect(conn)
    _local.deadline = deadline
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
    except TimeoutError:
        conn.close()
        raise BodyTimeout() from None
    except (OSError, http.client.HTTPException):
        conn.close()
        raise BodyBroken() from None
    finally:
        _local.deadline = None
    return response, conn, deadline


def read_answer(connections: Connections, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, deadline: float, cap: int) -> bytes:
    """`read_body` for a response of `request`: the whole body, decoded as its Content-Encoding
    (gzip, deflate) says, or BodyTooLarge / BodyTimeout / BodyBroken. The connection goes back to
    `connections` when the body was read in full and the server keeps it open, else it is closed."""
    done = False
    try:
        declared = (response.getheader("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise BodyTooLarge(int(declared))
        decoder = _decoder(response.getheader("Content-Encoding"))
        chunks: list[bytes] = []
        total = 0
        try:
            while raw := response.read(CHUNK):
                chunk = decoder(raw, cap - total + 1) if decoder else raw
                total += len(chunk)
                if total > cap:
                    raise BodyTooLarge(head=chunks[0] if chunks else chunk[:CHUNK])
                if time.monotonic() > deadline:
                    raise BodyTimeout()
                chunks.append(chunk)
        except TimeoutError:
            raise BodyTimeout() from None
        except (OSError, http.client.HTTPException, zlib.error):
            raise BodyBroken() from None
        done = True
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        if done and not response.will_close:
            connections.give(conn)
        else:
            response.close()
            conn.close()


def _decoder(encoding: str | None) -> Any:
    """A function (data, at_most) -> the decoded bytes, for a gzip or deflate body (None else)."""
    name = (encoding or "").strip().lower()
    if name in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif name == "deflate":
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip wrapped; raw deflate below
        state = {"raw": False, "first": True}

        def deflate(data: bytes, at_most: int) -> bytes:
            nonlocal inflate
            if state["first"]:
                state["first"] = False
                try:
                    return inflate.decompress(data, at_most)
                except zlib.error:
                    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return inflate.decompress(data, at_most)

        return deflate
    else:
        return None
    return lambda data, at_most: inflate.decompress(data, at_most)


def read_body(response: requests.Response, deadline: float, cap: int) -> bytes:
    """The whole body (decoded as its Content-Encoding says), or BodyTooLarge past `cap` bytes
    (reading stops there: memory stays bounded by the cap), BodyTimeout past `deadline`,
    BodyBroken if the connection breaks. The caller closes the response."""
    import requests
    import urllib3.exceptions

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


class _PlainConnection(http.client.HTTPConnection):
    """http.client's connection whose answers honour the deadline `request` sets; opened by
    `Connections.connect` (TLS there when the URL says https), never again by http.client."""

    response_class = _Response

    def connect(self) -> None:
        raise RuntimeError("connections are opened by Connections.connect")


def _deadline_adapter() -> type:
    """The requests adapter, with urllib3 pools whose connections make `_Response`s."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.poolmanager import ProxyManager

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
