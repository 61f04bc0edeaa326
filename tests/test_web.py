"""The status pages without a browser: the WSGI app in process (escaping, secrets, paging, JSON twins
equal to the CLI's documents, refusals), the server on waitress over real HTTP (headers, basic auth,
the Host check, /metrics and /healthz beside the pages), the read-only reader and its indexes, and
the chart. The browser tests are in test_web_browser.py."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import sqlite3
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Harness, item, run_cli

from connector import oncall
from connector.config import load_settings
from connector.errors import ConfigError, StateError
from connector.metrics import Metrics, MetricsServer
from connector.redact import MASK, Redactor
from connector.sandbox.directory import DEMO_APP_KEY
from connector.store import FailureRecord, Store
from connector.store.reader import PAGE, ReadOnlyStore
from connector.web import chart
from connector.web.app import CONTENT_SECURITY_POLICY, StatusPages

HOSTILE = [
    "<script>window.__xss = 1</script>",
    '"><img src=x onerror="window.__xss = 2">',
    "' onmouseover='window.__xss = 3' x='",
    "</textarea></pre><svg onload=window.__xss=4>",
    "\u0645\u0642\u0627\u0628\u0644\u0629 \u0639\u0645\u0644 \u200f(RTL) & <b>bold</b>",  # the corpus's right-to-left title, and markup
]


PAGE_TAGS = {"html", "head", "meta", "title", "link", "body", "header", "nav", "a", "form", "label", "input", "button", "main", "footer", "span"}
PAGE_TAGS |= {"code", "section", "h1", "h2", "p", "div", "table", "thead", "tbody", "tr", "th", "td", "bdi", "time", "figure", "figcaption"}
PAGE_TAGS |= {"svg", "line", "text", "g", "rect", "dl", "dt", "dd", "pre", "details", "summary"}  # no img, script, iframe, style, object


class Tags(HTMLParser):
    """What a browser would build from a page: its elements, and any script, handler or inline style."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []

    @classmethod
    def of(cls, body: str) -> Tags:
        parser = cls()
        parser.feed(body)
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag in ("script", "style"):
            (self.scripts if tag == "script" else self.styles).append(tag)
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.handlers.append(f"{tag} {name}={value}")
            if name == "style":
                self.styles.append(f"{tag} style={value}")


def call(app: StatusPages, path: str, *, method: str = "GET", host: str = "127.0.0.1:9100", auth: str | None = None) -> tuple[int, dict[str, str], str]:
    """One request through the WSGI app, as waitress would make it (PATH_INFO unquoted, as latin-1)."""
    from urllib.parse import unquote_to_bytes

    raw_path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": query,
        "HTTP_HOST": host,
        "wsgi.url_scheme": "http",
    }
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = auth
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = {k.lower(): v for k, v in headers}

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body.decode()


def pages_for(h: Harness, **options: Any) -> StatusPages:
    return StatusPages(h.settings.state.path, heartbeat_fresh=lambda at: True, redactor=Redactor(h.settings.secrets()), **options)


@pytest.fixture
def synced(harness):
    """A state made by real passes against the sandbox under faults: an in-doubt create, a transient
    failure, a Jobylon 400 (permanent), an invalid item, hostile titles everywhere."""
    h = harness
    h.data["sync"]["concurrency"] = 1
    h.data["retry"]["attempts"] = 2
    h.reset_engine()
    items = [item(f"H{i}", title=title) for i, title in enumerate(HOSTILE)]
    items += [item("BAD-ORG", title=HOSTILE[1], organizer={"email": "nobody@nowhere.example"}), item("ZERO", minutes=0, title=HOSTILE[0])]
    items += [item("A B/C?d#e"), item("..")]
    h.write(items)
    h.sandbox.script({"method": "POST", "fault": "500"}, {"method": "POST", "fault": "503"}, {"method": "POST", "fault": "503"})
    result = h.sync()
    assert result.outcome == "failed_items"
    kinds = {f.kind for f in h.store.failures()}
    assert kinds == {"in_doubt", "transient", "permanent"}, kinds
    return h


def test_every_page_answers_and_escapes_hostile_values(synced):
    h = synced
    app = pages_for(h)
    paths = ["/", "/runs", "/failures", "/failures?all=1", "/failures?kind=in_doubt", "/failures?kind=permanent", "/failures?kind=transient"]
    paths += [f"/failures/{f.id}" for f in h.store.failures()]
    from connector.web.pages import event_url

    paths += [event_url(e.remote_id) for e in h.store.events()] + [event_url("ZERO")]
    for path in paths:
        status, headers, body = call(app, path)
        assert status == 200, (path, body[:500])
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY and headers["x-content-type-options"] == "nosniff"
        assert headers["content-type"] == "text/html; charset=utf-8"
        tags = Tags.of(body)
        assert not tags.scripts and not tags.handlers, (path, tags.scripts, tags.handlers)
        assert not tags.styles, f"{path}: an inline style needs 'unsafe-inline'"
        assert tags.tags <= PAGE_TAGS, (path, tags.tags - PAGE_TAGS)
        assert DEMO_APP_KEY not in body
    status, _, body = call(app, next(p for p in paths if p.startswith("/events/H0")))
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in body


def test_a_remote_id_with_slashes_spaces_and_dots_has_its_page(synced):
    app = pages_for(synced)
    for remote_id in ("A B/C?d#e", ".."):
        from connector.web.pages import event_url

        url = event_url(remote_id)
        status, _, body = call(app, url)
        assert status == 200 and f'<bdi id="remote-id">{remote_id}</bdi>' in body, url
    status, headers, _ = call(app, "/events?remote_id=A%20B%2FC%3Fd%23e")
    assert status == 303 and headers["location"] == "/events/A%20B%2FC%3Fd%23e"
    assert call(app, "/events?remote_id=INT-none")[0] == 303
    assert call(app, "/events/INT-none")[0] == 404


def test_json_twins_are_the_cli_documents(synced):
    h = synced
    config = str(h.config_file())
    app = pages_for(h)
    status, headers, body = call(app, "/?format=json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    cli = json.loads(run_cli("--config", config, "status", "--json").stdout)
    cli["next_run_at"] = None  # no daemon here: the CLI sees a stale heartbeat, the test's pages are told it is fresh
    assert {**json.loads(body), "next_run_at": None} == cli
    assert json.loads(call(app, "/failures?format=json")[2]) == sorted(
        json.loads(run_cli("--config", config, "failures", "list", "--json").stdout), key=lambda f: -f["id"]
    )
    for failure in h.store.failures():
        shown = json.loads(run_cli("--config", config, "failures", "show", str(failure.id), "--json").stdout)
        assert json.loads(call(app, f"/failures/{failure.id}?format=json")[2]) == shown


def test_failure_page_shows_the_request_the_answer_and_the_command_that_fixes_it(synced):
    h = synced
    app = pages_for(h)
    in_doubt = h.store.failures(kind="in_doubt")[0]
    body = call(app, f"/failures/{in_doubt.id}")[2]
    assert f"<code>connector resolve {in_doubt.remote_id} --event-id N</code>" in body
    assert f"<code>connector resolve {in_doubt.remote_id} --recreate</code>" in body
    assert '<pre id="request" dir="auto">' in body and "&#34;title&#34;" in body
    transient = h.store.failures(kind="transient")[0]
    body = call(app, f"/failures/{transient.id}")[2]
    assert f"connector replay {transient.id}" in body and '<pre id="response"' in body
    assert call(app, "/failures/999999")[0] == 404
    assert call(app, "/failures/abc")[0] == 404


def test_a_shell_command_on_a_page_quotes_an_odd_remote_id(harness):
    h = harness
    now = __import__("connector.clock", fromlist=["utcnow"]).utcnow()
    h.store.record_item_failure("INT 3; rm -rf ~", "create", FailureRecord(kind="in_doubt", message="timeout"), now)
    row = h.store.failures()[0]
    assert oncall.fix_commands(row) == ["connector resolve 'INT 3; rm -rf ~' --event-id N", "connector resolve 'INT 3; rm -rf ~' --recreate"]
    plain = dataclasses.replace(row, remote_id="INT-3")
    assert oncall.shell_next_step(plain) == oncall.next_step(plain)


def test_no_secret_reaches_a_page_even_one_stored_unmasked(synced):
    """The store masks secrets before it writes; the pages mask again, every value, before escaping."""
    h = synced
    secret = "page-secret-0123456789"
    db = sqlite3.connect(h.settings.state.path)
    db.execute("UPDATE failures SET message = ?, response = ? WHERE id = (SELECT min(id) FROM failures)", [f"echo {secret}", f'{{"key": "{secret}"}}'])
    db.execute("UPDATE runs SET error = ? WHERE id = 1", [f"boom {secret}"])
    db.commit()
    db.close()
    app = StatusPages(h.settings.state.path, heartbeat_fresh=lambda at: True, redactor=Redactor([secret, *h.settings.secrets()]))
    first = min(f.id for f in h.store.failures(include_resolved=True))
    for path in ("/", "/runs", "/failures", f"/failures/{first}", f"/failures/{first}?format=json", "/?format=json", "/runs?format=json"):
        body = call(app, path)[2]
        assert secret not in body, path
    assert MASK in call(app, f"/failures/{first}")[2]


def test_failures_are_paged_newest_first_without_gaps_or_repeats(harness):
    h = harness
    now = __import__("connector.clock", fromlist=["utcnow"]).utcnow()
    for n in range(2 * PAGE + 7):
        h.store.record_item_failure(f"P{n:03d}", "create", FailureRecord(kind="permanent" if n % 3 else "transient", message=f"m{n}"), now)
    app = pages_for(h)
    seen, url, pages = [], "/failures?format=json", 0
    while url:
        status, headers, body = call(app, url)
        assert status == 200
        seen += [f["id"] for f in json.loads(body)]
        links = dict((rel, link) for link, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', headers.get("link", "")))
        url = links.get("next", "")
        pages += 1
    assert pages == 3 and seen == sorted(seen, reverse=True) and len(set(seen)) == 2 * PAGE + 7
    # back again from the last page
    last = call(app, f"/failures?before={seen[2 * PAGE - 1]}&format=json")  # the third page
    prev = re.search(r'<([^>]+)>; rel="prev"', last[1]["link"]).group(1)
    assert [f["id"] for f in json.loads(call(app, prev)[2])] == seen[PAGE : 2 * PAGE]
    kinds = {f["kind"] for f in json.loads(call(app, "/failures?kind=transient&format=json")[2])}
    assert kinds == {"transient"}
    assert 'id="failures-total">' + str(len(h.store.failures(kind="transient"))) in call(app, "/failures?kind=transient")[2]
    assert call(app, "/failures?before=x")[0] == 400 and call(app, "/failures?kind=nope")[0] == 400


def test_runs_are_paged(harness):
    h = harness
    h.write([item("A")])
    for _ in range(PAGE + 3):
        h.sync()
    app = pages_for(h)
    first = json.loads(call(app, "/runs?format=json")[2])
    assert len(first) == PAGE and first[0]["id"] == PAGE + 3 and set(first[0]) == set(oncall.RUN_COLUMNS)
    rest = json.loads(call(app, f"/runs?before={first[-1]['id']}&format=json")[2])
    assert [r["id"] for r in rest] == [3, 2, 1]


def test_the_pages_only_read(synced, tmp_path):
    h = synced
    app = pages_for(h)
    assert call(app, "/", method="POST")[0] == 405
    with ReadOnlyStore(h.settings.state.path) as reader:
        with pytest.raises(StateError, match="read-only"):
            reader.set_meta("x", "y")
        with pytest.raises(StateError):
            reader._query("INSERT INTO meta(key, value) VALUES ('x', 'y')")
    missing = tmp_path / "nothing" / "connector.db"
    app = StatusPages(missing, heartbeat_fresh=lambda at: True)
    status, _, body = call(app, "/")
    assert status == 503 and "no state database" in body and not missing.exists() and not missing.parent.exists()


def test_a_reader_never_holds_up_a_writer(harness):
    h = harness
    h.write([item("A"), item("B")])
    h.sync()
    with ReadOnlyStore(h.settings.state.path) as reader:
        cursor = reader.db.conn.execute("SELECT * FROM events")  # a read transaction left open mid-way
        cursor.fetchone()
        writer = Store(h.settings.state.path)
        try:
            writer.db.conn.execute("PRAGMA busy_timeout = 100")
            writer.set_meta("written", "while a page reads")  # WAL: no wait on the reader
        finally:
            writer.close()
        cursor.fetchall()
    assert h.store.get_meta("written") == "while a page reads"


def test_page_queries_use_the_indexes(synced):
    h = synced
    with ReadOnlyStore(h.settings.state.path) as reader:
        plans = {
            "open failures": "SELECT * FROM failures WHERE resolved_at IS NULL AND id < 99 ORDER BY id DESC LIMIT 51",
            "open failures of a kind": "SELECT * FROM failures WHERE resolved_at IS NULL AND kind = 'permanent' ORDER BY id DESC LIMIT 51",
            "open by kind": "SELECT kind, count(*) AS n FROM failures WHERE resolved_at IS NULL GROUP BY kind ORDER BY kind",
            "failures of one interview": "SELECT * FROM failures WHERE remote_id = 'H0' ORDER BY id DESC LIMIT 50",
            "calls per pass": "SELECT run_id, action, count(*) AS n FROM operations WHERE run_id IN (1, 2) AND method IS NOT NULL GROUP BY run_id, action",
            "calls of one interview": "SELECT * FROM operations WHERE remote_id = 'H0' ORDER BY id DESC LIMIT 100",
        }
        for what, sql in plans.items():
            plan = " ".join(str(r["detail"]) for r in reader._query("EXPLAIN QUERY PLAN " + sql))
            assert "USING" in plan and "INDEX" in plan, (what, plan)


def test_basic_auth_protects_the_pages_but_not_metrics_and_healthz(synced):
    h = synced
    pages = pages_for(h, username="oncall", password="pw-sëcret:1")
    server = MetricsServer(Metrics(), 0, interval_seconds=10, pages=pages).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        answer = requests.get(base + "/", timeout=5)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert requests.get(base + "/static/status.css", timeout=5).status_code == 401
        assert requests.get(base + "/", auth=("oncall", "wrong"), timeout=5).status_code == 401
        assert requests.get(base + "/", auth=("other", "pw-sëcret:1"), timeout=5).status_code == 401
        assert requests.get(base + "/", headers={"Authorization": "Basic !!!"}, timeout=5).status_code == 401
        good = "Basic " + base64.b64encode("oncall:pw-sëcret:1".encode()).decode()
        answer = requests.get(base + "/failures", headers={"Authorization": good}, timeout=5)
        assert answer.status_code == 200 and "pw-sëcret" not in answer.text
        assert requests.get(base + "/healthz", timeout=5).status_code == 503  # no pass yet: the verdict, no credentials asked
        metrics = requests.get(base + "/metrics", timeout=5)
        assert metrics.status_code == 200 and "connector_passes" in metrics.text and metrics.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        server.stop()


def test_pages_answer_only_to_loopback_names_without_credentials(synced):
    app = pages_for(synced)
    for host in ("127.0.0.1:9100", "localhost:9100", "[::1]:9100", "127.0.0.1"):
        assert call(app, "/", host=host)[0] == 200, host
    status, _, body = call(app, "/", host="attacker.example:9100")  # DNS rebinding: a page elsewhere reading ours
    assert status == 403 and "loopback" in body
    exposed = pages_for(synced, listen_host="0.0.0.0")
    status, _, body = call(exposed, "/", host="10.1.2.3:9100")
    assert status == 403 and "observability.username" in body
    guarded = pages_for(synced, listen_host="0.0.0.0", username="u", password="p")
    assert call(guarded, "/", host="10.1.2.3:9100", auth="Basic " + base64.b64encode(b"u:p").decode())[0] == 200


def test_the_server_binds_ipv6_and_stops_cleanly(synced):
    server = MetricsServer(Metrics(), 0, host="::1", interval_seconds=10, pages=pages_for(synced)).start()
    try:
        answer = requests.get(f"http://[::1]:{server.port}/", timeout=5)
        assert answer.status_code == 200 and "events per state" in answer.text
    finally:
        server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://[::1]:{server.port}/healthz", timeout=2)
    assert not [t for t in threading.enumerate() if t.name == "metrics"]


def test_observability_credentials_go_together_and_the_password_is_a_secret(tmp_path):
    base = {"jobylon": {"app_id": "a", "app_key": "k" * 12}, "source": {"kind": "file", "path": str(tmp_path / "s.json")}}
    with pytest.raises(ConfigError, match="observability.username and observability.password go together"):
        load_settings(data={**base, "observability": {"username": "oncall"}})
    with pytest.raises(ConfigError, match="observability.username") as caught:
        load_settings(data={**base, "observability": {"username": "on:call", "password": "hidden-pw-1"}})
    assert "hidden-pw-1" not in str(caught.value)
    settings = load_settings(data={**base, "observability": {"username": "oncall", "password": "hidden-pw-1"}})
    assert "hidden-pw-1" in settings.secrets() and "hidden-pw-1" not in repr(settings)


def test_the_chart_is_svg_with_a_bar_per_pass_and_escaped_text():
    bars = [chart.PassBar(2, "2026-03-02T10:05:00+00:00", "failed_items", {"update": 3, "weird<&>": 1}, 2), chart.PassBar(1, None, "ok", {"create": 40})]
    svg = str(chart.pass_chart(bars))
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count('<g class="pass"') == 2
    assert 'data-run="1" data-calls="40" data-failed="0"' in svg and 'data-run="2" data-calls="4" data-failed="2"' in svg
    assert "weird<" not in svg and 'class="other"' in svg and "style=" not in svg
    assert svg.index('data-run="1"') < svg.index('data-run="2"'), "oldest on the left"
    assert [chart.nice_ceiling(n) for n in (0, 1, 3, 7, 11, 45, 100_000)] == [1, 1, 5, 10, 20, 50, 100_000]
    assert chart.failed_items({"failed": 2, "in_doubt": 1, "invalid": 4, "created": 9}) == 7
    assert "no passes yet" in str(chart.pass_chart([]))


def test_templates_and_stylesheet_ship_with_the_package():
    import connector.web

    folder = Path(connector.web.__file__).parent
    assert {p.name for p in (folder / "templates").glob("*.html")} >= {"base.html", "status.html", "failures.html", "failure.html", "event.html", "runs.html"}
    assert (folder / "static" / "status.css").is_file() and not list((folder / "static").glob("*.js")), "no script is served"
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"web/templates/*.html"' in pyproject and '"web/static/*.css"' in pyproject


def test_an_interview_page_shows_what_jobylons_webhooks_said(synced):
    from connector.clock import utcnow
    from connector.store.records import WebhookEventRecord
    from connector.store.webhooks import WebhookStore
    from connector.web.pages import event_url

    h = synced
    event = next(e for e in h.store.events() if e.event_id is not None and e.remote_id.startswith("H"))
    tables = WebhookStore(h.store)

    def deliver(video_link: str, content_hash: str) -> str:
        record = WebhookEventRecord(
            event_id=event.event_id,
            status="invited",
            title=HOSTILE[1],
            description="",
            duration=60,
            start_time="2030-01-01T10:00:00",
            timezone="Europe/Stockholm",
            organizer="recruiter@acme.example",
            participants=(1001, 1002),
            rsvps=((1001, "accepted"), (1002, "declined")),
            location=None,
            videoconferencing=True,
            video_link=video_link,
            content_hash=content_hash,
        )
        tables.record_event(record, utcnow())
        tables.settle(event.event_id, content_hash, settled_as="mapped", remote_id=event.remote_id, note=None)
        return call(pages_for(h), event_url(event.remote_id))[2]

    body = deliver("https://meet.example/abc?x=1&y=2", "h1")
    assert 'href="https://meet.example/abc?x=1&amp;y=2"' in body
    assert 'rsvp-accepted">accepted' in body and 'rsvp-declined">declined' in body and "settled as mapped" in body
    body = deliver("javascript:window.__xss=5", "h2")
    tags = Tags.of(body)
    assert not tags.handlers and "javascript:window.__xss=5" in body, "a javascript: link is shown as text, never linked"
    twin = json.loads(call(pages_for(h), event_url(event.remote_id) + "?format=json")[2])
    shown = json.loads(run_cli("--config", str(h.config_file()), "events", "show", event.remote_id, "--json").stdout)
    assert twin["webhooks"] == shown and twin["webhooks"]["event"]["rsvps"] == [
        {"application_id": 1001, "rsvp": "accepted"},
        {"application_id": 1002, "rsvp": "declined"},
    ]
