"""JobylonClient against a misbehaving Jobylon (or a proxy in front of it) on 127.0.0.1: redirects,
answers that echo the app key, event ids SQLite cannot hold, answers that trickle, endless bodies."""

from __future__ import annotations

import json
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import CREATE_BODY, UPDATE_BODY

from connector.config import load_settings
from connector.errors import AuthError, InDoubtError, JobylonError, NotFoundError, PermanentError, TransientError
from connector.jobylon import RESPONSE_KEEP, JobylonClient
from connector.redact import MASK, Redactor

KEY = "hostile-SECRET-key-0123456789abcdefXYZ"
MIB = 1 << 20  # the cap on what is read of any answer
BODY, UPDATE = CREATE_BODY, UPDATE_BODY
CALLS: dict[str, Callable[[JobylonClient], Any]] = {
    "create": lambda c: c.create(BODY),
    "update": lambda c: c.update(5, UPDATE),
    "delete": lambda c: c.delete(5),
}


class Hostile:
    """A Jobylon stand-in whose `answer(handler)` writes whatever it likes to the socket. Every
    request is recorded in `seen` (method, path, headers)."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None], host: str = "127.0.0.1") -> None:
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
                try:
                    answer(self)
                except OSError:  # the client hung up: expected for the endless and trickling answers
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes | dict | list = b"", headers: dict[str, str] | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h.send_response(status)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


@pytest.fixture
def servers():
    started: list[Hostile] = []

    def start(answer: Callable[[BaseHTTPRequestHandler], None], host: str = "127.0.0.1") -> Hostile:
        server = Hostile(answer, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client(url: str, *, timeout: float = 2, attempts: int = 2) -> JobylonClient:
    settings = load_settings(
        data={
            "jobylon": {"base_url": url, "app_id": "app", "app_key": KEY, "max_requests_per_second": 1000, "timeout_seconds": timeout},
            "source": {"kind": "file", "path": "x"},
            "retry": {"attempts": attempts, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02},
        }
    )
    return JobylonClient(settings.jobylon, settings.retry)


def everything(exc: JobylonError) -> str:
    """All an operator (or the state database) could see of the error."""
    return "\n".join([str(exc), repr(exc), exc.message, exc.response or "", "".join(traceback.format_exception(exc))])


def fragments(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


# -- 4. redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", ["create", "update", "delete"])
def test_a_redirect_is_never_followed_and_is_a_permanent_failure(servers, status, call):
    elsewhere = servers(lambda h: reply(h, 201, {"id": 7}), host="localhost")  # another host, happy to "create"
    location = f"http://user:pw-SECRET-1@localhost:{elsewhere.server.server_address[1]}/p1/events/?token=tok-SECRET-2#frag-SECRET-3"
    jobylon = servers(lambda h: reply(h, status, {"detail": "moved"}, {"Location": location}))
    with pytest.raises(PermanentError) as raised:
        CALLS[call](client(jobylon.url))
    assert not isinstance(raised.value, NotFoundError)
    text = everything(raised.value)
    assert f"{status}" in str(raised.value) and f"{elsewhere.url}/p1/events/" in str(raised.value)
    assert raised.value.http_status == status
    for secret in ("SECRET", KEY):
        assert secret not in text
    assert elsewhere.seen == []  # the app key went nowhere else
    assert len(jobylon.seen) == 1  # and a redirect is not retried


def test_a_relative_redirect_names_the_resolved_place_without_its_query(servers):
    jobylon = servers(lambda h: reply(h, 307, b"", {"Location": "/p9/moved/?sig=SECRET"}))
    with pytest.raises(PermanentError, match=r"307, Jobylon redirects to http://127\.0\.0\.1:\d+/p9/moved/; redirects are not followed") as raised:
        client(jobylon.url).create(BODY)
    assert "SECRET" not in everything(raised.value)
    missing = servers(lambda h: reply(h, 302, b""))
    with pytest.raises(PermanentError, match="302, Jobylon redirects to \\(no Location\\)"):
        client(missing.url).update(5, UPDATE)


@pytest.mark.parametrize(
    "answer",
    [(200, b'{"id": "5"}'), (200, b"[5]"), (200, b"5"), (201, b'{"id": 5.0}'), (201, b'{"id": true}'), (202, b""), (200, b"<html>ok</html>")],
)
def test_a_create_is_created_only_by_a_2xx_with_an_integer_id(servers, answer):
    status, body = answer
    jobylon = servers(lambda h: reply(h, status, body))
    with pytest.raises(InDoubtError, match="without an event id") as raised:
        client(jobylon.url).create(BODY)
    assert raised.value.http_status == status and raised.value.response == body.decode()


# -- 5. the app key echoed in a long answer --------------------------------------------------


@pytest.mark.parametrize("kept", [1, 7, 8, 20, len(KEY) - 1])
@pytest.mark.parametrize("status", [400, 401, 500])
def test_an_echoed_key_straddling_the_cut_leaves_no_fragment(servers, status, kept):
    """An error page echoing the request headers, the key placed so that the 2,000-character cut
    falls `kept` characters into it."""

    def echo(h: BaseHTTPRequestHandler) -> None:
        received = h.headers["X-App-Key"]
        prefix = "<html><pre>X-App-Key: "
        page = prefix.rjust(RESPONSE_KEEP - kept, "#") + received + "\n" + "".join(f"{k}: {v}\n" for k, v in h.headers.items()) + "</pre>"
        reply(h, status, page.encode(), {"Content-Type": "text/html"})

    jobylon = servers(echo)
    with pytest.raises(JobylonError) as raised:
        client(jobylon.url, attempts=1).create(BODY)
    assert jobylon.seen[0]["headers"]["X-App-Key"] == KEY  # the key really was echoed
    assert isinstance(raised.value, {400: PermanentError, 401: AuthError, 500: InDoubtError}[status])
    assert "X-App-Key: *" in (raised.value.response or "")  # masked (the mask itself may be cut)
    text = everything(raised.value)
    for fragment in fragments(KEY):
        assert fragment not in text, fragment


@pytest.mark.parametrize("kept", [8, 12, len(KEY) - 1])
def test_a_key_prefix_at_the_end_of_the_answer_is_masked(servers, kept):
    """A proxy that cut its own echo: the answer ends in the key's first characters."""
    jobylon = servers(lambda h: reply(h, 400, ("<p>bad request; you sent X-App-Key: " + h.headers["X-App-Key"][:kept]).encode()))
    with pytest.raises(PermanentError) as raised:
        client(jobylon.url).update(5, UPDATE)
    assert raised.value.response.endswith("X-App-Key: " + MASK)
    for fragment in fragments(KEY):
        assert fragment not in everything(raised.value), fragment


def test_the_redactor_masks_first_then_cuts():
    redactor = Redactor([KEY])
    text = "a" * 90 + KEY + "b" * 50
    for keep in range(85, 90 + len(KEY) + 5):
        out = redactor.truncate(text, keep)
        assert all(f not in out for f in fragments(KEY)), keep
    assert redactor.truncate("short " + KEY, 100) == "short " + MASK
    assert redactor.truncate("x" * 120, 100) == "x" * 100 + "... (120 characters)"
    assert redactor.truncate("ends in hostile", 100) == "ends in hostile"  # 7 characters of the key: too common to mask
    assert redactor.truncate("ends in hostile-", 100) == "ends in " + MASK  # 8 are a fragment


# -- 6. event ids SQLite cannot hold ---------------------------------------------------------


@pytest.mark.parametrize("event_id", [2**64, 2**63, 0, -1, -(2**63), 10**30])
def test_an_event_id_outside_1_to_2_63_minus_1_is_in_doubt(servers, event_id):
    jobylon = servers(lambda h: reply(h, 201, b'{"id": %d}' % event_id))
    with pytest.raises(InDoubtError, match=r"201 with event id .* outside 1\.\.2\*\*63-1") as raised:
        client(jobylon.url).create(BODY)
    assert str(event_id) in raised.value.response and raised.value.http_status == 201
    assert len(jobylon.seen) == 1


@pytest.mark.parametrize("event_id", [1, 2**63 - 1])
def test_the_ends_of_the_id_range_are_valid(servers, event_id):
    jobylon = servers(lambda h: reply(h, 201, {"id": event_id}))
    assert client(jobylon.url).create(BODY) == event_id


# -- 7. answers that trickle -----------------------------------------------------------------

TRICKLE = 0.1  # seconds per byte
TIMEOUT = 0.6


def trickle(h: BaseHTTPRequestHandler, data: bytes) -> None:
    for i in range(len(data)):
        h.wfile.write(data[i : i + 1])
        h.wfile.flush()
        time.sleep(TRICKLE)


def trickling_body(h: BaseHTTPRequestHandler) -> None:
    body = b" " * 30 + b'{"id": 1}'  # about 4 s at one byte per 0.1 s
    h.send_response(201)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    trickle(h, body)


def trickling_chunked_body(h: BaseHTTPRequestHandler) -> None:
    h.send_response(201)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for byte in b" " * 30 + b'{"id": 1}':
        h.wfile.write(b"1\r\n" + bytes([byte]) + b"\r\n")
        time.sleep(TRICKLE)
    h.wfile.write(b"0\r\n\r\n")


def trickling_headers(h: BaseHTTPRequestHandler) -> None:
    h.wfile.write(b"HTTP/1.1 201 Created\r\n")
    trickle(h, b"X-Slow: " + b"z" * 30 + b"\r\n")
    h.wfile.write(b'Content-Length: 9\r\n\r\n{"id": 1}')


@pytest.mark.parametrize("answer", [trickling_body, trickling_chunked_body, trickling_headers])
def test_a_trickling_answer_is_a_timeout_of_the_whole_call(servers, answer):
    jobylon = servers(answer)
    started = time.monotonic()
    with pytest.raises(InDoubtError, match=f"no answer within {TIMEOUT:g} s; the event may or may not exist"):
        client(jobylon.url, timeout=TIMEOUT).create(BODY)
    assert time.monotonic() - started < TIMEOUT + 0.8
    assert len(jobylon.seen) == 1  # a POST in doubt is not repeated

    for call in ("update", "delete"):
        jobylon.seen.clear()
        started = time.monotonic()
        with pytest.raises(TransientError, match=f"no answer within {TIMEOUT:g} s"):
            CALLS[call](client(jobylon.url, timeout=TIMEOUT, attempts=2))
        assert time.monotonic() - started < 2 * TIMEOUT + 1.0
        assert [r["method"] for r in jobylon.seen] == [{"update": "PUT", "delete": "DELETE"}[call]] * 2  # retried


def test_a_slow_but_steady_answer_within_the_deadline_is_fine(servers):
    def steady(h: BaseHTTPRequestHandler) -> None:
        body = b'{"id": 42}'
        h.send_response(201)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        for i in range(len(body)):
            h.wfile.write(body[i : i + 1])
            time.sleep(0.02)

    jobylon = servers(steady)
    c = client(jobylon.url, timeout=2)
    assert [c.create(BODY) for _ in range(3)] == [42, 42, 42]


# -- 8. endless answers ----------------------------------------------------------------------


def endless(status: int, *, limit: int = 8 << 20, content_length: str | None = None) -> Callable[[BaseHTTPRequestHandler], None]:
    """A body without end (bounded at `limit`, so a client without a cap still finishes)."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "text/html")
        if content_length:
            h.send_header("Content-Length", content_length)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        chunk = b"<p>" + b"x" * (64 * 1024 - 3)
        sent = 0
        while sent < limit:
            h.wfile.write(chunk)
            sent += len(chunk)

    return answer


@pytest.mark.parametrize(
    ("call", "status", "expected"),
    [
        ("create", 201, InDoubtError),
        ("create", 400, InDoubtError),
        ("create", 503, InDoubtError),
        ("update", 200, TransientError),
        ("update", 400, TransientError),
        ("delete", 200, TransientError),
        ("delete", 404, TransientError),
    ],
)
def test_an_endless_answer_is_cut_at_1_mib(servers, call, status, expected):
    jobylon = servers(endless(status))
    tracemalloc.start()
    try:
        with pytest.raises(JobylonError) as raised:
            CALLS[call](client(jobylon.url, attempts=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert type(raised.value) is expected
    assert "the answer exceeded 1 MiB" in str(raised.value)
    assert len(raised.value.response or "") <= RESPONSE_KEEP + 40
    assert peak < 4 * MIB, f"peak {peak} bytes"
    assert len(jobylon.seen) == (1 if call == "create" else 2)  # PUT/DELETE retried, POST in doubt


def test_a_declared_length_over_1_mib_is_refused_before_reading(servers):
    jobylon = servers(endless(200, limit=1 << 20, content_length=str(64 << 20)))
    with pytest.raises(TransientError, match="the answer exceeded 1 MiB"):
        client(jobylon.url, attempts=1).update(5, UPDATE)


def test_an_answer_of_exactly_1_mib_is_read(servers):
    body = b'{"id": 5}'.ljust(MIB, b" ")
    jobylon = servers(lambda h: reply(h, 201, body))
    assert client(jobylon.url).create(BODY) == 5
