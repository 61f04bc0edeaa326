"""The sandbox server: `SandboxServer` (bind, lifecycle, inspection, control) and `serve_forever`."""

from __future__ import annotations

import errno
import ipaddress
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from connector.sandbox.directory import DEMO_APP_ID
from connector.sandbox.faults import FAULT_KINDS, check_scripted, copy_faults, default_faults
from connector.sandbox.handler import _Handler
from connector.sandbox.state import SandboxState, copy_event
from connector.sandbox.validation import is_int
from connector.sandbox.webhooks import RSVPS, WebhookSender

__all__ = ["FAULT_KINDS", "SandboxBindError", "SandboxServer", "serve_forever"]  # FAULT_KINDS: re-exported, it was defined here

EVENT_ID_RE = r"([0-9]{1,18})/"  # longer digit strings are not an event id: 404, never a crash


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


class SandboxBindError(OSError):
    """The sandbox's address could not be had (a port in use, a privileged port). A plain OSError (the
    sandbox stands apart from the connector's error tree); `connector sandbox` makes it exit 2."""

    def __init__(self, where: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.where = where

    def explain(self, option: str = "") -> str:
        """One line naming the address (and, when given, the option that chose it)."""
        named = f" ({option})" if option else ""
        if self.errno == errno.EADDRINUSE:
            return f"{self.where} is already in use{named}; choose another port or stop what holds it"
        if self.errno == errno.EACCES:
            return f"cannot listen on {self.where}{named}: permission denied; choose a port of 1024 or above"
        return f"cannot listen on {self.where}{named}: {(self.strerror or 'unknown error').lower()}"

    def __str__(self) -> str:
        return self.explain()


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
        if not is_int(first_event_id) or first_event_id < 1:
            raise ValueError("first_event_id must be a positive integer")
        self._retry_after_seconds = retry_after_seconds
        self._seed = seed
        faults = default_faults(retry_after_seconds, seed)
        faults.update(rate=fault_rate, latency_ms=latency_ms)
        if fault_kinds is not None:
            faults["kinds"] = fault_kinds
        self.state = SandboxState(faults=faults, first_event_id=first_event_id)
        self.events_path = events_path
        self.availability_path = availability_path
        self._event_re = re.compile(re.escape(events_path) + EVENT_ID_RE)
        server_class = _HTTPServer if family == socket.AF_INET else _HTTPServer6
        where = f"{address}:{port}" if family == socket.AF_INET else f"[{address}]:{port}"
        try:
            self.httpd = server_class((address, port), _Handler)
        except OverflowError:  # socket.bind's check of the port number
            raise ValueError(f"port must be 0..65535, not {port}") from None
        except OSError as exc:
            raise SandboxBindError(where, exc) from None
        self.httpd.sandbox = self
        self.host = address
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://{address}:{self.port}" if family == socket.AF_INET else f"http://[{address}]:{self.port}"
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._stopped = False
        self.webhooks: WebhookSender | None = None

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
        if self.webhooks is not None:
            self.webhooks.stop()
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
            return [copy_event(e) for e in self.state.events.values() if app_id is None or e["app_id"] == app_id]

    def requests_log(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(r) for r in self.state.log]

    def requests_by_client(self) -> dict[str, int]:
        """API requests per User-Agent (the connector's names its process: `(pid N)`)."""
        with self.state.lock:
            return dict(self.state.by_client)

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
            return copy_faults(self.state.faults)

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
            self.state.use_faults(config, reseed=seed is not None)

    def replace_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        """The whole fault configuration (missing keys take their defaults), as POST /_sandbox/faults does."""
        if not isinstance(config, dict):
            raise ValueError("expected an object")
        with self.state.lock:
            self.state.use_faults({**default_faults(self._retry_after_seconds), **config}, reseed=True)  # unknown keys: ValueError
            return copy_faults(self.state.faults)

    def script(self, *faults: dict[str, Any]) -> None:
        """Queue faults, each taken by the next API request of its method (any method if none)."""
        checked = [check_scripted(f) for f in faults]
        with self.state.lock:
            self.state.script.extend(checked)

    def scripted(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(f) for f in self.state.script]

    def delete_event(self, event_id: int) -> None:
        """Remove an event behind the connector's back (no error if it is not there)."""
        with self.state.lock:
            self.state.remove(event_id)

    def reset(self) -> None:
        """Clear events, request log, counters, faults and script; event ids keep increasing."""
        self.state.reset(default_faults(self._retry_after_seconds, self._seed))

    # -- Jobylon's calendar_event webhooks (connector.sandbox.webhooks) and changes made inside Jobylon

    def use_webhooks(
        self,
        url: str | None,
        *,
        username: str | None = None,
        password: str | None = None,
        headers: dict[str, str] | None = None,
        retry_scale: float = 1.0,
        link_key: str = "vc_link_url",
        drop_rate: float = 0.0,
    ) -> WebhookSender | None:
        """Deliver a calendar_event webhook to `url` on every change of an event from now on (None: stop)."""
        sender = (
            WebhookSender(
                url, username=username, password=password, headers=headers, retry_scale=retry_scale, link_key=link_key, drop_rate=drop_rate, seed=self._seed
            )
            if url
            else None
        )
        with self.state.lock:
            previous, self.webhooks = self.webhooks, sender
            self.state.on_change = sender.deliver if sender is not None else None
        if previous is not None:
            previous.stop()
        return sender

    def webhook_log(self) -> list[dict[str, Any]]:
        return self.webhooks.log() if self.webhooks is not None else []

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """True once every delivery so far was answered 2xx or given up."""
        return self.webhooks.wait_idle(timeout) if self.webhooks is not None else True

    def _change(self, event_id: int, apply: Any) -> dict[str, Any]:
        with self.state.lock:
            event = self.state.events.get(event_id)
            if event is None:
                raise ValueError(f"no event {event_id}")
            apply(event)
            event["version"] += 1
            self.state.changed(event_id)
            return copy_event(event, public=True)

    def rsvp(self, event_id: int, application_id: int, rsvp: str) -> dict[str, Any]:
        """A participant answers the invitation (inside Jobylon)."""
        if rsvp not in RSVPS:
            raise ValueError(f"rsvp must be one of {list(RSVPS)}")

        def answer(event: dict[str, Any]) -> None:
            if application_id not in event["participants"]:
                raise ValueError(f"application {application_id} is not a participant of event {event_id}")
            if self.webhooks is not None:
                self.webhooks.set_rsvp(event_id, application_id, rsvp)
            if event["status"] == "created":
                event["status"] = "invited"

        return self._change(event_id, answer)

    def cancel_event(self, event_id: int) -> dict[str, Any]:
        """Cancel an event inside Jobylon (it stays, with status canceled)."""
        return self._change(event_id, lambda event: event.update(status="canceled"))

    def change_event(self, event_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Change an event's fields inside Jobylon, behind the connector's back."""
        allowed = {"title", "description", "duration", "start_time", "timezone", "location", "organizer", "participants", "videoconferencing"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ValueError(f"unknown event fields {unknown}; known: {sorted(allowed)}")
        return self._change(event_id, lambda event: event.update(changes))

    # -- routing

    def route(self, path: str) -> tuple[str, int | None] | None:
        if path == self.events_path:
            return "events", None
        if path == self.availability_path:
            return "availability", None
        match = self._event_re.fullmatch(path)
        if match:
            return "event", int(match.group(1))
        return None


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
