"""The sandbox's HTTP handler: routing, credentials, fault application, bodies, and the control routes.

API (X-App-Id / X-App-Key on every call, JSON bodies, trailing slashes; paths configurable):
    POST   /p1/events/                          create -> 201 {"id": n}
    PUT    /p1/events/<id>/                     update (title, description, duration, start_time, timezone) -> 200 event
    DELETE /p1/events/<id>/                     delete -> 204
    POST   /p2/users/calendar-availability/     free periods or slots of users -> 200 [{start, end, participants}]
Errors: 400 {"field": ["message", ...]} for every failing field; 403 bad credentials or another
partner's event; 404 unknown path or event; 405 other methods (with Allow).

Control routes (no auth, never faulted, never logged), for tests, benchmarks and the demo:
    GET /_sandbox/events, DELETE /_sandbox/events/<id>, GET /_sandbox/requests, GET /_sandbox/stats,
    GET|POST /_sandbox/faults, GET|POST /_sandbox/script, POST /_sandbox/reset,
    GET|POST /_sandbox/webhooks ({url, username?, password?, headers?, retry_scale?, link_key?}: deliver
    calendar_event webhooks there; GET: the config, the delivery log, how many are pending),
    POST /_sandbox/events/<id>/rsvp {application_id, rsvp}, POST /_sandbox/events/<id>/cancel,
    POST /_sandbox/events/<id>/change {field: value}: changes made inside Jobylon (each delivered)

Order of checks on an API request: route (404) -> credentials (403) -> fault -> method (405) ->
Content-Type and JSON (400) -> event lookup (404 / 403) -> field validation (400) -> effect.
`latency_ms` is the time from a request's arrival to its answer, the sandbox's own work inside it
(as a server's latency is measured), so a benchmark's bound C*1000/L holds for the stand-in; a
`latency` fault adds its spike on top.
Pure standard library; one lock guards all state; per-request work is O(1) in the number of events.
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from connector.sandbox.directory import PARTNERS, Partner
from connector.sandbox.state import NOT_FOUND

if TYPE_CHECKING:
    from connector.sandbox.server import SandboxServer, _HTTPServer

MAX_BODY = 2_000_000
AUTH_MISSING = "Authentication credentials were not provided."
AUTH_INVALID = "Invalid app credentials."


def _partner(app_id: str | None, app_key: str | None) -> Partner | None:
    partner = PARTNERS.get(app_id or "")
    if partner is None or not app_key:
        return None
    return partner if hmac.compare_digest(partner.app_key.encode(), app_key.encode("utf-8", "surrogateescape")) else None


ALLOW = {"events": "POST", "event": "PUT, DELETE", "availability": "POST"}
CONTROL_ALLOW = {"events": "GET", "event": "DELETE", "requests": "GET", "stats": "GET", "faults": "GET, POST", "script": "GET, POST", "reset": "POST"}
CONTROL_ALLOW |= {"webhooks": "GET, POST", "rsvp": "POST", "cancel": "POST", "change": "POST"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "JobylonSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # status line, headers and body leave in one write (handle_one_request flushes)
    timeout = 120  # an idle keep-alive connection is closed after this long
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # nothing per request, ever
        pass

    def setup(self) -> None:
        super().setup()
        sandbox = self.server.sandbox
        with sandbox._open_lock:
            sandbox._open.add(self.connection)
        with sandbox.state.lock:
            sandbox.state.connections += 1

    def finish(self) -> None:
        sandbox = self.server.sandbox
        with sandbox._open_lock:
            sandbox._open.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        # every method (GET, HEAD, OPTIONS, PATCH, anything) goes to one dispatcher: 405 with Allow, not 501
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    # -- plumbing

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self) -> None:
        """Close the connection without a byte of answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> tuple[bytes | None, tuple[int, str] | None]:
        """The body, or an error answer after which the connection is closed (the stream is out of step)."""
        if self.headers.get("Transfer-Encoding"):
            return None, (411, "Send the body with a Content-Length, not chunked.")
        length = self.headers.get("Content-Length")
        if length is None:
            return b"", None
        if not length.strip().isdigit():
            return None, (400, "Invalid Content-Length header.")
        size = int(length)
        if size > MAX_BODY:
            return None, (413, "Request body too large.")
        return (self.rfile.read(size) if size else b""), None

    def _dispatch(self) -> None:
        received = time.time()
        method = self.command
        path = self.path.split("?", 1)[0]
        raw, problem = self._read_body()
        control = path == "/_sandbox" or path.startswith("/_sandbox/")
        if problem is not None:
            if not control:
                self.server.sandbox.state.record(method, path, problem[0], None)
            self._send(problem[0], {"detail": problem[1]}, {"Connection": "close"})
            return
        assert raw is not None
        if control:
            self._control(method, path, raw)
            return
        try:
            self._api(method, path, raw, received)
        except (ConnectionError, TimeoutError):
            raise
        except Exception:  # a sandbox bug: say so on stderr, answer 500, keep serving
            traceback.print_exc(file=sys.stderr)
            self.server.sandbox.state.record(method, path, 500, None)
            self._send(500, {"detail": "Sandbox internal error."})

    # -- the API

    def _api(self, method: str, path: str, raw: bytes, received: float) -> None:
        sandbox = self.server.sandbox
        state = sandbox.state
        client = self.headers.get("User-Agent", "")[:200]  # which connector process sent it
        due = received + state.faults["latency_ms"] / 1000

        def answer(status: int | None, fault: str | None, body: Any = None, headers: dict[str, str] | None = None) -> None:
            """Record and send (or drop, status None) once the request is `latency_ms` old."""
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            state.record(method, path, status, fault, received, client=client)
            if status is None:
                self._drop()
            else:
                self._send(status, body, headers)

        route = sandbox.route(path)
        if route is None:
            answer(404, None, {"detail": NOT_FOUND})
            return
        app_id, app_key = self.headers.get("X-App-Id"), self.headers.get("X-App-Key")
        partner = _partner(app_id, app_key)
        if partner is None:
            answer(403, None, {"detail": AUTH_MISSING if not app_id or not app_key else AUTH_INVALID})
            return
        fault = state.pick_fault(method)
        kind = fault["fault"] if fault else None
        if kind in ("429", "503"):
            retry_after = fault.get("retry_after", state.faults["retry_after_seconds"])  # type: ignore[union-attr]
            detail = f"Request was throttled. Expected available in {retry_after} seconds." if kind == "429" else "Service temporarily unavailable."
            answer(int(kind), kind, {"detail": detail}, {"Retry-After": str(retry_after)})
            return
        if kind == "500":
            answer(500, kind, {"detail": "Internal server error."})
            return
        if kind == "drop":
            answer(None, kind)
            return
        if kind == "latency":
            due += float(fault.get("spike_ms", state.faults["spike_ms"])) / 1000  # type: ignore[union-attr]
        status, body, headers = self._handle(sandbox, route, method, partner, raw)
        if kind == "apply_then_500":
            status, body, headers = 500, {"detail": "Internal server error."}, None
        answer(status, kind, body, headers)

    def _handle(
        self, sandbox: SandboxServer, route: tuple[str, int | None], method: str, partner: Partner, raw: bytes
    ) -> tuple[int, Any, dict[str, str] | None]:
        name, event_id = route
        if method not in ALLOW[name].split(", "):
            return 405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": ALLOW[name]}
        body: Any = None
        if raw:
            content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if content_type != "application/json":
                return 400, {"detail": f'Unsupported media type "{content_type[:80]}" in request; send Content-Type: application/json.'}, None
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                return 400, {"detail": f"JSON parse error - {str(exc)[:200]}"}, None
        if method == "DELETE":
            return (*sandbox.state.delete(partner, event_id), None)  # type: ignore[arg-type]
        if not isinstance(body, dict):
            got = "nothing" if body is None else type(body).__name__
            return 400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {got}."]}, None
        if name == "events":
            return (*sandbox.state.create(partner, body), None)
        if name == "event":
            return (*sandbox.state.update(partner, event_id, body), None)  # type: ignore[arg-type]
        return (*sandbox.state.availability(partner, body), None)

    # -- control routes

    def _control(self, method: str, path: str, raw: bytes) -> None:
        sandbox = self.server.sandbox
        parts = path.rstrip("/").split("/")[2:]  # "/_sandbox/events/7" -> ["events", "7"]
        name = parts[0] if parts else ""
        if len(parts) == 2 and name == "events":
            name = "event"
        elif len(parts) == 3 and name == "events" and parts[2] in ("rsvp", "cancel", "change"):
            name = parts[2]
        elif len(parts) != 1:
            name = ""
        if name not in CONTROL_ALLOW:
            self._send(404, {"detail": NOT_FOUND})
            return
        if method not in CONTROL_ALLOW[name].split(", "):
            self._send(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": CONTROL_ALLOW[name]})
            return
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self._send(400, {"detail": "Body is not JSON."})
            return
        try:
            if name == "events":
                self._send(200, sandbox.events())
            elif name == "event":
                if not parts[1].isdigit():
                    raise ValueError("event id must be an integer")
                sandbox.delete_event(int(parts[1]))
                self._send(204, None)
            elif name in ("rsvp", "cancel", "change"):
                self._send(200, self._jobylon_side(sandbox, name, parts[1], body))
            elif name == "webhooks" and method == "GET":
                sender = sandbox.webhooks
                self._send(200, {"config": sender.describe() if sender else None, "log": sandbox.webhook_log(), "pending": sender.pending() if sender else 0})
            elif name == "webhooks":
                if not isinstance(body, dict) or set(body) - {"url", "username", "password", "headers", "retry_scale", "link_key", "drop_rate"}:
                    raise ValueError('expected {"url", "username"?, "password"?, "headers"?, "retry_scale"?, "link_key"?, "drop_rate"?}')
                sender = sandbox.use_webhooks(body.get("url"), **{k: v for k, v in body.items() if k != "url"})
                self._send(200, {"config": sender.describe() if sender else None})
            elif name == "requests":
                self._send(200, sandbox.requests_log())
            elif name == "stats":
                self._send(200, sandbox.stats())
            elif name == "faults" and method == "GET":
                self._send(200, sandbox.faults())
            elif name == "faults":
                self._send(200, sandbox.replace_faults(body))
            elif name == "script" and method == "GET":
                self._send(200, {"faults": sandbox.scripted()})
            elif name == "script":
                faults = body.get("faults") if isinstance(body, dict) else None
                if not isinstance(faults, list):
                    raise ValueError('expected {"faults": [{method?, fault, retry_after?, spike_ms?}, ...]}')
                sandbox.script(*faults)
                self._send(200, {"queued": len(sandbox.scripted())})
            else:
                sandbox.reset()
                self._send(200, {"reset": True})
        except (ValueError, TypeError) as exc:
            self._send(400, {"detail": str(exc)[:300]})

    @staticmethod
    def _jobylon_side(sandbox: SandboxServer, name: str, event_id: str, body: Any) -> Any:
        """A change made inside Jobylon: an RSVP, a cancellation, an edit of fields."""
        if not event_id.isdigit():
            raise ValueError("event id must be an integer")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        if name == "rsvp":
            application_id = body.get("application_id")
            if not isinstance(application_id, int) or isinstance(application_id, bool):
                raise ValueError('expected {"application_id": <int>, "rsvp": "accepted" | ...}')
            return sandbox.rsvp(int(event_id), application_id, str(body.get("rsvp")))
        if name == "cancel":
            return sandbox.cancel_event(int(event_id))
        return sandbox.change_event(int(event_id), body)
