"""A Jobylon Push API emulator on loopback, strict to the documentation, with fault injection.

API (X-App-Id / X-App-Key on every call, JSON bodies, trailing slashes; paths configurable):
    POST   /p1/events/                          create -> 201 {"id": n}
    PUT    /p1/events/<id>/                     update (title, description, duration, start_time, timezone) -> 200 event
    DELETE /p1/events/<id>/                     delete -> 204
    POST   /p2/users/calendar-availability/     free periods or slots of users -> 200 [{start, end, participants}]
Errors: 400 {"field": ["message", ...]} for every failing field; 403 bad credentials or another
partner's event; 404 unknown path or event; 405 other methods (with Allow).

Control routes (no auth, never faulted, never logged), for tests, benchmarks and the demo:
    GET /_sandbox/events, DELETE /_sandbox/events/<id>, GET /_sandbox/requests, GET /_sandbox/stats,
    GET|POST /_sandbox/faults, GET|POST /_sandbox/script, POST /_sandbox/reset

Order of checks on an API request: route (404) -> credentials (403) -> fault -> method (405) ->
Content-Type and JSON (400) -> event lookup (404 / 403) -> field validation (400) -> effect.
Pure standard library; one lock guards all state; per-request work is O(1) in the number of events.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import random
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from connector.sandbox.directory import ALL_USERS, DEMO_APP_ID, PARTNERS, Partner, application_exists

START_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
CREATE_REQUIRED = ("title", "description", "duration", "start_time", "timezone", "organizer", "participants")
CREATE_OPTIONAL = ("location", "videoconferencing")
CREATE_FIELDS = frozenset(CREATE_REQUIRED + CREATE_OPTIONAL)
UPDATE_FIELDS = ("description", "duration", "start_time", "timezone", "title")
FAULT_KINDS = ("429", "500", "503", "drop", "latency", "apply_then_500")
MIN_DURATION, MAX_DURATION = 1, 480
MAX_BODY = 2_000_000
MAX_QUERY_PERIODS = 20
MAX_QUERY_PERIOD = timedelta(days=31)
MAX_AVAILABILITY_RESULTS = 1000
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EVENT_ID_RE = r"([0-9]{1,18})/"  # longer digit strings are not an event id: 404, never a crash

AUTH_MISSING = "Authentication credentials were not provided."
AUTH_INVALID = "Invalid app credentials."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
FIXED = "This field cannot be updated."
REQUIRED = "This field is required."
NULL = "This field may not be null."

_ZONES: frozenset[str] | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _zone(name: Any) -> ZoneInfo | None:
    """An IANA zone the tz database knows, by exact name; never a path."""
    global _ZONES
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if _ZONES and name not in _ZONES:
        return None
    try:
        return ZoneInfo(name)
    except Exception:  # any failure to load means "not a zone"
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _default_faults(retry_after_seconds: int = 1, seed: int | None = None) -> dict[str, Any]:
    return {"rate": 0.0, "kinds": {k: 1.0 for k in FAULT_KINDS}, "retry_after_seconds": retry_after_seconds, "latency_ms": 0, "spike_ms": 300, "seed": seed}


def _check_faults(config: dict[str, Any]) -> dict[str, Any]:
    """Validated, normalised copy of a fault configuration; ValueError names the bad key."""
    out = dict(config)
    unknown = set(out) - {"rate", "kinds", "retry_after_seconds", "latency_ms", "spike_ms", "seed"}
    if unknown:
        raise ValueError(f"unknown fault settings {sorted(unknown)}")
    rate = out["rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError("rate must be a number within 0..1")
    out["rate"] = float(rate)
    kinds = out["kinds"]
    if not isinstance(kinds, dict):
        raise ValueError("kinds must be an object {kind: weight}")
    bad = set(kinds) - set(FAULT_KINDS)
    if bad:
        raise ValueError(f"unknown fault kinds {sorted(bad)}; known: {list(FAULT_KINDS)}")
    for kind, weight in kinds.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"weight of {kind} must be a number >= 0")
    out["kinds"] = {k: float(w) for k, w in kinds.items()}
    for key in ("retry_after_seconds", "latency_ms", "spike_ms"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{key} must be a number >= 0")
    if not _is_int(out["retry_after_seconds"]):
        raise ValueError("retry_after_seconds must be an integer (Retry-After is in whole seconds)")
    if out["seed"] is not None and not _is_int(out["seed"]):
        raise ValueError("seed must be an integer or null")
    return out


def _check_scripted(fault: Any) -> dict[str, Any]:
    if not isinstance(fault, dict):
        raise ValueError("each scripted fault is an object {method?, fault, retry_after?, spike_ms?}")
    unknown = set(fault) - {"method", "fault", "retry_after", "spike_ms"}
    if unknown:
        raise ValueError(f"unknown scripted fault keys {sorted(unknown)}")
    if fault.get("fault") not in FAULT_KINDS:
        raise ValueError(f"unknown fault {fault.get('fault')!r}; known: {list(FAULT_KINDS)}")
    method = fault.get("method")
    if method is not None and (not isinstance(method, str) or not method.isalpha()):
        raise ValueError(f"method must be an HTTP method name, not {method!r}")
    out = {"method": method.upper() if method else None, "fault": fault["fault"]}
    if "retry_after" in fault:
        if not _is_int(fault["retry_after"]) or fault["retry_after"] < 0:
            raise ValueError("retry_after must be an integer >= 0")
        out["retry_after"] = fault["retry_after"]
    if "spike_ms" in fault:
        value = fault["spike_ms"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("spike_ms must be a number >= 0")
        out["spike_ms"] = value
    return out


# -- validation ---------------------------------------------------------------------------------


class _Errors(dict[str, list[str]]):
    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)


def _string(body: dict[str, Any], name: str, errors: _Errors, *, blank: bool) -> None:
    value = body[name]
    if value is None:
        errors.add(name, NULL)
    elif not isinstance(value, str):
        errors.add(name, "Not a valid string.")
    elif not blank and not value.strip():
        errors.add(name, "This field may not be blank.")


def _validate_time_fields(body: dict[str, Any], errors: _Errors) -> None:
    """title, description, duration, start_time, timezone: shared by create and update."""
    if "title" in body:
        _string(body, "title", errors, blank=False)
    if "description" in body:
        _string(body, "description", errors, blank=True)
    if "duration" in body:
        duration = body["duration"]
        if duration is None:
            errors.add("duration", NULL)
        elif not _is_int(duration):
            errors.add("duration", "A valid integer is required.")
        elif duration < MIN_DURATION:
            errors.add("duration", f"Ensure this value is greater than or equal to {MIN_DURATION}.")
        elif duration > MAX_DURATION:
            errors.add("duration", f"Ensure this value is less than or equal to {MAX_DURATION}.")
    zone = None
    if "timezone" in body:
        zone = _zone(body["timezone"])
        if body["timezone"] is None:
            errors.add("timezone", NULL)
        elif zone is None:
            errors.add("timezone", f'"{str(body["timezone"])[:64]}" is not a valid time zone.')
    if "start_time" in body:
        value = body["start_time"]
        wall = None
        if value is None:
            errors.add("start_time", NULL)
        else:
            try:
                if not isinstance(value, str):
                    raise ValueError
                wall = datetime.strptime(value, START_TIME_FORMAT)
                if wall.strftime(START_TIME_FORMAT) != value:  # no unpadded fields, offsets or fractions
                    raise ValueError
            except ValueError:
                wall = None
                errors.add("start_time", "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm:ss.")
        if wall is not None and zone is not None:
            try:
                instant = wall.replace(tzinfo=zone).astimezone(UTC)
                roundtrip = instant.astimezone(zone).replace(tzinfo=None)
                instant + timedelta(minutes=MAX_DURATION)  # the end must be representable too
            except (OverflowError, ValueError):
                errors.add("start_time", "Datetime is out of range.")
            else:
                if roundtrip != wall:
                    errors.add("start_time", f"{value} does not exist in {zone.key} (daylight saving time gap).")


def validate_create(body: dict[str, Any], partner: Partner) -> dict[str, list[str]]:
    """Jobylon's rules for a new event, every failing field reported."""
    errors = _Errors()
    for name in body:
        if name not in CREATE_FIELDS:
            errors.add(name, "Unknown field.")
    for name in CREATE_REQUIRED:
        if name not in body:
            errors.add(name, REQUIRED)
    _validate_time_fields(body, errors)
    if "organizer" in body:
        organizer = body["organizer"]
        if organizer is None:
            errors.add("organizer", NULL)
        elif not isinstance(organizer, str) or not EMAIL_RE.match(organizer):
            errors.add("organizer", "Enter a valid email address.")
        elif organizer not in ALL_USERS:
            errors.add("organizer", "No Jobylon user has this email address.")
        elif not partner.may_use_user(organizer):
            errors.add("organizer", "This user is not in a customer account available to this partner.")
    if "participants" in body:
        participants = body["participants"]
        if participants is None:
            errors.add("participants", NULL)
        elif not isinstance(participants, list):
            errors.add("participants", f'Expected a list of items but got type "{type(participants).__name__}".')
        elif not participants:
            errors.add("participants", "This list may not be empty.")
        else:
            not_int = [i for i, p in enumerate(participants) if not _is_int(p)]
            if not_int:
                errors.add("participants", f"A valid integer is required (items {not_int[:10]}).")
            else:
                if len(set(participants)) != len(participants):
                    errors.add("participants", "Duplicate application ids.")
                unknown = [p for p in participants if not application_exists(p)]
                if unknown:
                    errors.add("participants", f"Applications {unknown[:10]} do not exist.")
                foreign = [p for p in participants if application_exists(p) and not partner.may_use_application(p)]
                if foreign:
                    errors.add("participants", f"Applications {foreign[:10]} are not in a customer account available to this partner.")
    if "location" in body:
        _string(body, "location", errors, blank=True)
    if "videoconferencing" in body:
        if body["videoconferencing"] is None:
            errors.add("videoconferencing", NULL)
        elif not isinstance(body["videoconferencing"], bool):
            errors.add("videoconferencing", "Must be a valid boolean.")
    return dict(errors)


def validate_update(body: dict[str, Any]) -> dict[str, list[str]]:
    """PUT: exactly the five time fields, all required; anything else cannot be updated."""
    errors = _Errors()
    for name in body:
        if name not in UPDATE_FIELDS:
            errors.add(name, FIXED)
    for name in UPDATE_FIELDS:
        if name not in body:
            errors.add(name, REQUIRED)
    _validate_time_fields(body, errors)
    return dict(errors)


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def validate_availability(body: dict[str, Any], partner: Partner) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Errors, and the parsed query: duration, required and optional emails, periods, format."""
    errors = _Errors()
    allowed = {"duration_min", "participants", "query_periods", "response_format"}
    for name in body:
        if name not in allowed:
            errors.add(name, "Unknown field.")
    for name in sorted(allowed):
        if name not in body:
            errors.add(name, REQUIRED)
    query: dict[str, Any] = {"required": [], "optional": [], "periods": []}
    duration = body.get("duration_min")
    if "duration_min" in body:
        if not _is_int(duration):
            errors.add("duration_min", "A valid integer is required.")
        elif not 1 <= duration <= 24 * 60:
            errors.add("duration_min", "Ensure this value is between 1 and 1440.")
        else:
            query["duration"] = timedelta(minutes=duration)
    fmt = body.get("response_format")
    if "response_format" in body and fmt not in ("slots", "periods"):
        errors.add("response_format", f'"{str(fmt)[:20]}" is not a valid choice; use "slots" or "periods".')
    query["format"] = fmt
    participants = body.get("participants")
    if "participants" in body:
        if not isinstance(participants, list) or not participants:
            errors.add("participants", "Expected a non-empty list of {members: [{email}], required}.")
        else:
            for index, group in enumerate(participants):
                members = group.get("members") if isinstance(group, dict) else None
                if not isinstance(group, dict) or set(group) - {"members", "required"}:
                    errors.add("participants", f"Item {index}: expected an object {{members, required}}.")
                elif not isinstance(members, list) or not members or not all(isinstance(m, dict) and set(m) == {"email"} for m in members):
                    errors.add("participants", f"Item {index}: members must be a non-empty list of {{email}}.")
                elif not isinstance(group.get("required"), bool):
                    errors.add("participants", f"Item {index}: required must be a boolean.")
                else:
                    for member in members:
                        email = member["email"]
                        if not isinstance(email, str) or not EMAIL_RE.match(email):
                            errors.add("participants", f"Item {index}: enter a valid email address.")
                        elif not partner.may_use_user(email):
                            errors.add("participants", f"Item {index}: {email[:80]} is not a user in a customer account available to this partner.")
                        else:
                            query["required" if group["required"] else "optional"].append(email)
    periods = body.get("query_periods")
    if "query_periods" in body:
        if not isinstance(periods, list) or not periods:
            errors.add("query_periods", "Expected a non-empty list of {start, end}.")
        elif len(periods) > MAX_QUERY_PERIODS:
            errors.add("query_periods", f"At most {MAX_QUERY_PERIODS} periods.")
        else:
            for index, period in enumerate(periods):
                ok = isinstance(period, dict) and set(period) == {"start", "end"}
                start = _parse_instant(period.get("start")) if ok else None
                end = _parse_instant(period.get("end")) if ok else None
                if start is None or end is None:
                    errors.add("query_periods", f"Item {index}: start and end must be ISO 8601 date-times with an offset.")
                elif end <= start:
                    errors.add("query_periods", f"Item {index}: end must be after start.")
                elif end - start > MAX_QUERY_PERIOD:
                    errors.add("query_periods", f"Item {index}: a period may span at most {MAX_QUERY_PERIOD.days} days.")
                else:
                    query["periods"].append((start, end))
    return dict(errors), query


# -- state -------------------------------------------------------------------------------------


class SandboxState:
    """Events, the request log, counters and the fault configuration, behind one lock."""

    def __init__(self, *, faults: dict[str, Any], first_event_id: int) -> None:
        self.lock = threading.Lock()
        self.events: dict[int, dict[str, Any]] = {}
        self.by_organizer: dict[str, set[int]] = {}
        self.next_id = first_event_id
        self.log: list[dict[str, Any]] = []
        self.by_method: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.faults_seen: Counter[str] = Counter()
        self.connections = 0
        self.script: list[dict[str, Any]] = []
        self.faults = _check_faults(faults)
        self.rng = random.Random(self.faults["seed"])

    def pick_fault(self, method: str) -> dict[str, Any] | None:
        """The scripted fault for this method if one is queued, else maybe a random one."""
        with self.lock:
            for index, scripted in enumerate(self.script):
                if scripted["method"] in (None, method):
                    return self.script.pop(index)
            faults = self.faults
            if faults["rate"] <= 0 or self.rng.random() >= faults["rate"]:
                return None
            kinds = [k for k, w in faults["kinds"].items() if w > 0]
            if not kinds:
                return None
            return {"fault": self.rng.choices(kinds, weights=[faults["kinds"][k] for k in kinds])[0]}

    def record(self, method: str, path: str, status: int | None, fault: str | None, received: float | None = None) -> None:
        """`at` is when the answer went out; `received_at` when the request came in (rate checks)."""
        now = time.time()
        entry = {"seq": 0, "method": method, "path": path[:300], "status": status, "fault": fault, "at": now, "received_at": received or now}
        with self.lock:
            entry["seq"] = len(self.log) + 1
            self.log.append(entry)
            self.by_method[method] += 1
            self.by_status[str(status) if status is not None else "dropped"] += 1
            if fault:
                self.faults_seen[fault] += 1


# -- the server ----------------------------------------------------------------------------------


def _loopback(host: str) -> tuple[str, int]:
    """The loopback IP literal to bind for `host`, and its address family; ValueError otherwise."""
    if not isinstance(host, str) or not host:
        raise ValueError("the sandbox binds only to loopback addresses; give 127.0.0.1, ::1 or localhost")
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise ValueError(f"the sandbox binds only to loopback addresses; cannot resolve {host!r}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(a.is_loopback for a in addresses):
        raise ValueError(f"the sandbox binds only to loopback addresses, not {host!r}")
    chosen = next((a for a in addresses if a.version == 4), addresses[0])
    return str(chosen), (socket.AF_INET if chosen.version == 4 else socket.AF_INET6)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    sandbox: SandboxServer

    def server_bind(self) -> None:
        # plain socket bind: HTTPServer.server_bind would do a reverse DNS lookup (getfqdn), slow for nothing
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that vanish mid-request (a killed connector, a dropped connection) are normal here
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class SandboxServer:
    """The emulator: `with SandboxServer().start() as sandbox: ... sandbox.url ...`."""

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
        first_event_id: int = 1,
    ) -> None:
        address, family = _loopback(host)
        for name, path in (("events_path", events_path), ("availability_path", availability_path)):
            if not path.startswith("/") or not path.endswith("/") or path.startswith("/_sandbox/"):
                raise ValueError(f"{name} must start and end with '/' and not be under /_sandbox/: {path!r}")
        if not _is_int(first_event_id) or first_event_id < 1:
            raise ValueError("first_event_id must be a positive integer")
        self._retry_after_seconds = retry_after_seconds
        self._seed = seed
        faults = _default_faults(retry_after_seconds, seed)
        faults.update(rate=fault_rate, latency_ms=latency_ms)
        if fault_kinds is not None:
            faults["kinds"] = fault_kinds
        self.state = SandboxState(faults=faults, first_event_id=first_event_id)
        self.events_path = events_path
        self.availability_path = availability_path
        self._event_re = re.compile(re.escape(events_path) + EVENT_ID_RE)
        server_class = _HTTPServer if family == socket.AF_INET else _HTTPServer6
        self.httpd = server_class((address, port), _Handler)
        self.httpd.sandbox = self
        self.host = address
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://{address}:{self.port}" if family == socket.AF_INET else f"http://[{address}]:{self.port}"
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._stopped = False

    # -- lifecycle

    def start(self) -> SandboxServer:
        if self._stopped:
            raise RuntimeError("a stopped sandbox cannot be restarted; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open keep-alive connection."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            stopper = threading.Thread(target=self.httpd.shutdown, daemon=True)
            stopper.start()
            self._poke()  # wake the accept loop now rather than at its next poll
            stopper.join(timeout=5)
            self._thread.join(timeout=5)
        self.httpd.server_close()
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _poke(self) -> None:
        time.sleep(0.001)  # let shutdown() raise its flag first
        try:
            with socket.socket(self.httpd.address_family, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect((self.host, self.port))
        except OSError:
            pass

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- inspection and control

    def events(self, app_id: str | None = None) -> list[dict[str, Any]]:
        """Snapshot of the stored events (with app_id and version), oldest first."""
        with self.state.lock:
            return [_copy(e) for e in self.state.events.values() if app_id is None or e["app_id"] == app_id]

    def requests_log(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(r) for r in self.state.log]

    def stats(self) -> dict[str, Any]:
        state = self.state
        with state.lock:
            return {
                "requests": len(state.log),
                "by_method": dict(state.by_method),
                "by_status": dict(state.by_status),
                "faults": dict(state.faults_seen),
                "events": len(state.events),
                "connections": state.connections,
            }

    def faults(self) -> dict[str, Any]:
        with self.state.lock:
            return {**self.state.faults, "kinds": dict(self.state.faults["kinds"])}

    def set_faults(
        self,
        rate: float | None = None,
        kinds: dict[str, float] | None = None,
        retry_after_seconds: int | None = None,
        latency_ms: float | None = None,
        spike_ms: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Change the given settings, keep the others; a seed restarts the random fault sequence."""
        changes = {"rate": rate, "kinds": kinds, "retry_after_seconds": retry_after_seconds, "latency_ms": latency_ms, "spike_ms": spike_ms, "seed": seed}
        with self.state.lock:
            config = {**self.state.faults, **{k: v for k, v in changes.items() if v is not None}}
            self.state.faults = _check_faults(config)
            if seed is not None:
                self.state.rng = random.Random(seed)

    def replace_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        """The whole fault configuration (missing keys take their defaults), as POST /_sandbox/faults does."""
        if not isinstance(config, dict):
            raise ValueError("expected an object")
        with self.state.lock:
            base = _default_faults(self._retry_after_seconds)
            unknown = set(config) - set(base)
            if unknown:
                raise ValueError(f"unknown fault settings {sorted(unknown)}")
            self.state.faults = _check_faults({**base, **config})
            self.state.rng = random.Random(self.state.faults["seed"])
            return {**self.state.faults, "kinds": dict(self.state.faults["kinds"])}

    def script(self, *faults: dict[str, Any]) -> None:
        """Queue faults, each taken by the next API request of its method (any method if none)."""
        checked = [_check_scripted(f) for f in faults]
        with self.state.lock:
            self.state.script.extend(checked)

    def scripted(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(f) for f in self.state.script]

    def delete_event(self, event_id: int) -> None:
        """Remove an event behind the connector's back (no error if it is not there)."""
        with self.state.lock:
            self._remove(event_id)

    def reset(self) -> None:
        """Clear events, request log, counters, faults and script; event ids keep increasing."""
        state = self.state
        with state.lock:
            state.events.clear()
            state.by_organizer.clear()
            state.log.clear()
            state.by_method.clear()
            state.by_status.clear()
            state.faults_seen.clear()
            state.script.clear()
            state.faults = _check_faults(_default_faults(self._retry_after_seconds, self._seed))
            state.rng = random.Random(self._seed)

    # -- the API (called by the handler; state under the lock)

    def route(self, path: str) -> tuple[str, int | None] | None:
        if path == self.events_path:
            return "events", None
        if path == self.availability_path:
            return "availability", None
        match = self._event_re.fullmatch(path)
        if match:
            return "event", int(match.group(1))
        return None

    def _remove(self, event_id: int) -> dict[str, Any] | None:
        event = self.state.events.pop(event_id, None)
        if event is not None:
            ids = self.state.by_organizer.get(event["organizer"])
            if ids is not None:
                ids.discard(event_id)
        return event

    def create(self, partner: Partner, body: dict[str, Any]) -> tuple[int, Any]:
        errors = validate_create(body, partner)
        if errors:
            return 400, errors
        now = _now()
        state = self.state
        with state.lock:
            event_id = state.next_id
            state.next_id += 1
            video = body.get("videoconferencing", False)
            state.events[event_id] = {
                "id": event_id,
                "app_id": partner.app_id,
                "title": body["title"],
                "description": body["description"],
                "duration": body["duration"],
                "start_time": body["start_time"],
                "timezone": body["timezone"],
                "organizer": body["organizer"],
                "participants": list(body["participants"]),
                "location": body.get("location"),
                "videoconferencing": video,
                "status": "created",
                "vc_link_url": f"https://meet.sandbox.jobylon.invalid/e/{event_id}" if video else None,
                "created_at": now,
                "updated_at": now,
                "version": 1,
            }
            state.by_organizer.setdefault(body["organizer"], set()).add(event_id)
        return 201, {"id": event_id}

    def _owned(self, partner: Partner, event_id: int) -> tuple[int, Any] | None:
        """404 / 403 answer if the partner cannot touch this event (call under the lock)."""
        event = self.state.events.get(event_id)
        if event is None:
            return 404, {"detail": NOT_FOUND}
        if event["app_id"] != partner.app_id:
            return 403, {"detail": NO_PERMISSION}
        return None

    def update(self, partner: Partner, event_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        with self.state.lock:
            refused = self._owned(partner, event_id)
        if refused:
            return refused
        errors = validate_update(body)
        if errors:
            return 400, errors
        with self.state.lock:
            refused = self._owned(partner, event_id)  # it may have gone meanwhile
            if refused:
                return refused
            event = self.state.events[event_id]
            moved = any(event[k] != body[k] for k in ("start_time", "timezone", "duration"))
            event.update({k: body[k] for k in UPDATE_FIELDS})
            if moved and event["status"] != "canceled":
                event["status"] = "rescheduled"
            event["version"] += 1
            event["updated_at"] = _now()
            return 200, _public(event)

    def delete(self, partner: Partner, event_id: int) -> tuple[int, Any]:
        with self.state.lock:
            refused = self._owned(partner, event_id)
            if refused:
                return refused
            self._remove(event_id)
        return 204, None

    def availability(self, partner: Partner, body: dict[str, Any]) -> tuple[int, Any]:
        errors, query = validate_availability(body, partner)
        if errors:
            return 400, errors
        required, optional = list(dict.fromkeys(query["required"])), list(dict.fromkeys(query["optional"]))
        with self.state.lock:
            busy = {email: _busy(self.state, email) for email in required + optional}
        duration: timedelta = query["duration"]
        results: list[dict[str, Any]] = []
        for start, end in query["periods"]:
            zone = start.tzinfo
            blocked = sorted(b for email in required for b in busy[email])
            free, cursor = [], start
            for b_start, b_end in blocked:
                if b_end <= cursor or b_start >= end:
                    continue
                if b_start > cursor:
                    free.append((cursor, b_start))
                cursor = max(cursor, b_end)
            if cursor < end:
                free.append((cursor, end))
            windows = [(s, e) for s, e in free if e - s >= duration]
            if query["format"] == "slots":
                slots = []
                for s, e in windows:
                    while s + duration <= e and len(slots) < MAX_AVAILABILITY_RESULTS:
                        slots.append((s, s + duration))
                        s += duration
                windows = slots
            for s, e in windows:
                present = required + [m for m in optional if not any(b_s < e and b_e > s for b_s, b_e in busy[m])]
                results.append({"start": s.astimezone(zone).isoformat(), "end": e.astimezone(zone).isoformat(), "participants": present})
                if len(results) >= MAX_AVAILABILITY_RESULTS:
                    return 200, results
        return 200, results


def _busy(state: SandboxState, email: str) -> list[tuple[datetime, datetime]]:
    out = []
    for event_id in state.by_organizer.get(email, ()):
        event = state.events[event_id]
        start = datetime.strptime(event["start_time"], START_TIME_FORMAT).replace(tzinfo=ZoneInfo(event["timezone"])).astimezone(UTC)
        out.append((start, start + timedelta(minutes=event["duration"])))
    return out


def _copy(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "participants": list(event["participants"])}


def _public(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the API shows it: no partner id, no internal version."""
    return {k: (list(v) if k == "participants" else v) for k, v in event.items() if k not in ("app_id", "version")}


def _partner(app_id: str | None, app_key: str | None) -> Partner | None:
    partner = PARTNERS.get(app_id or "")
    if partner is None or not app_key:
        return None
    return partner if hmac.compare_digest(partner.app_key.encode(), app_key.encode("utf-8", "surrogateescape")) else None


ALLOW = {"events": "POST", "event": "PUT, DELETE", "availability": "POST"}
CONTROL_ALLOW = {"events": "GET", "event": "DELETE", "requests": "GET", "stats": "GET", "faults": "GET, POST", "script": "GET, POST", "reset": "POST"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "JobylonSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # one response is two writes; Nagle + delayed ACK would add 40 ms to each
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
            self._api(method, path, raw)
        except (ConnectionError, TimeoutError):
            raise
        except Exception:  # a sandbox bug: say so on stderr, answer 500, keep serving
            traceback.print_exc(file=sys.stderr)
            self.server.sandbox.state.record(method, path, 500, None)
            self._send(500, {"detail": "Sandbox internal error."})

    # -- the API

    def _api(self, method: str, path: str, raw: bytes) -> None:
        received = time.time()
        sandbox = self.server.sandbox
        state = sandbox.state
        latency = state.faults["latency_ms"]
        if latency:
            time.sleep(latency / 1000)
        route = sandbox.route(path)
        if route is None:
            state.record(method, path, 404, None, received)
            self._send(404, {"detail": NOT_FOUND})
            return
        app_id, app_key = self.headers.get("X-App-Id"), self.headers.get("X-App-Key")
        partner = _partner(app_id, app_key)
        if partner is None:
            state.record(method, path, 403, None, received)
            self._send(403, {"detail": AUTH_MISSING if not app_id or not app_key else AUTH_INVALID})
            return
        fault = state.pick_fault(method)
        kind = fault["fault"] if fault else None
        if kind in ("429", "503"):
            retry_after = fault.get("retry_after", state.faults["retry_after_seconds"])  # type: ignore[union-attr]
            detail = f"Request was throttled. Expected available in {retry_after} seconds." if kind == "429" else "Service temporarily unavailable."
            state.record(method, path, int(kind), kind, received)
            self._send(int(kind), {"detail": detail}, {"Retry-After": str(retry_after)})
            return
        if kind == "500":
            state.record(method, path, 500, kind, received)
            self._send(500, {"detail": "Internal server error."})
            return
        if kind == "drop":
            state.record(method, path, None, kind, received)
            self._drop()
            return
        if kind == "latency":
            time.sleep(float(fault.get("spike_ms", state.faults["spike_ms"])) / 1000)  # type: ignore[union-attr]
        status, answer, headers = self._handle(sandbox, route, method, partner, raw)
        if kind == "apply_then_500":
            status, answer, headers = 500, {"detail": "Internal server error."}, None
        state.record(method, path, status, kind, received)
        self._send(status, answer, headers)

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
            return (*sandbox.delete(partner, event_id), None)  # type: ignore[arg-type]
        if not isinstance(body, dict):
            got = "nothing" if body is None else type(body).__name__
            return 400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {got}."]}, None
        if name == "events":
            return (*sandbox.create(partner, body), None)
        if name == "event":
            return (*sandbox.update(partner, event_id, body), None)  # type: ignore[arg-type]
        return (*sandbox.availability(partner, body), None)

    # -- control routes

    def _control(self, method: str, path: str, raw: bytes) -> None:
        sandbox = self.server.sandbox
        parts = path.rstrip("/").split("/")[2:]  # "/_sandbox/events/7" -> ["events", "7"]
        name = parts[0] if parts else ""
        if len(parts) == 2 and name == "events":
            name = "event"
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


def serve_forever(host: str = "127.0.0.1", port: int = 8765, fault_rate: float = 0.0, **kwargs: Any) -> None:
    """Run the sandbox until Ctrl-C or SIGTERM (for `connector sandbox`)."""
    # Its threads mostly sleep (added latency) or wait on sockets: a short switch interval keeps
    # the latency it adds close to what was asked for when many connections are busy.
    sys.setswitchinterval(0.0005)
    server = SandboxServer(host, port, fault_rate=fault_rate, **kwargs)
    stop = threading.Event()
    previous = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(f"Jobylon sandbox on {server.url} (app id {DEMO_APP_ID})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
