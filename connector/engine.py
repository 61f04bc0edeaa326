"""One sync pass: fetch, map, plan, guard, execute, record.

For every call the order is fixed: write the intent, call Jobylon, write the outcome. Every error
path ends in a record (an operation row, and a failure row for the item), so nothing is dropped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from connector.config import Settings
from connector.errors import AuthError, InDoubtError, JobylonError, NotFoundError, SourceError, TransientError
from connector.jobylon import JobylonClient
from connector.mapping import Mapper, drain
from connector.model import Interview, InvalidItem
from connector.plan import Action, Create, Delete, Invalid, Plan, Policy, Recreate, Skip, Update, guard, plan
from connector.redact import Redactor
from connector.retry import RateLimiter
from connector.sources import Source, open_source
from connector.store import EventState, FailureRecord, Intent, Store, iso, utcnow

log = logging.getLogger("connector.engine")

COUNT_NAMES = ("created", "updated", "recreated", "deleted", "unchanged", "skipped", "invalid", "failed", "in_doubt")
EXIT_CODES = {"ok": 0, "dry_run": 0, "failed_items": 1, "source_error": 1, "circuit_open": 1, "interrupted": 1, "error": 1, "guard": 3, "auth": 4}
_DONE = {"create": "created", "update": "updated", "recreate": "recreated", "delete": "deleted"}


@dataclass
class CrashPoint:
    """Fault injection for crash tests: `CONNECTOR_CRASH_AT=<when>:<METHOD>:<n>` makes the process
    SIGKILL itself at the n-th call of that method, `after_intent` (intent written, nothing sent)
    or `after_response` (Jobylon answered, outcome not yet written). Unset in production."""

    when: str
    method: str
    count: int
    seen: int = 0

    @classmethod
    def from_env(cls) -> CrashPoint | None:
        spec = os.environ.get("CONNECTOR_CRASH_AT")
        if not spec:
            return None
        when, method, count = spec.split(":")
        return cls(when, method.upper(), int(count))

    def reached(self, when: str, method: str) -> None:
        if method != self.method:
            return
        if when == "after_intent":
            self.seen += 1
        if when == self.when and self.seen == self.count:
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class PassOptions:
    full: bool | None = None  # None: every sync.full_every-th poll is complete
    dry_run: bool = False
    allow_mass_delete: bool = False
    only: frozenset[str] | None = None  # restrict the pass to these remote ids
    replay: bool = False  # with `only`: ignore backoff and parking for those ids


@dataclass
class ActionResult:
    action: str
    remote_id: str
    event_id: int | None
    outcome: str  # created/updated/recreated/deleted/skipped/invalid/failed/in_doubt/not_run
    message: str = ""
    duration_ms: int = 0


@dataclass
class PassResult:
    run_id: int | None
    outcome: str
    counts: dict[str, int]
    complete: bool
    planned: Plan
    results: list[ActionResult] = field(default_factory=list)
    error: str | None = None
    fetched: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.outcome, 1)


def build_redactor(settings: Settings) -> Redactor:
    return Redactor(settings.secrets())


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        client: JobylonClient | None = None,
        source: Source | None = None,
        redactor: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.redactor = redactor or build_redactor(settings)
        self.client = client or JobylonClient(
            settings.jobylon,
            settings.retry,
            pool_size=settings.sync.concurrency,
            limiter=RateLimiter(settings.jobylon.max_requests_per_second),
            sleep=sleep,
        )
        self._source = source
        self.mapper = Mapper(settings.mapping)
        self.clock = clock
        self.policy = Policy(on_fixed_field_change=settings.sync.on_fixed_field_change)
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._stop_detail: str | None = None
        self._counter_lock = threading.Lock()
        self._consecutive_transient = 0
        self.on_progress: Callable[[ActionResult], None] | None = None
        self.on_planned: Callable[[int], None] | None = None
        self._crash_at = CrashPoint.from_env()
        if not settings.jobylon.verify_tls:
            log.warning("jobylon.verify_tls = false: Jobylon's TLS certificate is NOT verified")
        if not getattr(settings.source, "verify_tls", True):
            log.warning("source.verify_tls = false: the source's TLS certificate is NOT verified")

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = open_source(self.settings.source, self.settings.retry)
        return self._source

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self.client.close()

    def request_stop(self, reason: str = "interrupted") -> None:
        """Finish the calls in flight, start no new one (SIGTERM, a refused credential, the breaker)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    # -- the pass ----------------------------------------------------------------------------

    def run_pass(self, options: PassOptions = PassOptions()) -> PassResult:
        self._stop.clear()
        self._stop_reason = None
        self._stop_detail = None
        self._consecutive_transient = 0
        started = self.clock()
        run_id = None
        if not options.dry_run:
            for intent, how in self.store.settle_orphaned_intents(started):
                log.warning(
                    "settled an unfinished %s of %s left by a stopped process: %s",
                    intent.action,
                    intent.remote_id,
                    "now in doubt" if how == "in_doubt" else "will be repeated",
                    extra={"remote_id": intent.remote_id, "action": intent.action, "outcome": how},
                )
            run_id = self.store.start_run(started)
        complete = False
        try:
            complete, since = self._fetch_mode(options)
            fetched = self.source.fetch(since=since)
            complete = fetched.complete
            result = self._plan_and_execute(run_id, fetched.items, complete, options, started)
        except SourceError as exc:
            return self._finish(run_id, "source_error", complete, started, Plan(), error=str(exc))
        except Exception as exc:
            log.exception("pass failed: %s", exc, extra={"run_id": run_id})
            self._finish(run_id, "error", complete, started, Plan(), error=f"{type(exc).__name__}: {exc}")
            raise
        return result

    def _fetch_mode(self, options: PassOptions) -> tuple[bool, str | None]:
        """(complete wanted, since cursor) for this pass."""
        source_cfg = self.settings.source
        incremental_capable = getattr(source_cfg, "since_param", None) is not None
        if not incremental_capable or options.full or options.only is not None:
            return True, None
        cursor = self.store.get_meta("cursor")
        polls = int(self.store.get_meta("polls_since_full") or 0)
        if options.full is None and (cursor is None or polls + 1 >= self.settings.sync.full_every):
            return True, None
        return False, cursor

    def _plan_and_execute(self, run_id: int | None, items: list[Any], complete: bool, options: PassOptions, started: datetime) -> PassResult:
        fetched_count = len(items)
        mapped = self.mapper.map_all(drain(items))
        interviews, invalid = mapped.interviews, mapped.invalid
        mapped_live = self.store.count_live_events()
        if options.only is not None:
            interviews = [d for d in interviews if d.remote_id in options.only]
            invalid = [i for i in invalid if i.remote_id in options.only]
            known = self.store.known(options.only)
        elif complete:
            known = self.store.known()
        else:  # an incremental fetch plans nothing for ids it did not bring: read only its own
            known = self.store.known([d.remote_id for d in interviews] + [i.remote_id for i in invalid if i.remote_id is not None])
        if options.only is not None and options.replay:
            known = {
                rid: replace(k, failure_kind=None, next_attempt_at=None, failed_content_hash=None) if k.failure_kind != "in_doubt" else k
                for rid, k in known.items()
            }
        now = self.clock()
        planned = plan(
            interviews,
            known,
            now,
            invalid=invalid,
            complete=complete,
            unidentified=mapped.unidentified if options.only is None else 0,
            policy=self.policy,
        )
        if planned.deletions_held_back:
            log.warning("no deletions by absence this pass: %s", planned.deletions_held_back, extra={"run_id": run_id})
        refusal = guard(
            planned,
            mapped=mapped_live,
            fetched=fetched_count,
            complete=complete,
            max_deletes=self.settings.sync.max_deletes,
            max_delete_fraction=self.settings.sync.max_delete_fraction,
        )
        if options.dry_run:
            counts = self._count(planned, [], dry_run=True)
            return PassResult(None, "dry_run", counts, complete, planned, error=refusal, fetched=fetched_count)
        assert run_id is not None
        held_back: list[Delete] = []
        actions = planned.actions
        if refusal and not options.allow_mass_delete:
            held_back = planned.deletes
            actions = [a for a in actions if not (isinstance(a, Delete) and a.event_id is not None)]
            log.error("guard: %s; deletions held back (rerun with --allow-mass-delete if intended)", refusal, extra={"run_id": run_id})
        results = self._record_non_calls(run_id, actions, now)
        self._resolve_fixed_items(interviews, invalid, complete and options.only is None, now)
        calls = [a for a in actions if isinstance(a, (Create, Update, Recreate, Delete)) and not (isinstance(a, Delete) and a.event_id is None)]
        if self.on_planned:
            self.on_planned(len(calls))
        results += self._execute_all(run_id, calls)
        counts = self._count(planned, results)
        counts["held_back"] = len(held_back)
        failed = counts["failed"] + counts["in_doubt"] + counts["invalid"]
        if self._stop_reason == "auth":
            outcome = "auth"
        elif self._stop_reason == "circuit_open":
            outcome = "circuit_open"
        elif self._stop_reason is not None:
            outcome = "interrupted"
        elif held_back:
            outcome = "guard"
        else:
            outcome = "failed_items" if failed else "ok"
        self._advance_cursor(interviews, complete, outcome)
        return self._finish(
            run_id,
            outcome,
            complete,
            started,
            planned,
            results=results,
            counts=counts,
            error=refusal if held_back else self._stop_detail,
            fetched=fetched_count,
        )

    def _advance_cursor(self, interviews: list[Interview], complete: bool, outcome: str) -> None:
        if getattr(self.settings.source, "since_param", None) is None or outcome not in ("ok", "failed_items"):
            return
        stamps = [d.updated_at for d in interviews if d.updated_at is not None]
        if stamps:
            cursor = self.store.get_meta("cursor")
            newest = iso(max(stamps))
            if cursor is None or (newest and newest > cursor):
                self.store.set_meta("cursor", newest)
        polls = 0 if complete else int(self.store.get_meta("polls_since_full") or 0) + 1
        self.store.set_meta("polls_since_full", str(polls))

    def _finish(
        self,
        run_id: int | None,
        outcome: str,
        complete: bool,
        started: datetime,
        planned: Plan,
        *,
        results: list[ActionResult] | None = None,
        counts: dict[str, int] | None = None,
        error: str | None = None,
        fetched: int = 0,
    ) -> PassResult:
        counts = counts or {name: 0 for name in COUNT_NAMES}
        finished = self.clock()
        if error:
            error = self.redactor.text(error)
        if run_id is not None:
            self.store.finish_run(run_id, outcome=outcome, counts=counts, complete_fetch=complete, error=error, started_at=started, finished_at=finished)
        level = logging.INFO if outcome in ("ok", "dry_run") else logging.WARNING
        summary = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        log.log(
            level,
            "pass %s: %s in %d ms%s%s",
            run_id if run_id is not None else "(dry run)",
            outcome,
            int((finished - started).total_seconds() * 1000),
            f" ({summary})" if summary else "",
            f": {error}" if error else "",
            extra={"run_id": run_id, "event": "pass", "outcome": outcome, "duration_ms": int((finished - started).total_seconds() * 1000)},
        )
        return PassResult(run_id, outcome, counts, complete, planned, results or [], error, fetched)

    @staticmethod
    def _count(planned: Plan, results: list[ActionResult], *, dry_run: bool = False) -> dict[str, int]:
        counts = {name: 0 for name in COUNT_NAMES}
        counts["unchanged"] = planned.unchanged
        if dry_run:  # count what is planned
            for action in planned.actions:
                key = _DONE.get(action.name) or ("skipped" if action.name == "skip" else action.name)
                counts[key] = counts.get(key, 0) + 1
            return counts
        for result in results:
            if result.outcome in counts:
                counts[result.outcome] += 1
            elif result.outcome == "not_run":
                counts["skipped"] += 1
        return counts

    # -- actions without a call --------------------------------------------------------------

    def _park(self, remote_id: str, action: str, message: str, content_hash: str | None, now: datetime) -> bool:
        """Record a permanent failure that needed no call; False when the same one is already open."""
        failure = FailureRecord(kind="permanent", message=message, content_hash=content_hash)
        return self.store.record_item_failure(remote_id, action, failure, now, only_if_changed=True)

    def _record_non_calls(self, run_id: int, actions: list[Action], now: datetime) -> list[ActionResult]:
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

    def _resolve_fixed_items(self, interviews: list[Interview], invalid: list[InvalidItem], complete: bool, now: datetime) -> None:
        """Close `map` failures of items that map again, even when nothing needs sending; after a
        complete fetch also those of items that are gone from the source."""
        open_ids = self.store.open_failure_ids(("permanent",), ("map",))
        if not open_ids:
            return
        still_invalid = {i.label for i in invalid}
        if complete:
            fixed = [rid for rid in open_ids if rid not in still_invalid]
        else:
            fixed = [d.remote_id for d in interviews if d.remote_id in open_ids]
        self.store.resolve_failures(fixed, now, actions=("map",))

    # -- calls -------------------------------------------------------------------------------

    def _execute_all(self, run_id: int, calls: list[Create | Update | Recreate | Delete]) -> list[ActionResult]:
        if not calls:
            return []
        workers = min(self.settings.sync.concurrency, len(calls))
        if workers == 1:
            return [self._execute_guarded(run_id, call) for call in calls]
        # The workers mostly wait on Jobylon; hand the GIL to one whose answer arrived sooner than
        # the default 5 ms, or each call waits for a busy neighbour on top of its latency.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.0005))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
                return list(pool.map(lambda call: self._execute_guarded(run_id, call), calls))
        finally:
            sys.setswitchinterval(switch)

    def _execute_guarded(self, run_id: int, action: Create | Update | Recreate | Delete) -> ActionResult:
        if self._stop.is_set():
            result = ActionResult(action.name, action.remote_id, action.event_id, "not_run", f"not attempted: pass stopped ({self._stop_reason})")
        else:
            started = time.monotonic()
            result = self._execute(run_id, action)
            result.duration_ms = int((time.monotonic() - started) * 1000)
            self._log_action(run_id, result)
        if self.on_progress:
            self.on_progress(result)
        return result

    def _log_action(self, run_id: int, result: ActionResult) -> None:
        level = logging.INFO if result.outcome in _DONE.values() else logging.WARNING
        log.log(
            level,
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

    def _execute(self, run_id: int, action: Create | Update | Recreate | Delete) -> ActionResult:
        try:
            if isinstance(action, Create):
                return self._create(run_id, action.interview, "create")
            if isinstance(action, Update):
                return self._update(run_id, action)
            if isinstance(action, Recreate):
                return self._recreate(run_id, action)
            return self._delete(run_id, action)
        except Exception as exc:  # a bug, not a Jobylon answer: record it against the item, go on
            log.exception("unexpected error on %s %s", action.name, action.remote_id, extra={"run_id": run_id, "remote_id": action.remote_id})
            message = f"unexpected {type(exc).__name__}: {self.redactor.text(str(exc))}"
            self.store.record_item_failure(
                action.remote_id,
                action.name,
                FailureRecord(kind="transient", message=message, backoff_schedule=tuple(self.settings.retry.failed_item_backoff_seconds)),
                self.clock(),
            )
            return ActionResult(action.name, action.remote_id, action.event_id, "failed", message)

    def _intent(
        self, run_id: int, remote_id: str, action: str, method: str, event_id: int | None, request: dict[str, Any] | None, content_hash: str | None
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
        )
        if self._crash_at is not None:
            self._crash_at.reached("after_intent", method)
        return intent

    def _answered(self, method: str) -> None:
        if self._crash_at is not None:
            self._crash_at.reached("after_response", method)

    def _synced_state(self, interview: Interview, event_id: int) -> EventState:
        return EventState(
            event_id=event_id,
            status="synced",
            payload=interview.payload,
            mutable_hash=interview.mutable_hash,
            fixed_hash=interview.fixed_hash,
            starts_at_utc=interview.starts_at_utc,
            ends_at_utc=interview.ends_at_utc,
            source_updated_at=interview.updated_at,
        )

    def _create(self, run_id: int, interview: Interview, action: str) -> ActionResult:
        intent = self._intent(run_id, interview.remote_id, action, "POST", None, interview.payload, interview.content_hash)
        try:
            event_id = self.client.create(interview.payload)
            self._answered("POST")
        except JobylonError as exc:
            return self._failed(intent, exc, interview, event_status="in_doubt" if isinstance(exc, InDoubtError) else "failed")
        self.store.record_success(intent, state=self._synced_state(interview, event_id), http_status=201, now=self.clock())
        self._call_succeeded()
        return ActionResult(action, interview.remote_id, event_id, _DONE[action])

    def _update(self, run_id: int, action: Update) -> ActionResult:
        interview = action.interview
        intent = self._intent(run_id, interview.remote_id, "update", "PUT", action.event_id, interview.update_payload, interview.content_hash)
        try:
            self.client.update(action.event_id, interview.update_payload)
            self._answered("PUT")
        except NotFoundError as exc:
            return self._vanished(run_id, intent, exc, interview)
        except JobylonError as exc:
            return self._failed(intent, exc, interview, event_status="failed")
        self.store.record_success(intent, state=self._synced_state(interview, action.event_id), http_status=200, now=self.clock())
        self._call_succeeded()
        return ActionResult("update", interview.remote_id, action.event_id, "updated")

    def _vanished(self, run_id: int, intent: Intent, exc: NotFoundError, interview: Interview) -> ActionResult:
        """404 on PUT: the event is gone from Jobylon. `sync.on_missing_in_jobylon` decides."""
        gone = EventState(event_id=None, status="deleted" if self.settings.sync.on_missing_in_jobylon == "forget" else "pending")
        self.store.record_success(intent, state=gone, http_status=404, now=self.clock(), resolve=False)
        if self.settings.sync.on_missing_in_jobylon == "forget":
            message = f'event {intent.event_id} no longer exists in Jobylon; mapping forgotten (on_missing_in_jobylon = "forget"); replay to create it again'
            self.store.record_item_failure(
                interview.remote_id,
                "update",
                FailureRecord(kind="permanent", message=message, http_status=404, response=exc.response, content_hash=interview.content_hash),
                self.clock(),
            )
            return ActionResult("update", interview.remote_id, intent.event_id, "failed", message)
        return self._create(run_id, interview, "recreate")

    def _recreate(self, run_id: int, action: Recreate) -> ActionResult:
        interview = action.interview
        intent = self._intent(run_id, interview.remote_id, "recreate", "DELETE", action.event_id, None, interview.content_hash)
        try:
            self.client.delete(action.event_id)
            self._answered("DELETE")
        except JobylonError as exc:
            return self._failed(intent, exc, interview, event_status="failed")
        self.store.record_success(intent, state=EventState(event_id=None, status="pending"), http_status=204, now=self.clock(), resolve=False)
        return self._create(run_id, interview, "recreate")

    def _delete(self, run_id: int, action: Delete) -> ActionResult:
        assert action.event_id is not None
        intent = self._intent(run_id, action.remote_id, "delete", "DELETE", action.event_id, None, None)
        try:
            existed = self.client.delete(action.event_id)
            self._answered("DELETE")
        except JobylonError as exc:
            return self._failed(intent, exc, None, event_status="failed")
        self.store.record_success(intent, state=EventState(event_id=None, status="deleted"), http_status=204 if existed else 404, now=self.clock())
        self._call_succeeded()
        return ActionResult("delete", action.remote_id, action.event_id, "deleted", "" if existed else "already gone from Jobylon (404)")

    def _call_succeeded(self) -> None:
        with self._counter_lock:
            self._consecutive_transient = 0

    def _failed(self, intent: Intent, exc: JobylonError, interview: Interview | None, *, event_status: str) -> ActionResult:
        message = self.redactor.text(exc.message)
        if isinstance(exc, AuthError):
            self._stop_detail = message
            self.request_stop("auth")
            kind, schedule = "transient", None
        elif isinstance(exc, InDoubtError):
            kind, schedule = "in_doubt", None
        elif isinstance(exc, TransientError):
            kind, schedule = "transient", tuple(self.settings.retry.failed_item_backoff_seconds)
            with self._counter_lock:
                self._consecutive_transient += 1
                if self._consecutive_transient >= self.settings.retry.circuit_breaker_failures:
                    self._stop_detail = f"{self._consecutive_transient} consecutive transient failures; circuit open until the next poll"
                    self.request_stop("circuit_open")
        else:
            kind, schedule = "permanent", None
        failure = FailureRecord(
            kind=kind,
            message=message,
            http_status=exc.http_status,
            request=intent.request,
            response=exc.response,
            content_hash=interview.content_hash if interview is not None else intent.content_hash,
            backoff_schedule=schedule,
        )
        self.store.record_failure(intent, failure=failure, event_status=event_status, now=self.clock())
        outcome = "in_doubt" if kind == "in_doubt" else "failed"
        return ActionResult(intent.action, intent.remote_id, intent.event_id, outcome, message)


@contextmanager
def open_engine(settings: Settings, *, lock: bool = True, **kwargs: Any) -> Iterator[Engine]:
    """The store (with the process lock, unless only reading) and an engine over it, closed after."""
    redactor = build_redactor(settings)
    store = Store(settings.state.path, redactor=redactor)
    try:
        if lock:
            store.acquire_lock()
        engine = Engine(settings, store, redactor=redactor, **kwargs)
        try:
            yield engine
        finally:
            engine.close()
    finally:
        store.close()
