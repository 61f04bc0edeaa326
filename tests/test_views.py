"""What people read: tables at 80 columns, labels, and the log lines around a pass."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from conftest import Harness, invoke_cli, item
from rich.console import Console

from connector import views
from connector.plan import Plan
from connector.results import ActionResult, PassResult

LONG_ID = "GH-2026-8a7f2c91-4b3e"  # 21 characters, as some partner systems make them
IDS = ["INT-2026-000123", LONG_ID, "A"]


def failure_row(number: int, remote_id: str, **changes):
    row = {
        "id": number,
        "remote_id": remote_id,
        "action": "create",
        "kind": "in_doubt",
        "http_status": 502,
        "message": "POST /p1/events/: HTTP 502 Bad Gateway after the body was sent; the create may have reached Jobylon",
        "attempts": 1,
        "first_at": "2026-12-01T10:00:00+00:00",
        "last_at": "2026-12-01T10:00:05+00:00",
        "next_attempt_at": None,
        "resolved_at": None,
    }
    row.update(changes)
    return row


def render(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def assert_whole(text: str, *ids: str) -> None:
    for remote_id in ids:
        assert re.search(rf"(?<![\w-]){re.escape(remote_id)}(?![\w-])", text), f"{remote_id!r} is split or cut:\n{text}"


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_failures_table_keeps_every_id_on_one_line_and_words_whole(width):
    rows = [
        failure_row(17, IDS[0]),
        failure_row(1234, IDS[1], kind="transient", http_status=503, attempts=12, message="HTTP 503: Service Unavailable"),
        failure_row(5, IDS[2]),
    ]
    text = render(views.failures_table(rows, "open failures"), width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert_whole(text, *IDS, "1234", "in_doubt", "transient")
    for word in ("Gateway", "Jobylon", "Unavailable"):  # the message wraps at spaces, not inside words
        assert word in text, text
    # what is shown at each width: the low-value columns go first
    header = text.splitlines()[2]
    assert ("next attempt" in header or "next" in header) == (width >= 150)
    assert ("last" in header) == (width >= 120)
    assert ("action" in header) == (width >= 100)


def test_failures_table_cuts_an_id_too_long_for_the_terminal_instead_of_folding_it():
    rows = [failure_row(1, "x" * 70)]
    text = render(views.failures_table(rows, "open failures"), 80)
    assert "x" * 20 in text and "…" in text
    assert sum(1 for line in text.splitlines() if "x" * 5 in line) == 1


def pass_result(outcome: str) -> PassResult:
    return PassResult(run_id=3, outcome=outcome, counts={}, complete=True, planned=Plan())


def test_plan_replay_and_runs_tables_keep_ids_whole_at_80_columns():
    result = pass_result("failed_items")
    result.results = [ActionResult("create", remote_id, 7, "failed", "HTTP 400: organizer is not a user of an account you can access") for remote_id in IDS]
    assert_whole(render(views.replay_table(result, IDS), 80), *IDS)
    assert_whole(render(views.plan_table(Plan()), 80), "plan:")
    runs = [
        {
            "id": 12,
            "started_at": "2026-12-01T10:00:00+00:00",
            "duration_ms": 123456,
            "outcome": "failed_items",
            "complete_fetch": True,
            "counts": {"created": 3000, "invalid": 2},
            "error": None,
        }
    ]
    assert_whole(render(views.runs_table(runs), 80), "12-01 10:00:00", "failed_items", "3000")
    assert_whole(render(views.runs_table(runs), 120), "2026-12-01 10:00:00", "failed_items", "123456", "complete")


def test_replay_table_title_names_the_command():
    result = pass_result("ok")
    assert "replay: ok" in render(views.replay_table(result, ["A"]), 80)
    assert "resolve --recreate: ok" in render(views.replay_table(result, ["A"], title="resolve --recreate"), 80)


def test_counts_tables_name_what_they_count():
    assert "kind" in render(views.counts_table("open failures", {"permanent": 2}), 80).splitlines()[2]
    assert "state" in render(views.counts_table("events", {"synced": 2}), 80).splitlines()[2]


def test_status_labels_failure_counts_by_kind(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    h.write([item("A"), item("B", timezone="Nowhere/Here")])
    h.sync()
    h.close()
    out = invoke_cli("--config", str(h.config_file()), "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    events_at = next(i for i, line in enumerate(lines) if line.strip() == "events")
    failures_at = next(i for i, line in enumerate(lines) if line.strip() == "open failures")
    assert "state" in lines[events_at + 2] and "kind" not in lines[events_at + 2]
    assert "kind" in lines[failures_at + 2] and "state" not in lines[failures_at + 2]


def test_resolve_recreate_titles_its_table_resolve(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    h.write([item("A")])
    sandbox.script({"method": "POST", "fault": "500"})  # answered 500, not applied: in doubt, not in Jobylon
    h.sync()
    assert [f.kind for f in h.store.failures()] == ["in_doubt"] and h.jobylon_events() == []
    h.close()
    out = invoke_cli("--config", str(h.config_file()), "resolve", "A", "--recreate")
    assert "resolve --recreate:" in out.stdout and "replay:" not in out.stdout, out.stdout + out.stderr


# -- log lines ------------------------------------------------------------------------------------


class Captured:
    """setup_logging's handler writing into a list, the root logger put back after."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@pytest.fixture
def captured(monkeypatch):
    from connector.logs import setup_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sink = Captured()
    monkeypatch.setattr(sys, "stderr", sink)
    setup_logging("text", "INFO")
    yield sink
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_an_overrunning_pass_is_said_in_our_words_not_apschedulers(captured):
    from apscheduler.schedulers.background import BackgroundScheduler

    release = threading.Event()
    scheduler = BackgroundScheduler()
    scheduler.add_job(release.wait, "interval", seconds=0.3, max_instances=1, coalesce=True, id="poll", name="sync pass", next_run_time=None)
    scheduler.start()
    try:
        scheduler.get_job("poll").modify(next_run_time=datetime.now(UTC))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("skipped" in line for line in captured.lines):
            time.sleep(0.05)
    finally:
        release.set()
        scheduler.shutdown(wait=True)
    skipped = [line for line in captured.lines if "skipped" in line]
    assert skipped, captured.lines
    assert not any("maximum number of running instances" in line for line in captured.lines)
    assert "WARNING poll skipped: the previous pass is still running" in skipped[0]


def test_sighup_error_is_one_readable_line(tmp_path, captured):
    from connector.daemon import Daemon

    bad = tmp_path / "config.toml"
    bad.write_text('[jobylon]\napp_id = "a"\n[sync]\ninterval_seconds = -1\nconcurrency = 0\n')
    assert Daemon.reload(SimpleNamespace(config_path=str(bad))) is False  # type: ignore[arg-type]
    lines = [line for line in captured.lines if "SIGHUP" in line]
    assert len(lines) == 1 and "\\n" not in lines[0], lines
    assert "interval_seconds" in lines[0] and "concurrency" in lines[0]


def test_demo_prints_each_heading_before_the_passs_log_lines():
    result = subprocess.run([sys.executable, "-m", "connector", "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if "pass 1: first sync" in line and "─" in line)
    warning = next(i for i, line in enumerate(lines) if "invalid item INT-1007" in line)
    assert heading < warning, "\n".join(lines[: warning + 3])


def test_sync_on_a_terminal_shows_per_call_lines_only_with_v(tmp_path, sandbox):
    """A pseudo-terminal on stderr: the progress bar, failures, and per-call lines only with -v."""
    import os
    import pty

    h = Harness(tmp_path, sandbox)
    h.write([item(f"T{i}") for i in range(5)] + [item("BAD", timezone="Nowhere/Here")])
    config = h.config_file()

    def sync_on_a_tty(*flags: str) -> str:
        leader, follower = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "connector", *flags, "--config", str(config), "sync", "--full"],
                stdout=subprocess.PIPE,
                stderr=follower,
                env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
            )
            os.close(follower)
            follower = -1
            chunks = []
            while True:
                try:
                    data = os.read(leader, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            proc.wait(timeout=60)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            os.close(leader)
            if follower != -1:
                os.close(follower)

    quiet = sync_on_a_tty()
    assert "invalid item BAD" in quiet  # failures always
    assert "create T0 -> created" not in quiet and "create T" not in quiet
    h.write([item(f"T{i}", title=f"changed {i}") for i in range(5)] + [item("BAD", timezone="Nowhere/Here")])
    loud = sync_on_a_tty("-v")
    assert "update T0 -> updated" in loud, loud


def test_summary_table_turns_to_one_line_per_count_where_a_row_would_not_fit():
    result = pass_result("failed_items")
    result.counts = {"created": 3000, "updated": 1, "skipped": 2, "in_doubt": 1}
    narrow = render(views.summary_table(result), 80)
    assert "…" not in narrow and max(len(line) for line in narrow.splitlines()) <= 80
    assert re.search(r"recreated\s+│\s+0", narrow) and re.search(r"created\s+│\s+3000", narrow)
    wide = render(views.summary_table(result), 120)
    assert "recreated" in wide.splitlines()[2] and "in doubt" in wide.splitlines()[2]
