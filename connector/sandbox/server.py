"""A Jobylon Push API emulator on loopback, strict to the documentation, with fault injection.

API (X-App-Id / X-App-Key on every call, JSON bodies, trailing slashes):
    POST   /p1/events/                          create -> 201 {"id": n}
    PUT    /p1/events/<id>/                     update (title, description, duration, start_time, timezone)
    DELETE /p1/events/<id>/                     delete -> 204
    POST   /p2/users/calendar-availability/     free periods or slots of users
Errors: 400 {"field": ["message"]} for every failing field; 403 bad credentials or another
partner's event; 404 unknown event; 405 other methods.

Control routes (no auth, never faulted), for tests, benchmarks and the demo:
    GET /_sandbox/events, DELETE /_sandbox/events/<id>, GET /_sandbox/requests, GET /_sandbox/stats,
    GET|POST /_sandbox/faults, POST /_sandbox/script, POST /_sandbox/reset
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.sandbox.directory import ALL_USERS, DEMO_APP_ID, PARTNERS

START_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
CREATE_FIELDS = {"title", "description", "duration", "start_time", "timezone", "organizer", "participants", "location", "videoconferencing"}
UPDATE_FIELDS = {"title", "description", "duration", "start_time", "timezone"}
FAULT_KINDS = ("429", "500", "503", "drop", "latency", "apply_then_500")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_BODY = 2_000_000


class _Drop(Exception):
    """Close the connection without an answer."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


class _QuietServer(ThreadingHTTPServer):
    """Clients that vanish mid-request (a killed connector, a dropped connection) are normal here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class SandboxState:
    """Events, the request log and the fault configuration, behind one lock."""

    def __init__(self, *, fault_rate: float, fault_kinds: dict[str, float] | None, retry_after_seconds: int, latency_ms: float, seed: int | None) -> None:
        self.lock = threading.Lock()
        self.events: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.log: list[dict[str, Any]] = []
        self.by_method: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.faults_seen: Counter[str] = Counter()
        self.script: list[dict[str, Any]] = []
        self.faults: dict[str, Any] = {}
        self.set_faults(rate=fault_rate, kinds=fault_kinds, retry_after_seconds=retry_after_seconds, latency_ms=latency_ms, spike_ms=300, seed=seed)

    def set_faults(self, **changes: Any) -> None:
        config = dict(self.faults) or {"rate": 0.0, "kinds": {k: 1.0 for k in FAULT_KINDS}, "retry_after_seconds": 1, "latency_ms": 0, "spike_ms": 300, "seed": None}
        for key, value in changes.items():
            if value is None:
                continue
            if key == "kinds":
                unknown = set(value) - set(FAULT_KINDS)
                if unknown:
                    raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
                value = {k: float(v) for k, v in value.items()}
            if key == "rate" and not 0 <= float(value) <= 1:
                raise ValueError("rate must be within 0..1")
            config[key] = value
        self.faults = config
        if "seed" in changes:
            self.rng = random.Random(config["seed"])
        elif not hasattr(self, "rng"):
            self.rng = random.Random(config["seed"])

    def pick_fault(self, method: str) -> dict[str, Any] | None:
        with self.lock:
            for index, scripted in enumerate(self.script):
                if scripted.get("method") in (None, method):
                    return self.script.pop(index)
            rate = float(self.faults["rate"])
            if rate <= 0 or self.rng.random() >= rate:
                return None
            kinds = [k for k, w in self.faults["kinds"].items() if w > 0]
            if not kinds:
                return None
            return {"fault": self.rng.choices(kinds, weights=[self.faults["kinds"][k] for k in kinds])[0]}

    def record(self, method: str, path: str, status: int | None, fault: str | None) -> None:
        with self.lock:
            self.log.append({"seq": len(self.log) + 1, "method": method, "path": path, "status": status, "fault": fault, "at": time.time()})
            self.by_method[method] += 1
            self.by_status[str(status) if status is not None else "dropped"] += 1
            if fault:
                self.faults_seen[fault] += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": len(self.log), "by_method": dict(self.by_method), "by_status": dict(self.by_status), "faults": dict(self.faults_seen), "events": len(self.events)}

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
            self.log.clear()
            self.by_method.clear()
            self.by_status.clear()
            self.faults_seen.clear()
            self.script.clear()
        self.set_faults(rate=0.0, kinds={k: 1.0 for k in FAULT_KINDS}, latency_ms=0)


def validate(body: dict[str, Any], partner_id: str, *, update: bool) -> dict[str, list[str]]:
    """Jobylon's rules, every failing field reported."""
    errors: dict[str, list[str]] = {}
    partner = PARTNERS[partner_id]
    allowed = UPDATE_FIELDS if update else CREATE_FIELDS
    for name in body:
        if name not in allowed:
            errors[name] = ["This field cannot be updated."] if update and name in CREATE_FIELDS else ["Unknown field."]
    required = UPDATE_FIELDS if update else CREATE_FIELDS - {"location", "videoconferencing"}
    for name in required:
        if name not in body:
            errors.setdefault(name, []).append("This field is required.")
    if "title" in body and (not isinstance(body["title"], str) or not body["title"].strip()):
        errors.setdefault("title", []).append("Not a valid string." if not isinstance(body["title"], str) else "This field may not be blank.")
    if "description" in body and not isinstance(body["description"], str):
        errors.setdefault("description", []).append("Not a valid string.")
    if "duration" in body and (not _is_int(body["duration"]) or not 1 <= body["duration"] <= 480):
        errors.setdefault("duration", []).append("Ensure this value is an integer between 1 and 480.")
    zone = _zone(body.get("timezone")) if "timezone" in body else None
    if "timezone" in body and zone is None:
        errors.setdefault("timezone", []).append(f"Unknown time zone {str(body['timezone'])[:60]!r}.")
    if "start_time" in body:
        value = body["start_time"]
        try:
            if not isinstance(value, str):
                raise ValueError
            wall = datetime.strptime(value, START_TIME_FORMAT)
            if wall.strftime(START_TIME_FORMAT) != value:
                raise ValueError
        except ValueError:
            errors.setdefault("start_time", []).append("Datetime has wrong format. Use %Y-%m-%dT%H:%M:%S.")
        else:
            if zone is not None:
                aware = wall.replace(tzinfo=zone)
                if aware.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != wall:
                    errors.setdefault("start_time", []).append(f"{value} does not exist in {zone.key}.")
    if not update:
        organizer = body.get("organizer")
        if "organizer" in body:
            if not isinstance(organizer, str) or not EMAIL_RE.match(organizer):
                errors.setdefault("organizer", []).append("Enter a valid email address.")
            elif organizer not in ALL_USERS:
                errors.setdefault("organizer", []).append("User not found.")
            elif organizer not in partner.users:
                errors.setdefault("organizer", []).append("User is not in a customer account available to this partner.")
        if "participants" in body:
            participants = body["participants"]
            if not isinstance(participants, list) or not participants:
                errors.setdefault("participants", []).append("Expected a non-empty list of application ids.")
            elif not all(_is_int(p) for p in participants):
                errors.setdefault("participants", []).append("Application ids must be integers.")
            elif len(set(participants)) != len(participants):
                errors.setdefault("participants", []).append("Duplicate application ids.")
            else:
                foreign = [p for p in participants if p not in partner.application_ids]
                if foreign:
                    errors.setdefault("participants", []).append(f"Applications {foreign[:5]} are not in a customer account available to this partner.")
        if "location" in body and body["location"] is not None and not isinstance(body["location"], str):
            errors.setdefault("location", []).append("Not a valid string.")
        if "videoconferencing" in body and not isinstance(body["videoconferencing"], bool):
            errors.setdefault("videoconferencing", []).append("Must be a valid boolean.")
    return errors


class SandboxServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        fault_rate: float = 0.0,
        fault_kinds: dict[str, float] | None = None,
        retry_after_seconds: int = 1,
        latency_ms: float = 0,
        seed: int | None = None,
        events_path: str = "/p1/events/",
        availability_path: str = "/p2/users/calendar-availability/",
    ) -> None:
        if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            raise ValueError(f"the sandbox binds only to loopback addresses, not {host}")
        self.state = SandboxState(fault_rate=fault_rate, fault_kinds=fault_kinds, retry_after_seconds=retry_after_seconds, latency_ms=latency_ms, seed=seed)
        self.events_path = events_path
        self.availability_path = availability_path
        self.httpd = _QuietServer((host, port), _handler_class(self))
        self.httpd.request_queue_size = 128
        self.host = host
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> "SandboxServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "SandboxServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def events(self, app_id: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(e) for e in self.state.events.values() if app_id is None or e["app_id"] == app_id]

    def requests_log(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(r) for r in self.state.log]

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def set_faults(self, rate: float | None = None, kinds: dict[str, float] | None = None, retry_after_seconds: int | None = None,
                   latency_ms: float | None = None, spike_ms: float | None = None, seed: int | None = None) -> None:
        changes: dict[str, Any] = {"rate": rate, "kinds": kinds, "retry_after_seconds": retry_after_seconds, "latency_ms": latency_ms, "spike_ms": spike_ms}
        if seed is not None:
            changes["seed"] = seed
        self.state.set_faults(**changes)

    def script(self, *faults: dict[str, Any]) -> None:
        for fault in faults:
            if fault.get("fault") not in FAULT_KINDS:
                raise ValueError(f"unknown fault {fault.get('fault')!r}; known: {FAULT_KINDS}")
        with self.state.lock:
            self.state.script.extend(dict(f) for f in faults)

    def delete_event(self, event_id: int) -> None:
        with self.state.lock:
            self.state.events.pop(event_id, None)

    def reset(self) -> None:
        self.state.reset()

    # -- the API ---------------------------------------------------------------------------

    def handle_api(self, method: str, path: str, partner_id: str, body: Any) -> tuple[int, Any]:
        """Returns (status, JSON body or None)."""
        state = self.state
        if path == self.events_path:
            if method != "POST":
                return 405, {"detail": f'Method "{method}" not allowed.'}
            if not isinstance(body, dict):
                return 400, {"non_field_errors": ["Expected a JSON object."]}
            errors = validate(body, partner_id, update=False)
            if errors:
                return 400, errors
            now = datetime.now(timezone.utc).isoformat()
            with state.lock:
                event_id = state.next_id
                state.next_id += 1
                state.events[event_id] = {
                    "id": event_id, "app_id": partner_id, **body,
                    "location": body.get("location"), "videoconferencing": body.get("videoconferencing", False),
                    "status": "created", "vc_link_url": f"https://meet.sandbox.invalid/{event_id}" if body.get("videoconferencing") else None,
                    "created_at": now, "updated_at": now, "version": 1,
                }
            return 201, {"id": event_id}
        match = re.fullmatch(re.escape(self.events_path) + r"(\d+)/", path)
        if match:
            if method not in ("PUT", "DELETE"):
                return 405, {"detail": f'Method "{method}" not allowed.'}
            event_id = int(match.group(1))
            with state.lock:
                event = state.events.get(event_id)
                if event is None:
                    return 404, {"detail": "Not found."}
                if event["app_id"] != partner_id:
                    return 403, {"detail": "You do not have permission to perform this action."}
                if method == "DELETE":
                    del state.events[event_id]
                    return 204, None
            if not isinstance(body, dict):
                return 400, {"non_field_errors": ["Expected a JSON object."]}
            errors = validate(body, partner_id, update=True)
            if errors:
                return 400, errors
            with state.lock:
                event = state.events.get(event_id)
                if event is None:
                    return 404, {"detail": "Not found."}
                event.update(body)
                event["version"] += 1
                event["status"] = "rescheduled"
                event["updated_at"] = datetime.now(timezone.utc).isoformat()
                return 200, {k: v for k, v in event.items() if k != "app_id"}
        if path == self.availability_path:
            if method != "POST":
                return 405, {"detail": f'Method "{method}" not allowed.'}
            return self.availability(body)
        return 404, {"detail": "Not found."}

    def availability(self, body: Any) -> tuple[int, Any]:
        errors: dict[str, list[str]] = {}
        if not isinstance(body, dict):
            return 400, {"non_field_errors": ["Expected a JSON object."]}
        duration = body.get("duration_min")
        if not _is_int(duration) or duration < 1:
            errors["duration_min"] = ["A positive integer is required."]
        if body.get("response_format", "periods") not in ("slots", "periods"):
            errors["response_format"] = ['Must be "slots" or "periods".']
        emails: list[str] = []
        participants = body.get("participants")
        if not isinstance(participants, list) or not participants:
            errors["participants"] = ["Expected a non-empty list."]
        else:
            for group in participants:
                members = group.get("members") if isinstance(group, dict) else None
                if not isinstance(members, list) or not all(isinstance(m, dict) and isinstance(m.get("email"), str) for m in members):
                    errors["participants"] = ["Each participant needs members: [{email}]."]
                    break
                emails += [m["email"] for m in members]
        periods = []
        for period in body.get("query_periods") or []:
            try:
                start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
                if start.tzinfo is None or end.tzinfo is None or end <= start:
                    raise ValueError
                periods.append((start, end))
            except (KeyError, TypeError, ValueError):
                errors["query_periods"] = ["Each period needs an offset-aware start before its end."]
                break
        if not periods and "query_periods" not in errors:
            errors["query_periods"] = ["At least one period is required."]
        if errors:
            return 400, errors
        with self.state.lock:
            busy = []
            for event in self.state.events.values():
                if event.get("organizer") in emails:
                    zone = ZoneInfo(event["timezone"])
                    start = datetime.strptime(event["start_time"], START_TIME_FORMAT).replace(tzinfo=zone)
                    busy.append((start, start + timedelta(minutes=event["duration"])))
        busy.sort()
        free = []
        for start, end in periods:
            cursor = start
            for b_start, b_end in busy:
                if b_end <= cursor or b_start >= end:
                    continue
                if b_start > cursor:
                    free.append((cursor, b_start))
                cursor = max(cursor, b_end)
            if cursor < end:
                free.append((cursor, end))
        free = [(s, e) for s, e in free if (e - s) >= timedelta(minutes=duration)]
        if body.get("response_format") == "slots":
            slots = []
            for s, e in free:
                while s + timedelta(minutes=duration) <= e:
                    slots.append((s, s + timedelta(minutes=duration)))
                    s += timedelta(minutes=duration)
            free = slots
        return 200, [{"start": s.isoformat(), "end": e.isoformat(), "participants": sorted(set(emails))} for s, e in free]


def _handler_class(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "JobylonSandbox/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

        def do_PATCH(self) -> None:  # noqa: N802
            self._dispatch("PATCH")

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise _Drop
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if data:
                self.wfile.write(data)

        def _drop(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            try:
                raw = self._read_body()
            except _Drop:
                self._drop()
                return
            if path.startswith("/_sandbox/"):
                self._control(method, path, raw)
                return
            self._api(method, path, raw)

        def _api(self, method: str, path: str, raw: bytes) -> None:
            state = server.state
            app_id = self.headers.get("X-App-Id")
            app_key = self.headers.get("X-App-Key")
            partner = server_partner(app_id, app_key)
            if partner is None:
                detail = "Authentication credentials were not provided." if not app_id or not app_key else "Invalid app credentials."
                state.record(method, path, 403, None)
                self._send(403, {"detail": detail})
                return
            body: Any = None
            if raw:
                if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    state.record(method, path, 400, None)
                    self._send(400, {"detail": "Unsupported media type; send Content-Type: application/json."})
                    return
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    state.record(method, path, 400, None)
                    self._send(400, {"detail": f"JSON parse error - {exc}"})
                    return
            latency = float(state.faults.get("latency_ms") or 0)
            if latency:
                time.sleep(latency / 1000)
            fault = state.pick_fault(method)
            kind = fault["fault"] if fault else None
            if kind in ("429", "503"):
                retry_after = str(fault.get("retry_after", state.faults["retry_after_seconds"]))
                state.record(method, path, int(kind), kind)
                self._send(int(kind), {"detail": "Request was throttled." if kind == "429" else "Service unavailable."}, {"Retry-After": retry_after})
                return
            if kind == "500":
                state.record(method, path, 500, kind)
                self._send(500, {"detail": "Internal server error."})
                return
            if kind == "drop":
                state.record(method, path, None, kind)
                self._drop()
                return
            if kind == "latency":
                time.sleep(float(fault.get("spike_ms", state.faults["spike_ms"])) / 1000)
            status, answer = server.handle_api(method, path, partner, body)
            if kind == "apply_then_500":
                state.record(method, path, 500, kind)
                self._send(500, {"detail": "Internal server error."})
                return
            state.record(method, path, status, kind)
            self._send(status, answer, {"Allow": "POST" if path == server.events_path else "PUT, DELETE"} if status == 405 else None)

        def _control(self, method: str, path: str, raw: bytes) -> None:
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                self._send(400, {"detail": "not JSON"})
                return
            try:
                if path == "/_sandbox/events" and method == "GET":
                    self._send(200, server.events())
                elif path.startswith("/_sandbox/events/") and method == "DELETE":
                    server.delete_event(int(path.rsplit("/", 1)[1]))
                    self._send(204, None)
                elif path == "/_sandbox/requests" and method == "GET":
                    self._send(200, server.requests_log())
                elif path == "/_sandbox/stats" and method == "GET":
                    self._send(200, server.stats())
                elif path == "/_sandbox/faults" and method == "GET":
                    self._send(200, server.state.faults)
                elif path == "/_sandbox/faults" and method == "POST":
                    server.state.set_faults(**{k: body.get(k) for k in ("rate", "kinds", "retry_after_seconds", "latency_ms", "spike_ms")}, **({"seed": body["seed"]} if "seed" in body else {}))
                    self._send(200, server.state.faults)
                elif path == "/_sandbox/script" and method == "POST":
                    server.script(*body.get("faults", []))
                    self._send(200, {"queued": len(server.state.script)})
                elif path == "/_sandbox/reset" and method == "POST":
                    server.reset()
                    self._send(200, {"reset": True})
                else:
                    self._send(404, {"detail": "Not found."})
            except (ValueError, TypeError) as exc:
                self._send(400, {"detail": str(exc)})

    return Handler


def server_partner(app_id: str | None, app_key: str | None) -> str | None:
    partner = PARTNERS.get(app_id or "")
    if partner is None or app_key is None:
        return None
    return partner.app_id if hmac.compare_digest(partner.app_key.encode(), app_key.encode()) else None


def serve_forever(host: str = "127.0.0.1", port: int = 8765, fault_rate: float = 0.0, **kwargs: Any) -> None:
    server = SandboxServer(host, port, fault_rate=fault_rate, **kwargs)
    print(f"Jobylon sandbox on {server.url} (app id {DEMO_APP_ID}); fault rate {fault_rate:g}; Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
