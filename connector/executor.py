"""The call path: for each planned call, write the intent, call Jobylon, write the outcome (a
worker commits it with its next call's intent: `connector.workers`).

Each action kind's I/O lives in one method (`_create`, `_update`, `_recreate`, `_delete`), chosen
by the action's name in one table; nothing else dispatches on action types. Every error path ends
in a record (an operation row, and a failure row for the item), so nothing is dropped:

    Jobylon error   -> its class decides the failure kind (`JobylonError.kind`) and whether the
                       pass stops (`stops_pass`); transient failures back off per item
    anything else   -> a bug: recorded as a transient failure of that item, the pass goes on

The circuit breaker stops a pass after `retry.circuit_breaker_failures` consecutive transient
failures. What becomes of the intents a dead process left is `connector.recovery`'s.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from connector.config import Settings
from connector.errors import JobylonError, LeaseLost, NotFoundError, StateError
from connector.jobylon import JobylonClient
from connector.model import Interview, with_marker
from connector.plan import CALL_ACTIONS, Action, Create, Delete, Invalid, Recreate, Skip, Update
from connector.recovery import CrashPoint
from connector.redact import Redactor
from connector.results import ActionResult
from connector.retry import next_attempt_at
from connector.store import Answered, EventState, FailureRecord, Intent, Store
from connector.webhooks.payload import state_hash
from connector.workers import Carried, CircuitBreaker, run_in_threads

log = logging.getLogger("connector.executor")

Call = Create | Update | Recreate | Delete


def needs_call(action: Action) -> bool:
    """Whether the action sends a request to Jobylon (a deletion without an event does not)."""
    return isinstance(action, CALL_ACTIONS) and not (isinstance(action, Delete) and action.event_id is None)


class Executor:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: JobylonClient,
        redactor: Redactor,
        *,
        clock: Callable[[], datetime],
        crash_point: CrashPoint | None = None,
        lease_check: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.redactor = redactor
        self.clock = clock
        self.crash_point = crash_point
        self.lease_check = lease_check  # a replica's lease (connector.leader): checked before each call
        self.breaker = CircuitBreaker(settings.retry.circuit_breaker_failures)
        self.on_progress: Callable[[ActionResult], None] | None = None
        self._stop = threading.Event()
        self._carried = Carried()  # each worker's answered call, written with its next intent
        self.stop_reason: str | None = None
        self.stop_detail: str | None = None
        self._runners: dict[str, Callable[[int, Any], ActionResult]] = {
            "create": self._create,
            "update": self._update,
            "recreate": self._recreate,
            "delete": self._delete,
        }

    def reset(self) -> None:
        self._stop.clear()
        self.stop_reason = None
        self.stop_detail = None
        self.breaker.reset()

    def stop(self, reason: str, detail: str | None = None) -> None:
        """Finish the calls in flight, start no new one. The first reason given wins."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_detail = detail
        self._stop.set()

    # -- actions without a call --------------------------------------------------------------

    def record_without_call(self, run_id: int, actions: list[Action], now: datetime) -> list[ActionResult]:
        """Invalid items and reported changes park a failure; a deletion with nothing in Jobylon
        just closes the mapping. Calls are left to `run_all`."""
        results = []
        for action in actions:
            if isinstance(action, Invalid):
                item = action.item
                new = self._park(item.label, "map", item.message, item.content_hash, now)
                log.log(
                    logging.WARNING if new else logging.DEBUG,
                    "invalid item %s: %s",
                    item.label,
                    item.message,
                    extra={"run_id": run_id, "remote_id": item.label, "action": "map", "outcome": "invalid"},
                )
                results.append(ActionResult("invalid", item.label, action.event_id, "invalid", item.message))
            elif isinstance(action, Skip):
                if action.report:
                    self._park(action.remote_id, "recreate", action.reason, action.content_hash, now)
                    log.warning(
                        "%s needs an operator: %s",
                        action.remote_id,
                        action.reason,
                        extra={"run_id": run_id, "remote_id": action.remote_id, "outcome": "reported"},
                    )
                results.append(ActionResult("skip", action.remote_id, action.event_id, "skipped", action.reason))
            elif isinstance(action, Delete) and action.event_id is None:
                self.store.forget_event(action.remote_id, now, run_id=run_id, action="delete", message=action.reason)
                results.append(ActionResult("delete", action.remote_id, None, "deleted", action.reason))
        return results

    def _park(self, remote_id: str, action: str, message: str, content_hash: str | None, now: datetime) -> bool:
        """Record a permanent failure that needed no call; False when the same one is already open."""
        failure = FailureRecord(kind="permanent", message=message, content_hash=content_hash)
        return self.store.record_item_failure(remote_id, action, failure, now, only_if_changed=True)

    # -- running the calls -------------------------------------------------------------------

    def run_all(self, run_id: int, calls: list[Call]) -> list[ActionResult]:
        if not calls:
            return []
        workers = min(self.settings.sync.concurrency, len(calls))
        # `workers` threads take the next call in turn (a pool's future per call, thousands made up
        # front, each with its own lock and condition, cost the pass about as much as the calls' records).
        results: list[ActionResult | None] = [None] * len(calls)
        raised: list[tuple[int, BaseException]] = []
        turns = itertools.count()  # next() on it is atomic: each index is taken by one thread

        def work() -> None:
            self._carried.start()
            try:
                while (index := next(turns)) < len(calls):
                    try:
                        results[index] = self._run_one(run_id, calls[index])
                    except BaseException as exc:  # a StateError stopped the pass: the others see the stop
                        raised.append((index, exc))
                        if not isinstance(exc, Exception):  # Ctrl-C on a single worker (the main thread)
                            self.stop("interrupted")
            finally:
                self._carried.stop()
                try:
                    self._write_carried()
                except StateError as exc:
                    self.stop("state", str(exc))
                    raised.append((len(calls), exc))

        if workers == 1:
            work()
        else:
            run_in_threads(work, workers, interrupted=lambda: self.stop("interrupted"))
        if raised:
            raise min(raised, key=lambda pair: pair[0])[1]
        return results  # type: ignore[return-value]  # every index was run

    def _run_one(self, run_id: int, call: Call) -> ActionResult:
        if self._stop.is_set() or not self._lease_held():
            result = ActionResult(call.name, call.remote_id, call.event_id, "not_run", f"not attempted: pass stopped ({self.stop_reason})")
        else:
            started = time.monotonic()
            try:
                result = self._runners[call.name](run_id, call)
            except LeaseLost as exc:  # the fence refused the intent: nothing was sent
                self.stop("lease_lost", str(exc))
                result = ActionResult(call.name, call.remote_id, call.event_id, "not_run", f"not attempted: {exc}")
            except StateError as exc:  # no record can be written: start no further call
                self.stop("state", str(exc))
                raise
            except Exception as exc:  # a bug, not a Jobylon answer: record it against the item, go on
                result = self._unexpected(run_id, call, exc)
            result.duration_ms = int((time.monotonic() - started) * 1000)
            _log_result(run_id, result)
        if self.on_progress:
            self.on_progress(result)
        return result

    def _lease_held(self) -> bool:
        if self.lease_check is None:
            return True
        try:
            self.lease_check()
        except LeaseLost as exc:
            self.stop("lease_lost", str(exc))
            return False
        return True

    def _unexpected(self, run_id: int, call: Call, exc: Exception) -> ActionResult:
        self._write_carried()
        log.exception("unexpected error on %s %s", call.name, call.remote_id, extra={"run_id": run_id, "remote_id": call.remote_id})
        message = f"unexpected {type(exc).__name__}: {self.redactor.text(str(exc))}"
        now = self.clock()
        failure = FailureRecord(kind="transient", message=message, next_attempt_at=self._retry_at(call.remote_id, now))
        self.store.record_item_failure(call.remote_id, call.name, failure, now)
        return ActionResult(call.name, call.remote_id, call.event_id, "failed", message)

    # -- one method per action kind: intent, call, outcome ------------------------------------

    def _create(self, run_id: int, call: Create) -> ActionResult:
        return self._post(run_id, call.interview, "create")

    def _update(self, run_id: int, call: Update) -> ActionResult:
        interview = call.interview
        body = self._body(interview.update_payload, interview)
        text = json.dumps(body)  # once: for the intent's record and the request
        intent = self._intent(run_id, interview.remote_id, "update", "PUT", call.event_id, body, interview.content_hash, text)
        try:
            self.client.update(call.event_id, body, text=text)
            self._answered("PUT")
        except NotFoundError as exc:
            return self._vanished(run_id, intent, exc, interview)
        except JobylonError as exc:
            return self._failed(intent, exc, interview.content_hash, event_status="failed")
        self._succeeded(intent, _synced(interview, call.event_id, self._body(interview.payload, interview)), 200)
        self.breaker.reset()
        return ActionResult("update", interview.remote_id, call.event_id, "updated")

    def _recreate(self, run_id: int, call: Recreate) -> ActionResult:
        interview = call.interview
        intent = self._intent(run_id, interview.remote_id, "recreate", "DELETE", call.event_id, None, interview.content_hash)
        try:
            self.client.delete(call.event_id)
            self._answered("DELETE")
        except JobylonError as exc:
            return self._failed(intent, exc, interview.content_hash, event_status="failed")
        self._succeeded(intent, EventState(event_id=None, status="pending"), 204, resolve=False)
        return self._post(run_id, interview, "recreate")

    def _delete(self, run_id: int, call: Delete) -> ActionResult:
        assert call.event_id is not None  # deletions without an event are recorded without a call
        intent = self._intent(run_id, call.remote_id, "delete", "DELETE", call.event_id, None, None)
        try:
            existed = self.client.delete(call.event_id)
            self._answered("DELETE")
        except JobylonError as exc:
            return self._failed(intent, exc, None, event_status="failed")
        self._succeeded(intent, EventState(event_id=None, status="deleted"), 204 if existed else 404)
        self.breaker.reset()
        return ActionResult("delete", call.remote_id, call.event_id, "deleted", "" if existed else "already gone from Jobylon (404)")

    def _post(self, run_id: int, interview: Interview, action: str) -> ActionResult:
        """The create call, for a new event or the second half of a recreate."""
        body = self._body(interview.payload, interview)
        text = json.dumps(body)  # once: for the intent's and the event's records and the request
        intent = self._intent(run_id, interview.remote_id, action, "POST", None, body, interview.content_hash, text)
        try:
            event_id = self.client.create(body, text=text)
            self._answered("POST")
        except JobylonError as exc:
            return self._failed(intent, exc, interview.content_hash, event_status="in_doubt" if exc.kind == "in_doubt" else "failed")
        self._succeeded(intent, _synced(interview, event_id, body), 201, payload_text=text)
        self.breaker.reset()
        return ActionResult(action, interview.remote_id, event_id, "created" if action == "create" else "recreated")

    def _vanished(self, run_id: int, intent: Intent, exc: NotFoundError, interview: Interview) -> ActionResult:
        """404 on PUT: the event is gone from Jobylon. `sync.on_missing_in_jobylon` decides."""
        forget = self.settings.sync.on_missing_in_jobylon == "forget"
        gone = EventState(event_id=None, status="deleted" if forget else "pending")
        self._succeeded(intent, gone, 404, resolve=False)
        if not forget:
            return self._post(run_id, interview, "recreate")
        self._write_carried()
        message = f'event {intent.event_id} no longer exists in Jobylon; mapping forgotten (on_missing_in_jobylon = "forget"); replay to create it again'
        failure = FailureRecord(kind="permanent", message=message, http_status=404, response=exc.response, content_hash=interview.content_hash)
        self.store.record_item_failure(interview.remote_id, "update", failure, self.clock())
        return ActionResult("update", interview.remote_id, intent.event_id, "failed", message)

    # -- the records around a call ------------------------------------------------------------

    def _body(self, payload: dict[str, Any], interview: Interview) -> dict[str, Any]:
        """The body sent: with `sync.reference_marker`, the description ends with the remote id's marker
        line (the hashes stay the Interview's, so the plan and the state agree)."""
        return with_marker(payload, interview.remote_id) if self.settings.sync.reference_marker else payload

    def _intent(
        self,
        run_id: int,
        remote_id: str,
        action: str,
        method: str,
        event_id: int | None,
        request: dict[str, object] | None,
        content_hash: str | None,
        request_text: str | None = None,
    ) -> Intent:
        intent = self.store.write_intent(
            run_id=run_id,
            remote_id=remote_id,
            action=action,
            method=method,
            event_id=event_id,
            request=request,
            content_hash=content_hash,
            now=self.clock(),
            request_text=request_text,
            settle=self._carried.take(),
        )
        if self.crash_point is not None:
            self.crash_point.reached("after_intent", method)
        return intent

    def _succeeded(self, intent: Intent, state: EventState, http_status: int, *, resolve: bool = True, payload_text: str | None = None) -> None:
        """Record a call's outcome. A pass's worker carries it into the transaction of its next intent
        (one lock turn and one commit per call, not two; the store writes it alone should that intent
        fail), or writes it when it has no next call; a write of the worker's that is no intent (an
        unexpected error's failure, a forgotten mapping's) writes it first."""
        answered = Answered(intent, state, http_status, self.clock(), resolve, payload_text)
        self._write_carried()
        if self._carried.carrying:
            self._carried.put(answered)
        else:
            self.store.record_answered(answered)

    def _write_carried(self) -> None:
        if (answered := self._carried.take()) is not None:
            self.store.record_answered(answered)

    def _answered(self, method: str) -> None:
        if self.crash_point is not None:
            self.crash_point.reached("after_response", method)

    def _retry_at(self, remote_id: str, now: datetime) -> datetime:
        return next_attempt_at(self.store.attempts(remote_id) + 1, list(self.settings.retry.failed_item_backoff_seconds), now)

    def _failed(self, intent: Intent, exc: JobylonError, content_hash: str | None, *, event_status: str) -> ActionResult:
        """Record a failed call as its error class says; stop the pass where it says so (its own
        intent took any outcome its worker carried)."""
        message = self.redactor.text(exc.message)
        now = self.clock()
        retry_at = None
        if exc.stops_pass is not None:
            self.stop(exc.stops_pass, message)
        elif exc.kind == "transient":
            retry_at = self._retry_at(intent.remote_id, now)
            run = self.breaker.failed()
            if run is not None:
                self.stop("circuit_open", f"{run} consecutive transient failures; circuit open until the next poll")
        failure = FailureRecord(
            kind=exc.kind,
            message=message,
            http_status=exc.http_status,
            request=intent.request,
            response=exc.response,
            content_hash=content_hash if content_hash is not None else intent.content_hash,
            next_attempt_at=retry_at,
        )
        self.store.record_failure(intent, failure=failure, event_status=event_status, now=now)
        return ActionResult(intent.action, intent.remote_id, intent.event_id, "in_doubt" if exc.kind == "in_doubt" else "failed", message)


def _synced(interview: Interview, event_id: int, payload: dict[str, Any]) -> EventState:
    return EventState(
        event_id=event_id,
        status="synced",
        payload=payload,
        mutable_hash=interview.mutable_hash,
        fixed_hash=interview.fixed_hash,
        starts_at_utc=interview.starts_at_utc,
        ends_at_utc=interview.ends_at_utc,
        source_updated_at=interview.updated_at,
        state_hash=state_hash(payload),  # the event's state after the call: its late redelivery is no drift
    )


def _log_result(run_id: int, result: ActionResult) -> None:
    log.log(
        logging.INFO if result.done else logging.WARNING,
        "%s %s -> %s%s%s",
        result.action,
        result.remote_id,
        result.outcome,
        f" (event {result.event_id})" if result.event_id is not None else "",
        f": {result.message}" if result.message else "",
        extra={
            "run_id": run_id,
            "event": "action",
            "remote_id": result.remote_id,
            "event_id": result.event_id,
            "action": result.action,
            "outcome": result.outcome,
            "duration_ms": result.duration_ms,
        },
    )
