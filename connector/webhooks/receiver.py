"""The receiver: a WSGI app for Jobylon's calendar_event deliveries, served by waitress.

Order of checks on a request (the first that fails answers; nothing is stored unless all pass):

    path                       404  anything but `webhooks.path`
    method                     405  only POST (with Allow: POST)
    client address             403  not in `webhooks.allowed_ips` (when set)
    basic auth                 401  `webhooks.username` / `password`, compared in constant time
    required header            401  `webhooks.header_name` / `header_value`, compared in constant time
    size                       413  a body above `webhooks.max_body_bytes` (declared or read)
    media type                 415  a Content-Type other than JSON
    JSON, shape                400  not JSON, or a calendar_event without an integer id
    another event type         202  acknowledged, nothing stored
    stored                     200  only after the delivery is committed; {"stored": true|false (duplicate)}
    the state cannot be written 503 Jobylon delivers again later (its retries are our recovery)

Waitress answers a body larger than the cap itself (413) when it comes chunked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from connector.config import WebhooksConfig
from connector.errors import ConfigError, StateError
from connector.webhooks.intake import Intake
from connector.webhooks.payload import PayloadError, parse_delivery

log = logging.getLogger("connector.webhooks")
REALM = 'Basic realm="jobylon-connector webhooks", charset="UTF-8"'

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Answer = tuple[int, dict[str, Any], dict[str, str]]
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}
REASONS |= {413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable"}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


SAID = {  # the log line of each outcome of a delivery (Intake.receive)
    "stored": "stored",
    "duplicate": "duplicate delivery, nothing changed",
    "stale": "a late delivery of an older state our calls left; the newer one kept",
}


class ReceiverApp:
    """The WSGI application. `intake.receive` does the storing; this checks and answers."""

    def __init__(self, config: WebhooksConfig, intake: Intake) -> None:
        self.config = config
        self.intake = intake
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in config.allowed_ips]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, body, headers = self.answer(environ)
        except StateError as exc:
            log.error("calendar_event delivery not stored (answered 503, Jobylon delivers it again): %s", exc)
            status, body, headers = 503, {"detail": "the state database cannot be written; deliver again later"}, {}
        except Exception:
            log.exception("calendar_event delivery failed (answered 500, Jobylon delivers it again)")
            status, body, headers = 500, {"detail": "internal error; deliver again later"}, {}
        data = json.dumps(body).encode()
        start_response(
            f"{status} {REASONS.get(status, 'Error')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers.items()],
        )
        return [data]

    def answer(self, environ: dict[str, Any]) -> Answer:
        config = self.config
        if environ.get("PATH_INFO", "") != config.path:
            return 404, {"detail": "not found"}, {}
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, {"detail": "only POST"}, {"Allow": "POST"}
        if self.networks and not self._allowed(environ.get("REMOTE_ADDR", "")):
            log.warning("calendar_event delivery refused: client address %s not in webhooks.allowed_ips", environ.get("REMOTE_ADDR"))
            return 403, {"detail": "client address not allowed"}, {}
        if config.username and not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            log.warning("calendar_event delivery refused: missing or wrong basic auth (from %s)", environ.get("REMOTE_ADDR"))
            return 401, {"detail": "authentication required"}, {"WWW-Authenticate": REALM}
        if config.header_name:
            given = environ.get("HTTP_" + config.header_name.upper().replace("-", "_"), "")
            if not _same(given, config.header_value.get_secret_value()):
                log.warning("calendar_event delivery refused: header %s missing or wrong (from %s)", config.header_name, environ.get("REMOTE_ADDR"))
                return 401, {"detail": f"header {config.header_name} missing or wrong"}, {}
        raw, problem = self._body(environ)
        if problem is not None:
            return problem
        content_type = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if content_type and content_type != "application/json" and not content_type.endswith("+json"):
            return 415, {"detail": "send application/json"}, {}
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            return 400, {"detail": "the body is not JSON; nothing stored"}, {}
        try:
            event = parse_delivery(document)
        except PayloadError as exc:
            return 400, {"detail": f"{exc}; nothing stored"}, {}
        if event is None:
            return 202, {"stored": False, "detail": "not a calendar_event delivery; ignored"}, {}
        outcome = self.intake.receive(event)
        log.info(
            "calendar_event %d %s: %s",
            event.event_id,
            event.status,
            SAID[outcome],
            extra={"event_id": event.event_id, "event": "webhook", "outcome": outcome},
        )
        return 200, {"stored": outcome == "stored", "duplicate": outcome == "duplicate", "stale": outcome == "stale"}, {}

    def _allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("latin-1")
        except (binascii.Error, ValueError):
            return False
        username, _, password = decoded.partition(":")
        # both compared, always: how long a refusal takes says nothing about which part was wrong
        user_ok = _same(username, self.config.username)
        password_ok = _same(password, self.config.password.get_secret_value())
        return user_ok and password_ok

    def _body(self, environ: dict[str, Any]) -> tuple[bytes, Answer | None]:
        cap = self.config.max_body_bytes
        too_large: Answer = (413, {"detail": f"the body is larger than {cap} bytes; nothing stored"}, {})
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.strip().isdigit() and int(declared) > cap:
            return b"", too_large
        raw = environ["wsgi.input"].read(cap + 1)
        if len(raw) > cap:
            return b"", too_large
        return raw, None


class Receiver:
    """The app on waitress (`connector.wsgi`), in a thread of its own: `start()`, `url`, `stop()`.
    Binding happens in the constructor, so a port in use is a ConfigError (exit 2) before anything
    else starts."""

    def __init__(self, config: WebhooksConfig, intake: Intake) -> None:
        from connector.wsgi import WsgiServer, bind_problem

        self.config = config
        self.app = ReceiverApp(config, intake)
        try:
            self.server = WsgiServer(self.app, config.host, config.port, name="webhooks", threads=config.threads, max_body_bytes=config.max_body_bytes)
        except OSError as exc:
            raise ConfigError(bind_problem(config.host, config.port, exc, "webhooks.host / webhooks.port")) from None
        self.port: int = self.server.port
        host = config.host if ":" not in config.host else f"[{config.host}]"
        self.url = f"http://{host}:{self.port}{config.path}"

    def start(self) -> Receiver:
        self.server.start()
        protections = [
            name
            for name, on in (
                ("basic auth", self.config.username),
                ("a required header", self.config.header_name),
                ("an IP allow-list", self.config.allowed_ips),
            )
            if on
        ]
        log.info("webhooks: receiving calendar_event deliveries on %s (%s)", self.url, ", ".join(protections) or "no authentication: loopback only")
        return self

    def stop(self) -> None:
        """Stop listening; deliveries being handled finish first (up to 10 s)."""
        self.server.stop(timeout=10)
        log.info("webhooks: receiver stopped")
