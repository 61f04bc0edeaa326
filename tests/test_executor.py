"""The call path on its own: one action kind at a time against the sandbox over real HTTP, the error
classes deciding the failure kind, the circuit breaker, the crash hook's parsing, and which actions
call Jobylon at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import item

from connector.errors import AuthError, ExitCode, InDoubtError, JobylonError, NotFoundError, PermanentError, TransientError
from connector.executor import Executor, needs_call
from connector.model import InvalidItem
from connector.plan import Create, Delete, Invalid, Skip
from connector.recovery import CrashPoint
from connector.results import EXIT_CODES, SUCCESSFUL_OUTCOMES, ActionResult, is_success, pass_outcome
from connector.workers import CircuitBreaker


def _interview(harness, remote_id: str, **changes):
    [interview] = harness.engine.mapper.map_all([item(remote_id, **changes)]).interviews
    return interview


def _executor(harness) -> Executor:
    engine = harness.engine
    return Executor(harness.settings, harness.store, engine.client, engine.redactor, clock=lambda: datetime.now(UTC))


def test_create_writes_intent_then_outcome_and_maps_the_event(harness):
    executor = _executor(harness)
    run_id = harness.store.start_run(datetime.now(UTC))
    [result] = executor.run_all(run_id, [Create(_interview(harness, "A"))])
    assert result.outcome == "created" and result.done and result.event_id == harness.jobylon_events()[0]["id"]
    row = harness.store.event("A")
    assert row.status == "synced" and row.event_id == result.event_id and row.live
    assert harness.store.orphaned_intents() == []
    [operation] = harness.store.operations("A")
    assert (operation.method, operation.outcome, operation.http_status, operation.run_id) == ("POST", "ok", 201, run_id)


@pytest.mark.parametrize(
    ("fault", "outcome", "kind", "status"),
    [("500", "in_doubt", "in_doubt", "in_doubt"), ("503", "failed", "transient", "failed")],
)
def test_a_failed_create_is_recorded_as_its_error_class_says(harness, fault, outcome, kind, status):
    harness.sandbox.script(*[{"method": "POST", "fault": fault}] * 5)
    executor = _executor(harness)
    [result] = executor.run_all(harness.store.start_run(datetime.now(UTC)), [Create(_interview(harness, "A"))])
    assert result.outcome == outcome
    [failure] = harness.store.failures()
    assert failure.kind == kind and failure.http_status == int(fault) and failure.request_data["title"] == "Interview A"
    assert (failure.next_attempt_at is not None) == (kind == "transient"), "only transient failures back off"
    assert harness.store.event("A").status == status


def test_a_bug_in_one_call_is_recorded_against_its_item_and_the_rest_go_on(harness):
    class BrokenForB:
        def __init__(self, client):
            self.client = client

        def create(self, payload, text=None):
            if payload["title"] == "Interview B":
                raise RuntimeError("a bug")
            return self.client.create(payload, text=text)

    engine = harness.engine
    executor = Executor(harness.settings, harness.store, BrokenForB(engine.client), engine.redactor, clock=lambda: datetime.now(UTC))  # type: ignore[arg-type]
    results = executor.run_all(harness.store.start_run(datetime.now(UTC)), [Create(_interview(harness, rid)) for rid in ("A", "B", "C")])
    assert [r.outcome for r in results] == ["created", "failed", "created"]
    [failure] = harness.store.failures()
    assert failure.remote_id == "B" and failure.kind == "transient" and "unexpected RuntimeError: a bug" in failure.message
    assert failure.next_attempt_at is not None


@pytest.mark.parametrize("workers", [1, 2])
def test_every_answer_is_recorded_once_and_before_its_worker_records_a_later_failure(harness, workers):
    """A worker carries an answered call's outcome into its next intent: each call still ends in
    exactly one operation, in order, and the last call of each worker is recorded too."""

    class RefusesB:
        def __init__(self, client):
            self.client = client

        def create(self, payload, text=None):
            if payload["title"] == "Interview B":
                raise PermanentError("422 from Jobylon: title refused", method="POST", http_status=422)
            return self.client.create(payload, text=text)

    engine = harness.engine
    settings = harness.settings.model_copy(update={"sync": harness.settings.sync.model_copy(update={"concurrency": workers})})
    executor = Executor(settings, harness.store, RefusesB(engine.client), engine.redactor, clock=lambda: datetime.now(UTC))  # type: ignore[arg-type]
    calls = [Create(_interview(harness, rid)) for rid in ("A", "B", "C", "D", "E")]
    results = executor.run_all(harness.store.start_run(datetime.now(UTC)), calls)
    assert [r.outcome for r in results] == ["created", "failed", "created", "created", "created"]
    assert harness.store.orphaned_intents() == []
    operations = sorted(harness.store.operations(), key=lambda o: o.id)
    assert sorted((o.remote_id, o.outcome) for o in operations) == [("A", "ok"), ("B", "permanent"), ("C", "ok"), ("D", "ok"), ("E", "ok")]
    if workers == 1:
        assert [o.remote_id for o in operations] == ["A", "B", "C", "D", "E"]
    assert {r.remote_id: harness.store.event(r.remote_id).event_id for r in results if r.done} == {r.remote_id: r.event_id for r in results if r.done}
    assert len(harness.jobylon_events()) == 4


def test_a_stopped_executor_starts_no_call_and_says_why(harness):
    executor = _executor(harness)
    executor.stop("shutdown")
    executor.stop("auth", "ignored: the first reason wins")
    [result] = executor.run_all(harness.store.start_run(datetime.now(UTC)), [Create(_interview(harness, "A"))])
    assert result.outcome == "not_run" and "pass stopped (shutdown)" in result.message
    assert executor.stop_reason == "shutdown" and executor.stop_detail is None
    assert harness.jobylon_events() == [] and harness.store.event("A") is None
    executor.reset()
    assert executor.stop_reason is None


def test_actions_without_a_call_are_recorded_without_one(harness):
    executor = _executor(harness)
    now = datetime.now(UTC)
    invalid = InvalidItem("BAD", 0, (), content_hash="h")
    actions = [Invalid(invalid, None), Skip("S", 5, "needs a person", report=True, content_hash="c"), Delete("D", None, "cancelled")]
    results = executor.record_without_call(1, actions, now)
    assert [(r.action, r.outcome) for r in results] == [("invalid", "invalid"), ("skip", "skipped"), ("delete", "deleted")]
    assert {f.remote_id: f.kind for f in harness.store.failures()} == {"BAD": "permanent", "S": "permanent"}
    assert executor.record_without_call(1, actions[:1], now)[0].outcome == "invalid"
    assert harness.store.failures(remote_id="BAD")[0].attempts == 1, "the same invalid item seen again is not a new attempt"
    assert harness.api_requests() == 0


def test_which_actions_call_jobylon(harness):
    interview = _interview(harness, "A")
    assert needs_call(Create(interview)) and needs_call(Delete("A", 7, "cancelled"))
    assert not needs_call(Delete("A", None, "nothing in Jobylon")) and not needs_call(Skip("A", 7, "ended"))


def test_circuit_breaker_opens_at_its_threshold_and_a_success_resets_it():
    breaker = CircuitBreaker(3)
    assert [breaker.failed(), breaker.failed()] == [None, None]
    breaker.reset()
    assert [breaker.failed(), breaker.failed(), breaker.failed(), breaker.failed()] == [None, None, 3, 4]


def test_crash_point_is_read_from_the_environment_only_when_set(monkeypatch):
    monkeypatch.delenv("CONNECTOR_CRASH_AT", raising=False)
    assert CrashPoint.from_env() is None
    monkeypatch.setenv("CONNECTOR_CRASH_AT", "after_response:post:2")
    point = CrashPoint.from_env()
    assert point == CrashPoint("after_response", "POST", 2)
    point.reached("after_intent", "PUT")  # another method: not counted, no kill
    point.reached("after_intent", "POST")
    assert point.seen == 1


def test_every_error_class_carries_its_kind_exit_code_and_stop():
    assert {cls: cls.kind for cls in (TransientError, PermanentError, NotFoundError, AuthError, InDoubtError)} == {
        TransientError: "transient",
        PermanentError: "permanent",
        NotFoundError: "permanent",
        AuthError: "transient",
        InDoubtError: "in_doubt",
    }
    assert AuthError.exit_code == ExitCode.AUTH == 4 and AuthError.stops_pass == "auth"
    assert all(cls.stops_pass is None for cls in (TransientError, PermanentError, NotFoundError, InDoubtError))
    error = NotFoundError("gone", method="PUT", event_id=7, http_status=404, response="{}")
    assert isinstance(error, JobylonError) and (error.method, error.event_id, error.http_status) == ("PUT", 7, 404)


@pytest.mark.parametrize(
    ("stop", "held_back", "failed", "outcome"),
    [
        (None, False, 0, "ok"),
        (None, False, 1, "failed_items"),
        (None, True, 0, "guard"),
        (None, True, 1, "guard"),
        ("auth", True, 1, "auth"),
        ("circuit_open", False, 1, "circuit_open"),
        ("shutdown", False, 0, "interrupted"),
    ],
)
def test_pass_outcome_table(stop, held_back, failed, outcome):
    counts = {"failed": failed, "in_doubt": 0, "invalid": 0}
    assert pass_outcome(stop, held_back, counts) == outcome


def test_outcomes_exit_codes_and_what_counts_as_success():
    assert {name: int(code) for name, code in EXIT_CODES.items()} == {
        "ok": 0,
        "dry_run": 0,
        "failed_items": 1,
        "source_error": 1,
        "circuit_open": 1,
        "interrupted": 1,
        "error": 1,
        "state_error": 5,
        "guard": 3,
        "auth": 4,
    }
    assert SUCCESSFUL_OUTCOMES == {"ok", "failed_items"} and is_success("failed_items") and not is_success("guard") and not is_success(None)
    assert ActionResult("create", "A", 1, "created").done and not ActionResult("create", "A", None, "in_doubt").done
