"""The status pages in a real browser: headless Chromium (Debian's `chromium`, /usr/bin/chromium)
through Playwright, against `connector run` as a subprocess that has synced the sandbox under faults.

Four things: every page loads with no script, no CSP violation and no page error; the numbers on
the status page are those of `connector status --json`; a failure's link leads to its page with the
command that fixes it; hostile titles render as text (no script runs: the marker they would set on
`window` stays unset). With CONNECTOR_SCREENSHOTS=<folder> the run saves status-page.png and
failure-page.png there (the README shows the ones in docs/).

Without Chromium or Playwright the tests are skipped, except under CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Harness, item, run_cli
from test_daemon import Daemon, free_port, wait_for

from connector.sandbox.directory import DEMO_APP_KEY
from connector.web.app import CONTENT_SECURITY_POLICY

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MARKER = "__xss"
HOSTILE = {
    "H-script": f"<script>window.{MARKER} = 'script'</script>",
    "H-img": f'"><img src=x onerror="window.{MARKER} = \'img\'">',
    "H-attr": f"' autofocus onfocus='window.{MARKER} = \"attr\"' x='",
    "H-svg": f"</bdi></pre><svg onload=window.{MARKER}='svg'>",
    "H-rtl": "\u0645\u0642\u0627\u0628\u0644\u0629 \u0639\u0645\u0644 \u200f(RTL) \u202eevil\u202c & <b>bold</b>",  # bad_items.json's RTL title, and more
}
# Collects what the page's CSP refused; runs before any of the page's own content (and is not
# subject to its CSP: it comes through the DevTools protocol).
CSP_WATCH = "window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"


def _playwright() -> Any:
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "playwright is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests must run under CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with _playwright()() as p:
        yield p


@pytest.fixture
def browser(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium profile per test; every page watched for CSP violations and errors."""
    context = playwright.chromium.launch_persistent_context(
        str(Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
    )
    context.add_init_script(CSP_WATCH)
    context.errors = []  # console errors and uncaught page errors, of every page of this context
    context.on("console", lambda message: context.errors.append(message.text) if message.type == "error" else None)
    context.on("page", lambda page: page.on("pageerror", lambda error: context.errors.append(str(error))))
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`connector run` with the metrics port (and so the pages), after its first pass over a source of
    hostile titles against a sandbox that faults: a 500 to a create (in doubt), 503s (transient), a
    400 (an organizer Jobylon does not know: permanent), and an invalid item."""
    from connector.sandbox import SandboxServer

    folder = tmp_path_factory.mktemp("service")
    with SandboxServer(port=0, retry_after_seconds=1, seed=1).start() as sandbox:
        port = free_port()
        h = Harness(
            folder,
            sandbox,
            sync={"interval_seconds": 3600, "concurrency": 1},
            retry={"attempts": 2, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05, "failed_item_backoff_seconds": [3600]},
            observability={"metrics_port": port},
        )
        items = [item(remote_id, title=title) for remote_id, title in HOSTILE.items()]
        items += [item("INT-3", title=HOSTILE["H-img"], organizer={"email": "nobody@nowhere.example"}), item("INT-4", minutes=0)]
        items += [item(f"INT-{n}") for n in range(10, 16)]
        h.write(items)
        sandbox.script({"method": "POST", "fault": "500"}, {"method": "POST", "fault": "503"}, {"method": "POST", "fault": "503"})
        daemon = Daemon(h)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: any(run.outcome != "running" for run in daemon.runs()), timeout=60, what="the first pass")
            wait_for(lambda: _ok(base + "/healthz"), timeout=30, what="/healthz")
            # an on-call sync beside the service: a reschedule (update) and a cancellation (delete)
            items[-1], items[-2] = item("INT-15", hour=14), item("INT-14", status="cancelled")
            h.write(items)
            run_cli("--config", str(daemon.config), "sync")
            wait_for(lambda: len([run for run in daemon.runs() if run.outcome != "running"]) == 2, what="the on-call sync")
            wait_for(lambda: json.loads(run_cli("--config", str(daemon.config), "status", "--json").stdout)["next_run_at"], what="a heartbeat")
            yield {"base": base, "harness": h, "daemon": daemon, "config": str(daemon.config)}
        finally:
            assert daemon.stop() == 0
            h.close()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def cli_json(service: dict[str, Any], *args: str) -> Any:
    result = run_cli("--config", service["config"], *args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def visit(browser: Any, url: str) -> Any:
    page = browser.new_page()
    answer = page.goto(url)
    assert answer is not None and answer.status == 200, (url, answer and answer.status)
    headers = answer.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY and headers["x-content-type-options"] == "nosniff"
    assert page.evaluate("document.scripts.length") == 0, url
    assert page.evaluate(f"typeof window.{MARKER}") == "undefined", url
    assert page.evaluate("window.__csp") == [], (url, page.evaluate("window.__csp"))
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != "", url
    stylesheet = page.evaluate("document.styleSheets.length && document.styleSheets[0].cssRules.length")
    assert stylesheet > 10, f"{url}: the stylesheet was not applied"
    return page


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("CONNECTOR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_every_page_loads_with_no_script_no_csp_violation_and_no_secret(service, browser):
    base = service["base"]
    failures = cli_json(service, "failures", "list")
    paths = ["/", "/runs", "/failures", "/failures?kind=in_doubt", "/failures?kind=transient", "/failures?kind=permanent", "/failures?all=1"]
    paths += [f"/failures/{f['id']}" for f in failures]
    paths += ["/events/" + remote_id for remote_id in [*HOSTILE, "INT-3", "INT-4", "INT-10"]]
    for path in paths:
        page = visit(browser, base + path)
        assert DEMO_APP_KEY not in page.content(), path
        page.close()
    # the self-check of the watch: an inline style added now is refused and seen
    page = visit(browser, base + "/")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<div style=\"color: red\">x</div>')")
    wait_for(lambda: page.evaluate("window.__csp.length") > 0, timeout=5, what="the CSP to refuse an inline style")
    assert browser.errors == [] or all("Content Security Policy" in e for e in browser.errors), browser.errors


def test_status_page_numbers_are_those_of_status_json(service, browser):
    page = visit(browser, service["base"] + "/")
    status = cli_json(service, "status")
    for state, count in status["events"].items():
        assert page.inner_text(f"#events-{state}") == str(count), state
    for kind in ("transient", "permanent", "in_doubt"):
        assert page.inner_text(f"#failures-{kind}") == str(status["failures"].get(kind, 0)), kind
    assert status["failures"] == {"in_doubt": 1, "permanent": 2, "transient": 1}
    assert page.inner_text("#in-doubt") == str(status["in_doubt"]) == "1"
    assert page.get_attribute("#next-run time", "datetime") == status["next_run_at"]
    last = status["runs"][0]
    assert page.get_attribute(f'#runs tr[data-run="{last["id"]}"] .badge', "class") == f"badge outcome-{last['outcome']}"
    assert page.get_attribute("#health", "data-healthy") == "true"
    assert page.locator("svg.chart g.pass").count() == len(cli_json(service, "status", "--runs", "30")["runs"])
    twin = page.get_attribute("#json-twin", "href")
    assert requests.get(service["base"] + twin, timeout=5).json() == cli_json(service, "status")
    screenshot(page, "status-page.png")


def test_a_failure_link_leads_to_its_page_with_the_command_that_fixes_it(service, browser):
    page = visit(browser, service["base"] + "/")
    page.click("#in-doubt")
    page.wait_for_url("**/failures?kind=in_doubt")
    assert page.inner_text("#failures-total") == "1"
    in_doubt = cli_json(service, "failures", "list", "--kind", "in_doubt")[0]
    page.click(f'tr[data-failure="{in_doubt["id"]}"] a.fid')
    page.wait_for_url(f"**/failures/{in_doubt['id']}")
    shown = cli_json(service, "failures", "show", str(in_doubt["id"]))
    commands = page.inner_text("#commands").splitlines()
    assert commands == [f"connector resolve {in_doubt['remote_id']} --event-id N", f"connector resolve {in_doubt['remote_id']} --recreate"]
    assert in_doubt["remote_id"] in shown["next_step"] and "connector resolve" in page.inner_text("#next-step")
    assert json.loads(page.inner_text("#request")) == shown["request"]
    assert page.inner_text("#failure-message") == shown["message"]
    assert page.evaluate(f"typeof window.{MARKER}") == "undefined"
    screenshot(page, "failure-page.png")
    page.click("#failure-remote-id a")
    page.wait_for_url("**/events/**")
    assert page.inner_text("#remote-id") == in_doubt["remote_id"]
    assert "in doubt" in page.inner_text("#operations")
    transient = cli_json(service, "failures", "list", "--kind", "transient")[0]
    page = visit(browser, service["base"] + f"/failures/{transient['id']}")
    assert page.inner_text("#commands").strip() == f"connector replay {transient['id']}"


def test_hostile_titles_render_as_text_and_run_nothing(service, browser):
    for remote_id, title in HOSTILE.items():
        page = visit(browser, service["base"] + "/events/" + remote_id)
        assert page.inner_text("#remote-id") == remote_id
        shown = page.inner_text("#event-title")
        assert shown == title, (remote_id, shown)
        assert page.locator("#event-title *").count() == 0, "the title made no element"
        payload = json.loads(page.inner_text("#payload"))
        assert payload["title"] == title
        page.close()
    # the failure of the item whose create Jobylon refused (400) carries a hostile title too
    permanent = next(f for f in cli_json(service, "failures", "list", "--kind", "permanent") if f["remote_id"] == "INT-3")
    page = visit(browser, service["base"] + f"/failures/{permanent['id']}")
    assert json.loads(page.inner_text("#request"))["title"] == HOSTILE["H-img"]
    page.focus("#lookup-id")  # a focus or a hover would fire a handler, had one been made
    page.hover("#request")
    assert page.evaluate(f"typeof window.{MARKER}") == "undefined"
    assert page.evaluate("document.querySelectorAll('img, svg:not(.chart), [onerror], [onload], [onfocus]').length") == 0
