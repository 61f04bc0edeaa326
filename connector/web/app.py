"""The status pages as a WSGI application, read-only: routing, the security headers, the optional
basic-auth pair, the Host check, rendering (Jinja2, autoescape on, every value through the
redactor) and the JSON twins. Served beside `/metrics` and `/healthz` by `MetricsServer`.

Routes (GET and HEAD only; `?format=json` on any page gives its JSON twin):
  /                    health, last pass and next run, events per state, open failures, the chart
  /runs                the run history, paged (`before` / `after` a run id)
  /failures            open failures (`kind`, `all=1` for resolved ones too), paged
  /failures/<id>       one failure: the redacted request, Jobylon's answer, the command that fixes it
  /events/<remote id>  one interview: its mapping, its calls, its failures (also /events?remote_id=)
  /static/<file>       the stylesheet (no script is served at all)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from connector.clock import iso, utcnow
from connector.config import ObservabilityConfig
from connector.errors import StateError
from connector.metrics import HEALTH_KEY
from connector.redact import Redactor
from connector.store.reader import ReadOnlyStore
from connector.web import pages
from connector.web.pages import BadRequest, NotFound, View

log = logging.getLogger("connector.web")

# What a page may load: its own stylesheet, images from itself or data: URIs (the favicon), and
# nothing else; no script at all (inline or not), no frames, no plugins, forms only to itself.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
REFRESH_SECONDS = 30
STATIC_TYPES = {".css": "text/css; charset=utf-8"}
STATUS_TEXT = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}
STATUS_TEXT |= {500: "Internal Server Error", 503: "Service Unavailable"}

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name(header: str) -> str:
    """The name in a Host header, without its port (`[::1]:9100` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class StatusPages:
    """The pages over the state database at `state_path`, read through a ReadOnlyStore per request.

    `heartbeat_fresh(heartbeat_at)` says whether `next_run_at` is shown (the CLI's rule, from the
    daemon); `redactor` (or a callable giving the current one) masks every value put on a page.
    With `username` and `password`, every page asks for them (basic auth); without, the pages are
    only served to a loopback listener (`listen_host`) and to a loopback Host name, so neither
    another machine nor a web page using DNS rebinding can read them."""

    def __init__(
        self,
        state_path: Any,
        *,
        heartbeat_fresh: Callable[[str | None], bool],
        redactor: Redactor | Callable[[], Redactor] | None = None,
        username: str = "",
        password: str = "",
        listen_host: str = "127.0.0.1",
        refresh_seconds: int = REFRESH_SECONDS,
    ) -> None:
        self.state_path = state_path
        self.heartbeat_fresh = heartbeat_fresh
        fixed = redactor if isinstance(redactor, Redactor) else Redactor()
        self._redactor: Callable[[], Redactor] = redactor if callable(redactor) else (lambda: fixed)
        self._credentials = (username.encode(), password.encode()) if username and password else None
        self.listen_host = listen_host
        self.loopback = _is_loopback(listen_host)
        self.refresh_seconds = refresh_seconds
        self.env = Environment(
            loader=PackageLoader("connector.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            finalize=self._finalize,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(event_url=pages.event_url, failure_url=pages.failure_url)
        self.env.filters["when"] = pages.short_time
        self.static = {
            f.name: f.read_bytes() for f in resources.files("connector.web").joinpath("static").iterdir() if f.name[f.name.rfind(".") :] in STATIC_TYPES
        }

    @classmethod
    def of(
        cls, observability: ObservabilityConfig, state_path: Any, *, heartbeat_fresh: Callable[[str | None], bool], redactor: Callable[[], Redactor]
    ) -> StatusPages:
        """The pages as `[observability]` sets them up (read at start: a SIGHUP does not change them)."""
        return cls(
            state_path,
            heartbeat_fresh=heartbeat_fresh,
            redactor=redactor,
            username=observability.username,
            password=observability.password.get_secret_value(),
            listen_host=observability.metrics_host,
        )

    @property
    def redactor(self) -> Redactor:
        return self._redactor()

    def _finalize(self, value: Any) -> Any:
        """Every `{{ value }}` of every template passes here before it is escaped: secrets masked, None a dash."""
        if value is None:
            return "–"
        if isinstance(value, Markup):
            return Markup(self.redactor.text(str(value)))
        if isinstance(value, str):
            return self.redactor.text(value)
        return value

    # -- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self.respond(environ)
        except Exception:  # a page that fails says so without a traceback; the log has it
            log.exception("status page %s failed", environ.get("PATH_INFO", ""))
            response = self._error(500, "internal error", "the page could not be built; the service's log has the reason", environ)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            *response.headers,
            *SECURITY_HEADERS,
        ]
        start_response(f"{response.status} {STATUS_TEXT.get(response.status, 'Unknown')}", headers)
        return [response.body]  # waitress sends no body to a HEAD

    def respond(self, environ: dict[str, Any]) -> Response:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return Response(405, b"read-only: GET and HEAD only\n", "text/plain; charset=utf-8", (("Allow", "GET, HEAD"),))
        refusal = self._refusal(environ)
        if refusal is not None:
            return refusal
        path = environ.get("PATH_INFO", "") or "/"
        path = path.encode("latin-1").decode("utf-8", "replace")  # PEP 3333: the path's bytes as latin-1
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        as_json = (query.get("format") or [""])[-1] == "json"
        try:
            with ReadOnlyStore(self.state_path, redactor=self.redactor) as reader:
                view = self._route(reader, path, query, environ)
                if isinstance(view, Response):
                    return view
                return self._json(view) if as_json else self._html(view, environ, path)
        except NotFound as exc:
            return self._error(404, "not found", str(exc), environ, as_json=as_json)
        except BadRequest as exc:
            return self._error(400, "bad request", str(exc), environ, as_json=as_json)
        except StateError as exc:
            return self._error(503, "state database unavailable", str(exc), environ, as_json=as_json)

    def _route(self, reader: ReadOnlyStore, path: str, query: dict[str, list[str]], environ: dict[str, Any]) -> View | Response:
        if path == "/":
            health_of = environ.get(HEALTH_KEY)
            return pages.status_view(reader, health=health_of() if callable(health_of) else None, heartbeat_fresh=self.heartbeat_fresh)
        if path == "/runs":
            return pages.runs_view(reader, query)
        if path == "/failures":
            return pages.failures_view(reader, query)
        if path.startswith("/failures/"):
            number = path.removeprefix("/failures/")
            if not (number.isascii() and number.isdigit() and len(number) <= 18):
                raise NotFound(f"no failure {number[:40]!r}: failures are numbered")
            return pages.failure_view(reader, int(number))
        if path in ("/events", "/events/"):
            remote_id = (query.get("remote_id") or [""])[-1]
            if not remote_id.strip():
                raise BadRequest("remote_id: name an interview by the id your system gives it")
            target = pages.event_url(remote_id)
            if target.startswith("/events/"):  # the one address of that page
                suffix = "?format=json" if (query.get("format") or [""])[-1] == "json" else ""
                return Response(303, b"", "text/plain; charset=utf-8", (("Location", target + suffix),))
            return pages.event_view(reader, remote_id)
        if path.startswith("/events/"):
            return pages.event_view(reader, path.removeprefix("/events/"))
        raise NotFound(f"no page at {path[:200]}")

    # -- refusals: the Host, the credentials ----------------------------------------------------

    def _refusal(self, environ: dict[str, Any]) -> Response | None:
        if self._credentials is not None:
            if self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
                return None
            return Response(
                401,
                b"the status pages ask for observability.username and observability.password\n",
                "text/plain; charset=utf-8",
                (("WWW-Authenticate", 'Basic realm="jobylon-connector", charset="UTF-8"'),),
            )
        if not self.loopback:
            return Response(
                403,
                f"the status pages are served on {self.listen_host} only with observability.username and observability.password set; "
                "/metrics and /healthz answer without\n".encode(),
                "text/plain; charset=utf-8",
            )
        host = _host_name(environ.get("HTTP_HOST", "") or "localhost")
        if host not in LOOPBACK_NAMES and not _is_loopback(host):
            return Response(403, b"the status pages answer to a loopback address (127.0.0.1, localhost, [::1]) only\n", "text/plain; charset=utf-8")
        return None

    def _authorized(self, header: str) -> bool:
        assert self._credentials is not None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        expected_user, expected_password = self._credentials
        # both compared, always, in constant time
        user_ok = hmac.compare_digest(user, expected_user)
        password_ok = hmac.compare_digest(password, expected_password)
        return bool(sep) and user_ok and password_ok

    # -- responses ------------------------------------------------------------------------------

    def _static(self, name: str) -> Response:
        body = self.static.get(name)
        if body is None:
            return Response(404, b"not found\n", "text/plain; charset=utf-8")
        return Response(200, body, STATIC_TYPES[name[name.rfind(".") :]])

    def _common(self, environ: dict[str, Any], path: str) -> dict[str, Any]:
        query = environ.get("QUERY_STRING", "")
        here = path if not query else f"{path}?{query}"
        return {"refresh": self.refresh_seconds, "now": iso(utcnow()), "location": str(self.state_path), "json_url": pages.json_twin(here)}

    def _html(self, view: View, environ: dict[str, Any], path: str) -> Response:
        body = self.env.get_template(view.template).render(**view.context, **self._common(environ, path), cli=view.cli)
        return Response(200, body.encode(), "text/html; charset=utf-8")

    def _json(self, view: View) -> Response:
        body = json.dumps(self.redactor.data(view.document), indent=2, ensure_ascii=False) + "\n"
        links = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in view.links.items())
        return Response(200, body.encode(), "application/json; charset=utf-8", (("Link", links),) if links else ())

    def _error(self, status: int, title: str, message: str, environ: dict[str, Any], *, as_json: bool = False) -> Response:
        if as_json:
            body = json.dumps({"error": self.redactor.text(message)}, ensure_ascii=False) + "\n"
            return Response(status, body.encode(), "application/json; charset=utf-8")
        common = self._common(environ, "/")
        page = self.env.get_template("error.html").render(status=status, title=title, message=message, **{**common, "refresh": 0}, cli="")
        return Response(status, page.encode(), "text/html; charset=utf-8")
