"""`connector run` as a real subprocess against the sandbox: schedule, outages, signals, reload,
/metrics and /healthz, alerts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import Harness, item, run_cli

from connector.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=20.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.config = harness.config_file()
        self.log_path = harness.folder / "daemon.log"
        self._log = open(self.log_path, "w")
        env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "--config", str(self.config), "run"], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def runs(self):
        store = Store(self.harness.settings.state.path)
        try:
            return store.runs(100)
        finally:
            store.close()


@pytest.fixture
def daemon_harness(tmp_path, sandbox):
    h = Harness(
        tmp_path,
        sandbox,
        sync={"interval_seconds": 1, "concurrency": 2},
        retry={"attempts": 2, "circuit_breaker_failures": 5, "failed_item_backoff_seconds": [1]},
    )
    started = []

    def start():
        d = Daemon(h)
        started.append(d)
        return d

    h.start_daemon = start
    yield h
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d._log.close()
    h.close()


def test_daemon_syncs_picks_up_changes_and_stops_on_sigterm(daemon_harness):
    h = daemon_harness
    h.write([item("A"), item("B")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 2, what="first sync")
    h.write([item("A", title="moved"), item("B"), item("C")])
    wait_for(lambda: {e["title"] for e in h.jobylon_events()} == {"moved", "Interview B", "Interview C"}, what="change picked up")
    status = json.loads(run_cli("--config", str(d.config), "status", "--json").stdout)
    assert status["next_run_at"] is not None and status["runs"][0]["outcome"] == "ok"
    assert d.stop() == 0
    assert json.loads(run_cli("--config", str(d.config), "status", "--json").stdout)["next_run_at"] is None
    assert "stopped" in d.log()
    assert all(run.outcome != "running" for run in d.runs())


def test_daemon_survives_jobylon_and_source_outages(daemon_harness):
    h = daemon_harness
    h.write([item("A")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="first sync")

    h.sandbox.set_faults(rate=1.0, kinds={"503": 1})  # Jobylon down: every call answered 503
    h.write([item("A"), item("B")])
    wait_for(lambda: any(r.counts.get("failed") for r in d.runs()), what="a pass failing on the outage")
    h.sandbox.set_faults(rate=0.0)
    h.source_path.unlink()
    wait_for(lambda: d.runs()[0].outcome == "source_error", what="a source error recorded")
    assert d.proc.poll() is None, "the daemon keeps running"
    h.write([item("A"), item("B")])
    # B failed transiently during the outage: retried after its backoff, then synced.
    wait_for(lambda: len(h.jobylon_events()) == 2, what="recovery")
    wait_for(lambda: d.runs()[0].outcome == "ok", what="a clean pass")
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_sigterm_lets_the_call_in_flight_finish_and_records_it(daemon_harness):
    h = daemon_harness
    h.data["sync"]["concurrency"] = 1
    h.sandbox.set_faults(latency_ms=400)
    h.write([item(f"R{i}") for i in range(30)])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) >= 2, what="creates under way")
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 10
    created = len(h.jobylon_events())
    assert created < 30, "the pass stopped early"
    store = Store(h.settings.state.path)
    try:
        assert store.orphaned_intents() == []
        synced = [e for e in store.events() if e.status == "synced"]
        assert len(synced) == created, "every call that reached Jobylon was recorded"
    finally:
        store.close()


def test_sighup_reloads_a_good_config_and_keeps_the_old_one_on_a_bad_one(daemon_harness):
    h = daemon_harness
    h.write([item("A")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="first sync")
    d.config.write_text(d.config.read_text().replace("[mapping]\n", "[mapping]\ntitle = \"'Reloaded title'\"\n"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: h.jobylon_events()[0]["title"] == "Reloaded title", what="the reloaded mapping applied")
    d.config.write_text(d.config.read_text().replace("[sync]\n", "[sync]\nconcurency = 3\n"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the old one" in d.log(), what="bad config reported")
    assert "sync.concurency: unknown key" in d.log()
    passes = len(d.runs())
    wait_for(lambda: len(d.runs()) > passes + 1, what="more passes with the old config")
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_invalid_config_refuses_to_start(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[jobylon]\napp_id = "x"\n[source]\nkind = "file"\npath = "x"\n')
    result = subprocess.run([sys.executable, "-m", "connector", "--config", str(config), "run"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "jobylon.app_key: required key is missing" in result.stderr


def test_second_service_on_the_same_database_is_refused_with_its_own_code(daemon_harness):
    h = daemon_harness
    h.write([item("A")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="first sync")
    result = subprocess.run([sys.executable, "-m", "connector", "--config", str(d.config), "run"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 6 and "is served by connector process" in result.stderr
    assert d.proc.poll() is None, "the first service keeps running"
    assert d.stop() == 0


def test_metrics_and_healthz_over_http(daemon_harness):
    h = daemon_harness
    port = free_port()
    h.data["observability"] = {"metrics_port": port}
    h.write([item("A"), item("B", timezone="Nowhere/Land")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="first sync")
    created = 'connector_actions_total{action="create",outcome="created"} 1.0'
    # The event is in Jobylon as soon as its POST is answered; the pass's figures once the pass is recorded.
    metrics = wait_for(lambda: (m := _get(f"http://127.0.0.1:{port}/metrics")) is not None and created in m.text and m, what="the first pass's metrics")
    assert 'connector_failures_open{kind="permanent"} 1.0' in metrics.text
    assert "connector_pass_duration_seconds_bucket" in metrics.text and "connector_last_success_timestamp_seconds" in metrics.text
    assert "connector_source_items 2.0" in metrics.text
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["healthy"] is True
    assert d.stop() == 0


def test_health_turns_503_when_no_pass_ended_within_three_intervals():
    from datetime import datetime, timedelta

    from connector.metrics import Metrics, MetricsServer

    metrics = Metrics()
    server = MetricsServer(metrics, 0, interval_seconds=10).start()
    try:
        answer = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert answer.status_code == 503 and answer.json()["reason"] == "no pass has finished yet"
        metrics.observe_pass(None, 0.1, {}, 0, error="boom")
        assert requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
        metrics.last_pass_end = datetime.now(UTC) - timedelta(seconds=31)
        answer = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert answer.status_code == 503 and "3 intervals" in answer.json()["reason"]
    finally:
        server.stop()


def _get(url):
    try:
        response = requests.get(url, timeout=2)
        return response if response.ok else None
    except requests.RequestException:
        return None


class Webhook:
    def __init__(self):
        self.messages: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.messages.append(body["text"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_alert_on_entering_a_bad_state_and_on_recovery_without_repeats(daemon_harness):
    h = daemon_harness
    hook = Webhook()
    h.data["alerts"] = {"webhook_url": hook.url}
    h.write([item("A")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="first sync")
    time.sleep(1.5)
    assert hook.messages == []
    h.source_path.unlink()
    wait_for(lambda: hook.messages, what="the alert")
    wait_for(lambda: sum(1 for r in d.runs() if r.outcome == "source_error") >= 3, what="the bad state holding for 3 passes")
    assert len(hook.messages) == 1 and "last pass failed (source_error)" in hook.messages[0]
    h.write([item("A")])
    wait_for(lambda: len(hook.messages) == 2, what="the recovery message")
    assert "recovered" in hook.messages[1]
    time.sleep(2)
    assert len(hook.messages) == 2
    assert d.stop() == 0
    hook.server.shutdown()


def test_schedule_from_interval_or_cron_and_a_bad_cron_is_a_config_error(tmp_path, sandbox):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from connector.daemon import make_trigger, validate_schedule
    from connector.errors import ConfigError

    h = Harness(tmp_path, sandbox, sync={"interval_seconds": 30, "jitter_seconds": 5})
    try:
        trigger = make_trigger(h.settings)
        assert isinstance(trigger, IntervalTrigger) and trigger.interval.total_seconds() == 30 and trigger.jitter == 5
        h.data["sync"]["cron"] = "*/5 * * * *"
        assert isinstance(make_trigger(h.settings), CronTrigger)
        h.data["sync"]["cron"] = "every five minutes"
        with pytest.raises(ConfigError, match="sync.cron: not a valid crontab expression"):
            validate_schedule(h.settings)
        result = run_cli("--config", str(h.config_file()), "run")
        assert result.returncode == 2 and "sync.cron" in result.stderr
    finally:
        h.close()


# Issue 13, item 10: /healthz judges by the schedule the passes actually follow: a cron's own gaps,
# and after SIGHUP the new schedule.


def test_healthz_follows_the_cron_not_the_unused_interval(daemon_harness):
    h = daemon_harness
    port = free_port()
    h.data["observability"] = {"metrics_port": port}
    h.data["sync"]["cron"] = "0 0 1 1 *"  # once a year; interval_seconds = 1 stays set and unused
    h.write([item("A")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="the pass at start")
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), what="healthy after the first pass")
    time.sleep(4)  # more than three of the unused 1 s intervals
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200, health.text
    assert health.json()["schedule"] == "cron '0 0 1 1 *' in UTC"
    assert health.json()["healthy_until"].endswith("-01-01T00:00:00+00:00")
    assert d.stop() == 0


def test_healthz_follows_the_schedule_a_sighup_brings(daemon_harness):
    h = daemon_harness
    port = free_port()
    h.data["observability"] = {"metrics_port": port}
    h.write([item("A")])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1, what="first sync")
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), what="healthy")
    h.data["sync"]["interval_seconds"] = 3600
    h.config_file()
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "new config validated" in d.log(), what="the reload")
    passes = len(d.runs())
    time.sleep(4)  # more than three of the old 1 s intervals, far less than one new one
    assert len(d.runs()) <= passes + 1, "the new interval applies"
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200, health.text
    assert health.json()["schedule"] == "every 3600 s"
    assert d.stop() == 0


def test_health_verdict_counts_a_crons_own_runs():
    from datetime import datetime, timedelta

    from connector.metrics import Metrics, PassSchedule

    metrics = Metrics()
    hourly = PassSchedule(cron="0 * * * *")
    metrics.last_pass_end = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)  # a Monday
    assert metrics.health(hourly, now=datetime(2026, 3, 2, 10, 25, tzinfo=UTC))[0], "20 minutes after an hourly pass is healthy"
    assert metrics.health(hourly, now=datetime(2026, 3, 2, 12, 59, tzinfo=UTC))[0], "two runs missed"
    healthy, body = metrics.health(hourly, now=datetime(2026, 3, 2, 13, 0, 1, tzinfo=UTC))
    assert not healthy and body["reason"] == (
        "no pass ended since 2026-03-02T10:05:00+00:00: 3 runs of cron '0 * * * *' in UTC were due by 2026-03-02T13:00:00+00:00"
    )
    weekdays = PassSchedule(cron="0 9 * * mon-fri")
    metrics.last_pass_end = datetime(2026, 3, 6, 9, 5, tzinfo=UTC)  # a Friday
    assert metrics.health(weekdays, now=datetime(2026, 3, 9, 12, 0, tzinfo=UTC))[0], "the weekend is no gap"
    assert metrics.health(weekdays, now=datetime(2026, 3, 11, 8, 59, tzinfo=UTC))[0]
    assert not metrics.health(weekdays, now=datetime(2026, 3, 11, 9, 0, 1, tzinfo=UTC))[0], "Monday, Tuesday and Wednesday missed"
    jittered = PassSchedule(interval_seconds=10, jitter_seconds=5)
    metrics.last_pass_end = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert metrics.health(jittered, now=metrics.last_pass_end + timedelta(seconds=44))[0]
    healthy, body = metrics.health(jittered, now=metrics.last_pass_end + timedelta(seconds=46))
    assert not healthy and body["reason"] == "no pass ended in the last 45 s (3 intervals of 15 s)"


def test_a_server_whose_wakeup_pipe_is_gone_still_stops():
    """stop() wakes the server's loop through its trigger pipe; with that pipe already closed (EBADF,
    seen once in a loaded test run) it closes the sockets itself and the loop ends."""
    import os

    from connector.metrics import Metrics, MetricsServer

    server = MetricsServer(Metrics(), 0).start()
    assert requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 503
    wsgi = server.server
    os.close(wsgi._server.trigger.trigger)
    wsgi.stop()
    wsgi._thread.join(5)
    assert not wsgi._thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)


def test_a_changed_schedule_is_judged_from_the_change():
    from datetime import datetime, timedelta

    from connector.metrics import Metrics, MetricsServer, PassSchedule

    metrics = Metrics()
    server = MetricsServer(metrics, 0, schedule=PassSchedule(cron="0 * * * *")).start()
    try:
        metrics.observe_pass(None, 0.1, {}, 0)
        metrics.last_pass_end = datetime.now(UTC) - timedelta(minutes=50)
        assert requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
        server.set_schedule(PassSchedule(interval_seconds=60))  # SIGHUP: every minute from now on
        assert server.schedule == PassSchedule(interval_seconds=60)
        answer = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert answer.status_code == 200, "the first pass of the new schedule is not due yet"
        assert answer.json()["schedule"] == "every 60 s"
        schedule, since = server._expected
        assert not metrics.health(schedule, now=since + timedelta(seconds=181), since=since)[0]
    finally:
        server.stop()
