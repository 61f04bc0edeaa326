"""Day two: repairs that cannot double an invite, on-call commands beside a running service, a
new database's first pass said plainly, runs left `running` closed, and the failures CLI."""

from __future__ import annotations

import json
import threading
import time

from conftest import Harness, invoke_cli, item, run_cli
from test_daemon import daemon_harness, wait_for  # noqa: F401  (the fixture is used by name)

from connector.clock import utcnow
from connector.store import ProcessLock, Store


def test_forget_on_a_live_mapping_never_leads_to_a_second_event(harness):
    harness.write([item("A")])
    config = harness.config_file()
    assert run_cli("--config", str(config), "sync").returncode == 0
    [event] = harness.jobylon_events()
    result = invoke_cli("--config", str(config), "resolve", "A", "--forget")
    assert result.returncode == 0 and f"event {event['id']} stays in Jobylon" in result.stdout
    for _ in range(2):
        assert run_cli("--config", str(config), "sync", "--full").returncode == 0
    assert [e["id"] for e in harness.jobylon_events()] == [event["id"]], "one interview, one event"
    harness.write([item("A", title="changed at the source")])
    assert run_cli("--config", str(config), "sync").returncode == 0
    assert harness.jobylon_events()[0]["title"] == "Interview A", "a detached interview is not updated either"
    harness.write([])
    assert run_cli("--config", str(config), "sync").returncode == 0
    assert len(harness.jobylon_events()) == 1, "nor deleted when it leaves the source"
    again = invoke_cli("--config", str(config), "resolve", "A", "--event-id", str(event["id"]))
    assert again.returncode == 0, again.stderr


def test_resolve_on_an_unknown_id_or_a_taken_event_is_an_error(harness):
    harness.write([item("A"), item("B")])
    config = harness.config_file()
    assert run_cli("--config", str(config), "sync").returncode == 0
    unknown = invoke_cli("--config", str(config), "resolve", "NOPE", "--forget")
    assert unknown.returncode == 1 and "NOPE: not in the state database" in unknown.stderr
    a, b = (harness.store.event(rid).event_id for rid in ("A", "B"))
    taken = invoke_cli("--config", str(config), "resolve", "A", "--event-id", str(b))
    assert taken.returncode == 1 and "mapped to live event" in taken.stderr
    assert harness.store.event("A").event_id == a, "a refused repair changes nothing"
    assert len(harness.jobylon_events()) == 2


def test_first_pass_on_a_new_database_says_so_and_an_opt_in_limit_holds_creates(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item(f"I{n}") for n in range(3)])
        first = run_cli("--config", str(h.config_file()), "sync")
        assert first.returncode == 0
        db = h.settings.state.path
        assert f"first pass on a new state database at {db}: 3 creates" in first.stderr
        [run] = h.store.runs(1)
        assert run.note == f"first pass on a new state database at {db}: 3 creates"
        h.write([item(f"I{n}") for n in range(4)])
        second = run_cli("--config", str(h.config_file()), "sync")
        assert "first pass" not in second.stderr and h.store.runs(1)[0].note is None

        h.close()
        h.data["state"]["path"] = str(tmp_path / "elsewhere" / "connector.db")  # a wrong path
        h.data["sync"]["first_pass_max_creates"] = 2
        held = run_cli("--config", str(h.config_file()), "sync")
        assert held.returncode == 3 and "above sync.first_pass_max_creates = 2" in held.stderr
        assert len(h.jobylon_events()) == 4, "nothing created a second time"
        allowed = run_cli("--config", str(h.config_file()), "sync", "--allow-mass-create")
        assert allowed.returncode == 0 and len(h.jobylon_events()) == 8
    finally:
        h.close()


def test_a_run_left_running_is_closed_as_interrupted_by_the_next_pass(harness):
    stale = harness.store.start_run(utcnow())
    harness.write([item("A")])
    harness.sync()
    run = next(r for r in harness.store.runs(10) if r.id == stale)
    assert run.outcome == "interrupted" and run.finished_at and "stopped before this pass finished" in run.error


def test_on_call_commands_wait_for_a_pass_in_progress_then_run(harness):
    harness.write([item("A")])
    config = harness.config_file()
    assert run_cli("--config", str(config), "sync").returncode == 0
    lock = ProcessLock(harness.settings.state.path)
    lock.acquire()
    threading.Timer(1.5, lock.release).start()
    started = time.monotonic()
    result = run_cli("--config", str(config), "sync", "--wait", "20")
    assert result.returncode == 0 and time.monotonic() - started >= 1.4
    assert "waiting up to 20 s for the pass in progress" in result.stderr
    lock.acquire()
    try:
        timed_out = run_cli("--config", str(config), "replay", "--all", "--wait", "0.5")
    finally:
        lock.release()
    assert timed_out.returncode == 6 and "(waited 0.5 s)" in timed_out.stderr


def test_replay_and_resolve_with_the_service_running(daemon_harness):  # noqa: F811
    h = daemon_harness
    h.write([item("A"), item("B", organizer={"email": "nobody@elsewhere.example"})])
    d = h.start_daemon()
    wait_for(lambda: len(h.jobylon_events()) == 1 and h.store.failures(), what="first pass with one failure")
    h.write([item("A"), item("B")])
    [failure] = h.store.failures()
    replay = run_cli("--config", str(d.config), "replay", str(failure.id))
    assert replay.returncode == 0, replay.stderr
    assert len(h.jobylon_events()) == 2 and h.store.failures() == []
    forget = run_cli("--config", str(d.config), "resolve", "B", "--forget")
    assert forget.returncode == 0, forget.stderr
    passes = len(d.runs())
    wait_for(lambda: len(d.runs()) > passes + 1, what="service passes after the repair")
    assert len(h.jobylon_events()) == 2 and d.proc.poll() is None
    assert d.stop() == 0


def test_failures_cli_kind_option_next_step_and_replay_with_in_doubt(harness):
    harness.write([item("A"), item("B")])
    harness.sandbox.script({"method": "POST", "fault": "500"})
    config = harness.config_file()
    assert run_cli("--config", str(config), "sync").returncode == 1
    listed = json.loads(invoke_cli("--config", str(config), "failures", "--kind", "in_doubt", "--json").stdout)
    assert [f["kind"] for f in listed] == ["in_doubt"]
    shown = invoke_cli("--config", str(config), "failures", "show", str(listed[0]["id"]))
    assert "next step:" in shown.stdout and "--event-id N" in shown.stdout
    replay = invoke_cli("--config", str(config), "replay", "--all")
    assert replay.returncode == 1 and "1 in-doubt create(s) not replayed" in replay.stderr


def test_a_service_killed_by_a_second_signal_leaves_no_run_running(daemon_harness):  # noqa: F811
    h = daemon_harness
    h.data["sync"]["concurrency"] = 1
    h.sandbox.set_faults(latency_ms=1500)
    h.write([item(f"I{n}") for n in range(20)])
    d = h.start_daemon()
    wait_for(lambda: h.jobylon_events(), what="a pass in progress")
    d.proc.send_signal(2)
    time.sleep(0.3)
    d.proc.send_signal(2)
    assert d.proc.wait(10) == 130
    h.sandbox.set_faults(latency_ms=0)
    assert any(r.outcome == "running" for r in d.runs())
    assert run_cli("--config", str(d.config), "sync").returncode in (0, 1)
    assert all(r.outcome != "running" for r in d.runs())
    store = Store(h.settings.state.path)
    try:
        assert "interrupted" in [r.outcome for r in store.runs(100)]
    finally:
        store.close()
