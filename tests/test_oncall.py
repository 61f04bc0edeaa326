"""The failure lifecycle across polls and the on-call commands: failures, replay, resolve, check."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import Harness, invoke_cli, item, run_cli

from connector.clock import utcnow
from connector.sandbox.directory import FOREIGN_ORGANIZER


class Clock:
    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


def test_transient_failure_is_retried_on_its_schedule_then_resolved(harness):
    clock = Clock()
    harness.engine.clock = clock
    harness.write([item("A")])
    harness.sandbox.script(*[{"method": "POST", "fault": "503"}] * 4)  # every attempt of this pass
    result = harness.sync()
    assert result.counts["failed"] == 1
    failure = harness.store.failures()[0]
    assert failure.kind == "transient" and failure.attempts == 1 and failure.next_attempt_at

    before = harness.api_requests()
    clock.advance(59)
    harness.sync()
    assert harness.api_requests() == before, "not retried before failed_item_backoff_seconds[0] = 60"

    harness.sandbox.script(*[{"method": "POST", "fault": "503"}] * 4)
    clock.advance(2)
    harness.sync()
    failure = harness.store.failures()[0]
    assert failure.attempts == 2
    assert failure.next_attempt_at >= (clock.now + timedelta(seconds=299)).isoformat(timespec="milliseconds")

    clock.advance(301)
    result = harness.sync()
    assert result.counts["created"] == 1 and harness.store.failures() == []
    history = harness.store.failures(include_resolved=True)
    assert len(history) == 1 and history[0].resolved_at and history[0].attempts == 2


def test_in_doubt_resolved_with_event_id_is_updated_not_created_again(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A")])
        sandbox.script({"method": "POST", "fault": "apply_then_500"})
        config = h.config_file()
        assert run_cli("--config", str(config), "sync").returncode == 1
        [event] = h.jobylon_events()
        listing = json.loads(invoke_cli("--config", str(config), "failures", "list", "--kind", "in_doubt", "--json").stdout)
        assert [f["remote_id"] for f in listing] == ["A"]
        shown = json.loads(invoke_cli("--config", str(config), "failures", "show", str(listing[0]["id"]), "--json").stdout)
        assert shown["request"]["title"] == "Interview A" and shown["kind"] == "in_doubt" and shown["http_status"] == 500

        replayed = invoke_cli("--config", str(config), "replay", "--all")
        assert "in doubt; not replayed" in replayed.stderr
        assert len(h.jobylon_events()) == 1

        resolved = invoke_cli("--config", str(config), "resolve", "A", "--event-id", str(event["id"]))
        assert resolved.returncode == 0, resolved.stderr
        h.write([item("A", title="After resolve")])
        result = run_cli("--config", str(config), "sync")
        assert result.returncode == 0, result.stderr
        events = h.jobylon_events()
        assert len(events) == 1 and events[0]["id"] == event["id"] and events[0]["title"] == "After resolve"
        ops = [o.action for o in h.store.operations("A")]
        assert "resolve" in ops and ops.count("create") == 1
    finally:
        h.close()


def test_resolve_recreate_and_forget(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A"), item("B")])
        sandbox.script({"method": "POST", "fault": "drop"}, {"method": "POST", "fault": "drop"})
        config = h.config_file()
        run_cli("--config", str(config), "sync")
        assert h.jobylon_events() == []  # dropped before processing: nothing reached Jobylon
        result = invoke_cli("--config", str(config), "resolve", "A", "--recreate")
        assert result.returncode == 0, result.stderr
        assert [e["title"] for e in h.jobylon_events()] == ["Interview A"]
        result = invoke_cli("--config", str(config), "resolve", "B", "--forget")
        assert result.returncode == 0 and h.store.event("B").status == "detached"
        assert run_cli("--config", str(config), "sync").returncode == 0
        assert [e["title"] for e in h.jobylon_events()] == ["Interview A"], "a forgotten interview is never created again"
        assert invoke_cli("--config", str(config), "resolve", "A", "--recreate").returncode == 1  # live event: refused
        usage = invoke_cli("--config", str(config), "resolve", "A")
        assert usage.returncode == 2
    finally:
        h.close()


def test_permanent_failure_replayed_after_a_fix_at_the_source(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A", organizer={"email": FOREIGN_ORGANIZER})])
        config = h.config_file()
        assert run_cli("--config", str(config), "sync").returncode == 1
        [failure] = json.loads(invoke_cli("--config", str(config), "failures", "list", "--json").stdout)
        assert failure["kind"] == "permanent" and failure["http_status"] == 400 and failure["attempts"] == 1
        replay = invoke_cli("--config", str(config), "replay", str(failure["id"]))
        assert replay.returncode == 1 and "failed" in replay.stdout  # same data, same answer
        assert json.loads(invoke_cli("--config", str(config), "failures", "list", "--json").stdout)[0]["attempts"] == 2
        h.write([item("A")])
        replay = invoke_cli("--config", str(config), "replay", "--remote-id", "A")
        assert replay.returncode == 0 and "created" in replay.stdout
        assert json.loads(invoke_cli("--config", str(config), "failures", "list", "--json").stdout) == []
        everything = json.loads(invoke_cli("--config", str(config), "failures", "list", "--all", "--json").stdout)
        assert everything[0]["resolved_at"]
    finally:
        h.close()


def test_status_json_document(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A"), item("B", minutes=0)])
        config = h.config_file()
        run_cli("--config", str(config), "sync")
        document = json.loads(invoke_cli("--config", str(config), "status", "--json").stdout)
        assert set(document) == {"runs", "events", "failures", "in_doubt", "next_run_at"}
        run = document["runs"][0]
        assert set(run) == {"id", "started_at", "finished_at", "outcome", "complete_fetch", "counts", "duration_ms", "error"}
        assert run["outcome"] == "failed_items" and run["counts"]["created"] == 1 and run["complete_fetch"] is True
        assert document["events"] == {"synced": 1} and document["failures"] == {"permanent": 1} and document["next_run_at"] is None
        plan = json.loads(invoke_cli("--config", str(config), "plan", "--json").stdout)
        assert plan == [{"action": "invalid", "remote_id": "B", "event_id": None, "reason": "duration_minutes: duration must be 1..480 minutes, got 0"}]
    finally:
        h.close()


def test_check_tells_apart_accepted_refused_and_unreachable(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A")])
        ok = invoke_cli("--config", str(h.config_file()), "check")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "reachable, credentials accepted" in ok.stdout
        assert sandbox.events() == []

        h.write([item("A"), item("B", timezone="Moon/Base")])
        h.data["jobylon"]["app_key"] = "not-the-key-1234"
        refused = invoke_cli("--config", str(h.config_file()), "check")
        assert refused.returncode == 1
        assert "credentials refused" in refused.stdout and "B: timezone: unknown IANA time zone 'Moon/Base'" in refused.stdout
        assert "not-the-key-1234" not in refused.stdout + refused.stderr

        h.data["jobylon"]["base_url"] = "http://127.0.0.1:9"
        h.data["jobylon"]["app_key"] = "demo-key-0123456789"
        unreachable = invoke_cli("--config", str(h.config_file()), "check")
        assert unreachable.returncode == 1 and "unreachable" in unreachable.stdout
    finally:
        h.close()


def test_every_command_has_help():
    from connector.cli import cli

    def walk(group, prefix=()):
        for name, command in group.commands.items():
            yield prefix + (name,), command
            if hasattr(command, "commands"):
                yield from walk(command, prefix + (name,))

    for path, command in walk(cli):
        assert command.help, path
        result = run_cli(*path, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout, path


def _failure(store, remote_id: str, kind: str) -> None:
    from connector.store import FailureRecord

    store.record_item_failure(remote_id, "create", FailureRecord(kind=kind, message=f"{kind} failure"), utcnow())


def test_replay_selection_sets_in_doubt_creates_apart_and_names_unknown_ids(tmp_path):
    from connector.errors import UserError
    from connector.oncall import select_replay
    from connector.store import Store

    store = Store(tmp_path / "c.db")
    try:
        for remote_id, kind in (("T", "transient"), ("P", "permanent"), ("D", "in_doubt")):
            _failure(store, remote_id, kind)
        ids = {f.remote_id: f.id for f in store.failures()}
        everything = select_replay(store, replay_all=True)
        assert everything.remote_ids == {"T", "P"} and everything.in_doubt == ("D",)
        assert select_replay(store, kind="permanent").remote_ids == {"P"}
        assert select_replay(store, failure_ids=(ids["T"],), remote_ids=("X",)).remote_ids == {"T", "X"}
        with pytest.raises(UserError, match="no failure with id 999"):
            select_replay(store, failure_ids=(999,))
    finally:
        store.close()


def test_resolve_refuses_what_would_make_a_second_event(tmp_path):
    from connector.errors import UserError
    from connector.oncall import prepare_recreate, resolve_with_event
    from connector.store import EventState, Store

    store = Store(tmp_path / "c.db")
    try:
        with pytest.raises(UserError, match="not in the state database"):
            resolve_with_event(store, "NOPE", 5)
        with pytest.raises(UserError, match="not in the state database"):
            prepare_recreate(store, "NOPE")
        intent = store.write_intent(run_id=None, remote_id="L", action="create", method="POST", event_id=None, request={}, content_hash=None, now=utcnow())
        store.record_success(intent, state=EventState(event_id=41, status="synced"), http_status=201, now=utcnow())
        with pytest.raises(UserError, match="mapped to live event 41"):
            prepare_recreate(store, "L")
        with pytest.raises(UserError, match="mapped to live event 41"):
            resolve_with_event(store, "L", 42)
        assert store.event("L").event_id == 41, "a refused repair changes nothing"
        store.write_intent(run_id=None, remote_id="M", action="create", method="POST", event_id=None, request={"title": "m"}, content_hash=None, now=utcnow())
        with pytest.raises(UserError, match="event 41 is already mapped to L"):
            resolve_with_event(store, "M", 41)
        assert "mapped to event 42" in resolve_with_event(store, "M", 42)
        row = store.event("M")
        assert row.event_id == 42 and row.mutable_hash is None, "the next pass sends one PUT"
        assert store.operations("M")[-1].action == "resolve"
    finally:
        store.close()
