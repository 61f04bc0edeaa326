"""The sandbox delivers Jobylon's calendar_event webhooks to a real receiver: in-doubt creates heal
themselves (with and without the reference marker), drift is reported or repaired."""

from __future__ import annotations

import json

import pytest
from conftest import Harness, invoke_cli, item

from connector.model import read_marker
from connector.store.webhooks import WebhookStore
from connector.webhooks.service import WebhookService

USER, PASSWORD = "jobylon", "hook-pass-7f3a9c2e"


class Hooked:
    """A harness whose sandbox delivers webhooks to a receiver on the same state database."""

    def __init__(self, tmp_path, sandbox, **sections):
        sections.setdefault("webhooks", {})
        sections["webhooks"] = {"port": 0, "username": USER, "password": PASSWORD, "settle_interval_seconds": 3600, **sections["webhooks"]}
        self.h = Harness(tmp_path, sandbox, **sections)
        self.sandbox = sandbox
        self.service = WebhookService(self.h.settings, self.h.store).start()
        sandbox.use_webhooks(self.service.url, username=USER, password=PASSWORD, retry_scale=0.0001)

    def settle(self):
        """What `connector run` does after each pass (and the service on its timer)."""
        assert self.sandbox.wait_for_webhooks(10)
        return self.service.tick()

    def close(self):
        self.sandbox.use_webhooks(None)
        self.service.stop()
        self.h.close()


@pytest.fixture
def hooked(request, tmp_path, sandbox):
    sections = getattr(request, "param", {})
    hooked = Hooked(tmp_path, sandbox, **sections)
    yield hooked
    hooked.close()


def cli(h, *args):
    return invoke_cli("--config", str(h.config_file()), *args)


@pytest.mark.parametrize("marker", [False, True], ids=["exact match", "reference marker"])
def test_an_in_doubt_create_is_healed_by_its_webhook_and_the_next_pass_creates_nothing(tmp_path, sandbox, marker):
    hooked = Hooked(tmp_path, sandbox, sync={"reference_marker": marker, "concurrency": 1})
    h = hooked.h
    try:
        h.write([item("R1"), item("R2", hour=14)])
        sandbox.script({"method": "POST", "fault": "apply_then_500"})
        sandbox.webhooks.hold()  # Jobylon delivers a moment later
        result = h.sync()
        assert result.counts["in_doubt"] == 1 and result.counts["created"] == 1
        doubted = h.store.failures(kind="in_doubt")[0].remote_id
        before = cli(h, "failures", "list", "--json")
        assert [row["kind"] for row in json.loads(before.stdout)] == ["in_doubt"]
        print("\nfailures list before the webhook:\n" + cli(h, "failures", "list").stdout)

        sandbox.webhooks.hold(False)
        summary = hooked.settle()
        events = h.jobylon_events()
        assert len(events) == 2
        made = next(e for e in events if e["title"] == f"Interview {doubted}")
        assert (read_marker(made["description"]) == doubted) is marker
        row = h.store.event(doubted)
        assert (row.status, row.event_id) == ("synced", made["id"])
        assert h.store.failures() == []  # resolved
        assert summary is not None and summary.linked == []  # healed as it arrived, nothing left for the timer
        healing = [op for op in h.store.operations(doubted) if op.action == "webhook_link"]
        assert len(healing) == 1 and healing[0].event_id == made["id"]
        assert ("marker match" if marker else "exact match") in healing[0].message
        assert json.loads(cli(h, "failures", "list", "--json").stdout) == []
        print("failures list --json after it: " + cli(h, "failures", "list", "--json").stdout + cli(h, "events", "show", doubted).stdout)
        assert json.loads(cli(h, "status", "--json").stdout)["webhooks"]["healed"] == 1

        requests_before = h.api_requests()
        again = h.sync()
        assert again.outcome == "ok" and again.counts["created"] == 0 and again.counts["updated"] == 0
        assert h.api_requests() == requests_before and len(h.jobylon_events()) == 2
    finally:
        hooked.close()


def test_a_webhook_before_the_in_doubt_record_is_settled_later(hooked):
    """The delivery of an apply-then-500 create can arrive while its intent is still open: it waits,
    and the next settle (after the pass) heals it."""
    h = hooked.h
    sandbox = hooked.sandbox
    h.write([item("R1")])
    sandbox.webhooks.hold()
    sandbox.script({"method": "POST", "fault": "apply_then_500"})
    engine = h.engine
    original = engine.executor.store.record_failure

    def deliver_first(*args, **kwargs):  # the delivery comes in while the create's intent is still open
        sandbox.webhooks.hold(False)
        assert sandbox.wait_for_webhooks(10)
        return original(*args, **kwargs)

    engine.executor.store.record_failure = deliver_first
    try:
        h.sync()
    finally:
        engine.executor.store.record_failure = original
    row = WebhookStore(h.store).event(h.jobylon_events()[0]["id"])
    assert row.settled_as == "waiting" and h.store.event("R1").status == "in_doubt"
    summary = hooked.service.tick()
    assert summary is not None and summary.linked == ["R1"]
    assert h.store.event("R1").status == "synced" and h.store.failures() == []


def test_two_in_doubt_creates_with_the_same_fields_are_left_for_a_person(hooked):
    h = hooked.h
    twin = {"title": "Same interview"}
    h.write([item("R1", **twin), item("R2", **twin)])
    hooked.sandbox.script({"method": "POST", "fault": "apply_then_500"}, {"method": "POST", "fault": "apply_then_500"})
    h.sync()
    hooked.settle()
    assert {f.remote_id for f in h.store.failures(kind="in_doubt")} == {"R1", "R2"}
    assert WebhookStore(h.store).counts()["settled_as"] == {"ambiguous": 2}


def test_a_second_event_for_a_mapped_item_is_reported_as_a_likely_duplicate(hooked):
    h = hooked.h
    h.write([item("R1")])
    hooked.sandbox.script({"method": "POST", "fault": "apply_then_500"})
    hooked.service.stop()  # the first event's delivery goes unanswered for now (Jobylon retries)
    h.sync()
    from connector import oncall

    oncall.prepare_recreate(h.store, "R1")  # an operator who did not look in Jobylon first
    h.sync(only=frozenset({"R1"}), replay=True)
    assert len(h.jobylon_events()) == 2
    hooked.service = WebhookService(h.settings, h.store).start()
    hooked.sandbox.use_webhooks(hooked.service.url, username=USER, password=PASSWORD, retry_scale=0.0001)
    first = min(e["id"] for e in h.jobylon_events())
    hooked.sandbox.rsvp(first, 1001, "accepted")  # any change of the first event reaches us now
    hooked.settle()
    drift = h.store.failures(kind="drift")
    assert len(drift) == 1 and drift[0].action == "duplicate" and f"event {first}" in drift[0].message
    assert len(h.jobylon_events()) == 2  # never deleted by itself
    assert "delete it in Jobylon" in json.loads(cli(h, "failures", "show", str(drift[0].id), "--json").stdout)["next_step"]


def test_an_event_cancelled_inside_jobylon_is_reported_as_drift(hooked):
    h = hooked.h
    h.write([item("R1"), item("R2")])
    h.sync()
    hooked.settle()
    assert h.store.failures() == []  # our own creates' deliveries are no drift
    event_id = h.store.event("R1").event_id
    hooked.sandbox.cancel_event(event_id)
    hooked.settle()
    drift = h.store.failures(kind="drift")
    assert [(f.remote_id, f.action) for f in drift] == [("R1", "drift")]
    assert f"event {event_id} was cancelled inside Jobylon" in drift[0].message and 'on_drift = "report"' in drift[0].message
    listed = cli(h, "failures", "--kind", "drift", "--json")
    assert [row["remote_id"] for row in json.loads(listed.stdout)] == ["R1"]
    before = h.api_requests()
    result = h.sync()
    assert result.counts["created"] + result.counts["updated"] + result.counts["recreated"] == 0 and h.api_requests() == before
    assert h.store.failures(kind="drift")  # left alone, still reported


@pytest.mark.parametrize("hooked", [{"sync": {"on_drift": "update"}}], indirect=True)
def test_on_drift_update_puts_the_source_version_back(hooked):
    h = hooked.h
    h.write([item("R1")])
    h.sync()
    hooked.settle()
    event_id = h.store.event("R1").event_id
    hooked.sandbox.change_event(event_id, {"title": "Renamed in Jobylon"})
    hooked.settle()
    assert "title differ" in h.store.failures(kind="drift")[0].message
    result = h.sync()
    assert result.counts["updated"] == 1
    assert h.jobylon_events()[0]["title"] == "Interview R1"
    hooked.settle()
    assert h.store.failures() == []


@pytest.mark.parametrize("hooked", [{"sync": {"on_drift": "recreate"}}], indirect=True)
def test_on_drift_recreate_recreates_a_cancelled_event(hooked):
    h = hooked.h
    h.write([item("R1")])
    h.sync()
    hooked.settle()
    old = h.store.event("R1").event_id
    hooked.sandbox.cancel_event(old)
    hooked.settle()
    result = h.sync()
    assert result.counts["recreated"] == 1
    (event,) = h.jobylon_events()
    assert event["id"] != old and event["status"] == "created"
    hooked.settle()
    assert h.store.failures() == [] and h.store.event("R1").event_id == event["id"]


def test_replay_of_a_drift_failure_puts_the_source_version_back(hooked):
    h = hooked.h
    h.write([item("R1")])
    h.sync()
    hooked.settle()
    event_id = h.store.event("R1").event_id
    hooked.sandbox.change_event(event_id, {"duration": 15})
    hooked.settle()
    (failure,) = h.store.failures(kind="drift")
    h.close()
    replayed = cli(h, "replay", str(failure.id))
    assert replayed.returncode == 0, replayed.stderr
    assert h.jobylon_events()[0]["duration"] == 60


def as_delivery(event: dict) -> dict:
    """A calendar_event delivery of the sandbox's event as it is now, in Jobylon's shape."""
    calendar_event = {
        **{key: event[key] for key in ("id", "title", "description", "duration", "location", "organizer", "start_time", "timezone", "status")},
        "participants": [{"id": application_id, "rsvp": "no_rsvp"} for application_id in event["participants"]],
        "videoconferencing": bool(event.get("videoconferencing")),
    }
    return {"event_type": "calendar_event", "action": "updated", "calendar_event": calendar_event}


def test_a_late_redelivery_of_an_earlier_state_we_sent_is_no_drift_and_a_state_we_never_sent_is(tmp_path, sandbox):
    """Jobylon retries a lost delivery later: the state of our create can arrive after that of our
    update. That older state is ours, not a change made inside Jobylon; a state we never sent is."""
    import requests

    h = Harness(tmp_path, sandbox, webhooks={"port": 0, "username": USER, "password": PASSWORD, "settle_interval_seconds": 3600})
    service = WebhookService(h.settings, h.store).start()  # the sandbox delivers nothing: the test posts each delivery itself

    def deliver(body: dict) -> None:
        answer = requests.post(service.url, json=body, auth=(USER, PASSWORD), timeout=10)
        assert answer.ok, answer.text

    try:
        h.write([item("R1", title="Interview R1 v0")])
        h.sync()
        (created,) = h.jobylon_events()
        h.write([item("R1", title="Interview R1 v1", minutes=45)])
        assert h.sync().counts["updated"] == 1
        (updated,) = h.jobylon_events()
        assert (created["title"], updated["title"]) == ("Interview R1 v0", "Interview R1 v1")

        accepted = as_delivery(updated)
        accepted["calendar_event"]["participants"][0]["rsvp"] = "accepted"
        deliver(accepted)  # the update's delivery first, with the candidate's answer,
        late = requests.post(service.url, json=as_delivery(created), auth=(USER, PASSWORD), timeout=10)
        assert late.ok and late.json() == {"stored": False, "duplicate": False, "stale": True}  # then the create's, retried late
        assert h.store.failures() == []
        tables = WebhookStore(h.store)
        row = tables.event(created["id"])
        assert (row.title, row.settled_as, row.remote_id) == ("Interview R1 v1", "mapped", "R1")  # the newer state kept,
        assert [r.rsvp for r in tables.rsvps(created["id"])] == ["accepted"]  # and the answer not rolled back

        deliver(as_delivery({**updated, "title": "Renamed inside Jobylon"}))  # a state we never sent
        (drift,) = h.store.failures(kind="drift")
        assert drift.remote_id == "R1" and "title differ" in drift.message
        deliver(as_delivery(updated))  # in line again: the report is closed
        assert h.store.failures() == []
        assert h.sync().counts["updated"] == 0
    finally:
        service.stop()
        h.close()


def test_the_delivery_of_an_update_checked_while_its_answer_is_being_recorded_is_no_drift(hooked):
    """The update's delivery is checked as its answer is recorded: the mapping is read before (the
    old payload) and the calls in flight after (the intent gone). Its state is still ours."""
    import threading

    h = hooked.h
    sandbox = hooked.sandbox
    h.write([item("R1", title="Interview R1 v0")])
    h.sync()
    hooked.settle()
    assert h.store.failures() == []
    h.write([item("R1", title="Interview R1 v1")])
    sandbox.webhooks.hold()
    store = h.engine.executor.store
    tables = hooked.service.intake.tables
    record_answered, unanswered_bodies = store.record_answered, tables.unanswered_bodies
    commit, committed = threading.Event(), threading.Event()

    def answered(outcome):  # Jobylon applied the PUT and delivers it before its answer is recorded
        if outcome.intent.method != "PUT":
            return record_answered(outcome)
        sandbox.webhooks.hold(False)
        assert commit.wait(10)
        try:
            return record_answered(outcome)
        finally:
            committed.set()

    def bodies(remote_id):  # the mapping (payload v0) is read; the answer is recorded now
        commit.set()
        assert committed.wait(10)
        return unanswered_bodies(remote_id)

    store.record_answered, tables.unanswered_bodies = answered, bodies
    try:
        assert h.sync().counts["updated"] == 1
        assert sandbox.wait_for_webhooks(10)
    finally:
        store.record_answered, tables.unanswered_bodies = record_answered, unanswered_bodies
    assert commit.is_set() and committed.is_set()
    assert h.store.failures() == []
    (event,) = h.jobylon_events()
    assert WebhookStore(h.store).event(event["id"]).title == "Interview R1 v1"
