"""The whole pass end to end: file source -> engine -> real HTTP to the sandbox -> real SQLite."""

import gc
import time

from conftest import Harness, JsonServer, item, run_cli

from connector.sandbox.directory import FOREIGN_ORGANIZER


def by_title(harness):
    return {e["title"]: e for e in harness.jobylon_events()}


def test_create_update_recreate_delete_end_to_end(harness):
    harness.write([item("A"), item("B"), item("C"), item("D")])
    result = harness.sync()
    assert result.outcome == "ok" and result.counts["created"] == 4
    ids = {e["title"]: e["id"] for e in harness.jobylon_events()}

    harness.write(
        [
            item("A", hour=14),  # reschedule: update in place
            item("B", apps=(1001, 1002)),  # participant change: recreate
            item("C", status="cancelled"),  # cancellation: delete
            item("E"),  # new: create
        ]
    )  # D absent from a complete fetch: delete
    harness.data["sync"]["max_delete_fraction"] = 1.0
    harness.reset_engine()
    result = harness.sync()
    assert result.outcome == "ok", result.error
    assert {k: result.counts[k] for k in ("created", "updated", "recreated", "deleted")} == {"created": 1, "updated": 1, "recreated": 1, "deleted": 2}
    events = by_title(harness)
    assert set(events) == {"Interview A", "Interview B", "Interview E"}
    assert events["Interview A"]["id"] == ids["Interview A"] and events["Interview A"]["start_time"].endswith("T14:00:00")
    assert events["Interview B"]["id"] != ids["Interview B"] and events["Interview B"]["participants"] == [1001, 1002]
    assert harness.store.event("C").status == "deleted" and harness.store.event("D").status == "deleted"
    assert harness.store.event("B").event_id == events["Interview B"]["id"]


def test_unchanged_source_sends_zero_requests(harness):
    harness.write([item(f"R{i}") for i in range(20)])
    harness.sync()
    before = harness.api_requests()
    result = harness.sync()
    assert harness.api_requests() == before
    assert result.counts["unchanged"] == 20 and result.outcome == "ok"


def test_each_updatable_field_updates_and_each_fixed_field_recreates(harness):
    harness.write([item("A", location="Room 1", video=False)])
    harness.sync()
    original = harness.jobylon_events()[0]["id"]
    for change, expected in [
        ({"title": "New title"}, "updated"),
        ({"notes": "New notes"}, "updated"),
        ({"minutes": 30}, "updated"),
        ({"timezone": "Europe/London"}, "updated"),
        ({"organizer": {"email": "ops@initech.example"}}, "recreated"),
        ({"location": "Room 9"}, "recreated"),
        ({"video": True}, "recreated"),
    ]:
        raw = item("A", location="Room 1", video=False)
        raw.update(change)
        harness.write([raw])
        result = harness.sync()
        assert result.counts[expected] == 1, (change, result.counts)
        harness.write([item("A", location="Room 1", video=False)])
        harness.sync()
    assert len(harness.jobylon_events()) == 1
    assert harness.jobylon_events()[0]["id"] != original


def test_404_on_put_recreates_by_default_and_forgets_by_policy(harness):
    harness.write([item("A"), item("B")])
    harness.sync()
    for event in harness.jobylon_events():
        harness.sandbox.delete_event(event["id"])
    harness.write([item("A", title="moved"), item("B")])
    result = harness.sync()
    assert result.counts["recreated"] == 1
    assert [e["title"] for e in harness.jobylon_events()] == ["moved"]

    harness.data["sync"]["on_missing_in_jobylon"] = "forget"
    harness.reset_engine()
    harness.write([item("A", title="moved"), item("B", title="moved too")])
    result = harness.sync()
    assert result.counts["failed"] == 1
    failure = harness.store.failures(remote_id="B")[0]
    assert failure.http_status == 404 and "forgotten" in failure.message
    before = harness.api_requests()
    harness.sync()
    assert harness.api_requests() == before  # parked until the source changes or a replay


def test_404_on_delete_is_success(harness):
    harness.write([item("A")])
    harness.sync()
    harness.sandbox.delete_event(harness.jobylon_events()[0]["id"])
    harness.write([item("A", status="cancelled")])
    result = harness.sync()
    assert result.outcome == "ok" and result.counts["deleted"] == 1
    assert harness.store.event("A").status == "deleted"
    assert harness.store.operations("A")[-1].http_status == 404


def test_400_is_a_permanent_failure_with_jobylons_answer_and_is_parked(harness):
    harness.write([item("A"), item("BAD", organizer={"email": FOREIGN_ORGANIZER})])
    result = harness.sync()
    assert result.outcome == "failed_items" and result.exit_code == 1
    assert result.counts["created"] == 1 and result.counts["failed"] == 1
    failure = harness.store.failures(remote_id="BAD")[0]
    assert failure.kind == "permanent" and failure.http_status == 400
    assert "organizer" in failure.response and '"organizer"' in failure.request
    before = harness.api_requests()
    harness.sync()
    assert harness.api_requests() == before, "a parked item is not sent again while its content is the same"
    harness.write([item("A"), item("BAD")])
    result = harness.sync()
    assert result.counts["created"] == 1
    assert harness.store.failures(remote_id="BAD") == []
    assert harness.store.failures(remote_id="BAD", include_resolved=True)[0].resolved_at


def test_403_stops_the_pass_with_exit_4(harness):
    harness.write([item(f"R{i}") for i in range(10)])
    harness.data["jobylon"]["app_key"] = "wrong-key-000000"
    harness.data["sync"]["concurrency"] = 1
    harness.reset_engine()
    result = harness.sync()
    assert result.outcome == "auth" and result.exit_code == 4
    assert harness.api_requests() == 1
    assert sum(1 for r in result.results if r.outcome == "not_run") == 9
    assert "wrong-key-000000" not in (result.error or "")

    config = harness.config_file()
    cli = run_cli("--config", str(config), "sync")
    assert cli.returncode == 4, cli.stderr
    assert "wrong-key-000000" not in cli.stderr + cli.stdout


def test_429_retry_after_is_honoured(harness):
    harness.write([item("A")])
    harness.sandbox.script({"method": "POST", "fault": "429", "retry_after": 1})
    started = time.monotonic()
    result = harness.sync()
    assert time.monotonic() - started >= 1.0
    assert result.counts["created"] == 1 and harness.api_requests() == 2
    assert len(harness.jobylon_events()) == 1


def test_503_on_put_is_retried_within_the_pass(harness):
    harness.write([item("A")])
    harness.sync()
    harness.write([item("A", title="new")])
    harness.sandbox.script({"method": "PUT", "fault": "503"}, {"method": "PUT", "fault": "drop"})
    result = harness.sync()
    assert result.counts["updated"] == 1
    assert harness.jobylon_events()[0]["title"] == "new"


def test_in_doubt_create_is_never_repeated(harness):
    harness.write([item("A"), item("B")])
    harness.data["sync"]["concurrency"] = 1
    harness.reset_engine()
    harness.sandbox.script({"method": "POST", "fault": "apply_then_500"}, {"method": "POST", "fault": "drop"})
    result = harness.sync()
    assert result.counts["in_doubt"] == 2
    assert len(harness.jobylon_events()) == 1  # apply_then_500 created it; the drop did not

    def posts():
        return sum(1 for r in harness.sandbox.requests_log() if r["method"] == "POST")

    assert posts() == 2
    for _ in range(2):
        harness.sync()
    assert posts() == 2
    assert {r.kind for r in harness.store.failures()} == {"in_doubt"}
    assert harness.store.event("A").status == "in_doubt"


def test_empty_source_guard_refuses_all_deletions(harness):
    harness.write([item(f"R{i}") for i in range(3)])
    harness.sync()
    harness.write([])
    result = harness.sync()
    assert result.outcome == "guard" and result.exit_code == 3
    assert len(harness.jobylon_events()) == 3 and result.counts["held_back"] == 3
    result = harness.sync(allow_mass_delete=True)
    assert result.counts["deleted"] == 3 and harness.jobylon_events() == []


def test_max_deletes_guard(harness):
    harness.data["sync"].update(max_deletes=1, max_delete_fraction=1.0)
    harness.reset_engine()
    harness.write([item(f"R{i}") for i in range(4)])
    harness.sync()
    harness.write([item("R0"), item("R1", title="changed")])
    result = harness.sync()
    assert result.outcome == "guard" and result.counts["updated"] == 1 and len(harness.jobylon_events()) == 4


def test_invalid_items_are_reported_while_valid_ones_sync(harness):
    harness.write(
        [
            item("OK1"),
            item("BADTZ", timezone="Mars/Olympus"),
            item("GAP", start_at="2030-03-31T02:30:00"),
            item("LONG", minutes=481),
            "not an object",
            item("OK2"),
        ]
    )
    result = harness.sync()
    assert result.counts["created"] == 2 and result.counts["invalid"] == 4
    failures = {f.remote_id: f for f in harness.store.failures()}
    assert "timezone: unknown IANA time zone 'Mars/Olympus'" in failures["BADTZ"].message
    assert "does not exist in Europe/Stockholm" in failures["GAP"].message
    assert "duration_minutes" in failures["LONG"].message
    assert "<item #4>" in failures and "expected an object" in failures["<item #4>"].message
    harness.write([item("OK1"), item("BADTZ"), item("GAP"), item("LONG"), item("OK2")])
    result = harness.sync()
    assert result.counts["created"] == 3 and harness.store.failures() == []


def test_unidentifiable_item_holds_back_deletions_by_absence(harness):
    harness.write([item("A"), item("B")])
    harness.sync()
    harness.write([item("A"), {"title": "no id"}])
    result = harness.sync()
    assert result.counts["deleted"] == 0 and len(harness.jobylon_events()) == 2


def test_only_limits_the_pass_to_one_remote_id(harness):
    harness.write([item("A"), item("B")])
    result = harness.sync(only=frozenset({"B"}))
    assert result.counts["created"] == 1
    assert [e["title"] for e in harness.jobylon_events()] == ["Interview B"]


def test_dry_run_sends_and_records_nothing(harness):
    harness.write([item("A")])
    result = harness.sync(dry_run=True)
    assert result.counts["created"] == 1 and harness.api_requests() == 0
    assert harness.store.events() == [] and harness.store.runs() == []


def test_every_pass_leaves_the_garbage_collector_as_it_found_it(harness):
    """A service runs pass after pass in one process: the collector is paused while a pass builds
    its state and the pass's objects are frozen during its calls, and neither may outlive the pass
    (frozen objects are never collected; a paused collector never collects anything)."""
    harness.write([item("A"), item("B")])
    during_calls = []
    harness.engine.on_progress = lambda result: during_calls.append((gc.isenabled(), gc.get_freeze_count() > 0))
    assert harness.sync().counts["created"] == 2
    assert during_calls == [(True, True), (True, True)]  # collecting the calls' own garbage, not the pass's state
    assert gc.isenabled() and gc.get_freeze_count() == 0
    harness.write([item("A"), item("B"), item("C")])
    assert harness.sync(dry_run=True).counts["created"] == 1
    assert gc.isenabled() and gc.get_freeze_count() == 0
    harness.source_path.write_text("[{")
    assert harness.sync().outcome == "source_error"
    assert gc.isenabled() and gc.get_freeze_count() == 0
    harness.write([item("A"), item("B"), item("D")])
    gc.disable()  # a host program that keeps the collector off gets it back off
    try:
        assert harness.sync().counts["created"] == 1
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_sync_cli_prints_summary_and_status(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    h.write([item("A"), item("B", timezone="Nowhere/Here")])
    config = h.config_file()
    result = run_cli("--config", str(config), "sync")
    assert result.returncode == 1, result.stderr  # one invalid item
    for column in ("created", "updated", "recreated", "deleted", "unchanged", "invalid", "failed"):
        assert column in result.stdout
    assert "create A -> created" in result.stderr
    status = run_cli("--config", str(config), "status", "--json")
    import json

    document = json.loads(status.stdout)
    assert document["events"] == {"synced": 1}
    assert document["failures"] == {"permanent": 1}
    assert document["runs"][0]["counts"]["created"] == 1


def test_incremental_fetches_with_a_cursor_and_every_nth_poll_complete(tmp_path, sandbox):
    items = [item("A", updated_at="2026-01-01T10:00:00+00:00"), item("B", updated_at="2026-01-02T10:00:00+00:00")]
    seen = []

    def answer(query, headers):
        seen.append(query)
        since = query.get("changed_since")
        return 200, [i for i in items if since is None or i["updated_at"] > since]

    api = JsonServer(answer)
    h = Harness(tmp_path, sandbox, sync={"full_every": 3})
    h.data["source"] = {
        "kind": "http",
        "url": api.url,
        "since_param": "changed_since",
        "since_overlap_seconds": 0,
    }  # the cursor itself (the overlap: tests/test_incremental.py)
    try:
        first = h.sync(full=None)
        assert first.complete and first.counts["created"] == 2 and seen[-1] == {}
        items[0] = item("A", title="moved", updated_at="2026-01-03T10:00:00+00:00")
        second = h.sync(full=None)
        assert not second.complete and seen[-1] == {"changed_since": "2026-01-02T10:00:00.000+00:00"}
        assert second.counts["updated"] == 1 and second.fetched == 1
        third = h.sync(full=None)
        assert not third.complete and third.counts["deleted"] == 0  # B is absent from a partial fetch: kept
        fourth = h.sync(full=None)
        assert fourth.complete and seen[-1] == {}, "every 3rd poll is complete"
        assert len(h.jobylon_events()) == 2
    finally:
        h.close()
        api.stop()
