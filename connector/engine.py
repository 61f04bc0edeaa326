"""One sync pass: choose the fetch, map, plan, guard, hand the calls to the executor, record the run.

The pass decides *what* happens; `connector.executor` owns *how* each call is made and recorded,
and `connector.results` names the outcomes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from connector.clock import iso, utcnow
from connector.collector import PassCollector
from connector.config import Settings
from connector.errors import SourceError, StateError
from connector.executor import Executor, needs_call
from connector.jobylon import JobylonClient
from connector.mapping import Mapper
from connector.model import Interview, InvalidItem
from connector.plan import Delete, Known, Plan, Policy, guard, plan
from connector.recovery import CrashPoint, settle_orphaned_intents
from connector.redact import Redactor
from connector.results import ActionResult, PassResult, empty_counts, is_success, pass_outcome, planned_counts, result_counts
from connector.retry import RateLimiter
from connector.sources import Source, open_source
from connector.store import Store, open_store

log = logging.getLogger("connector.engine")


@dataclass(frozen=True)
class PassOptions:
    full: bool | None = None  # None: every sync.full_every-th poll is complete
    dry_run: bool = False
    allow_mass_delete: bool = False
    allow_mass_create: bool = False  # past sync.first_pass_max_creates
    only: frozenset[str] | None = None  # restrict the pass to these remote ids
    replay: bool = False  # with `only`: ignore backoff and parking for those ids


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
        crash_point: CrashPoint | None = None,
        lease_check: Callable[[], None] | None = None,
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
        self.policy = Policy(on_fixed_field_change=settings.sync.on_fixed_field_change)
        self.executor = Executor(settings, store, self.client, self.redactor, clock=clock, crash_point=crash_point, lease_check=lease_check)
        self.on_planned: Callable[[int], None] | None = None
        if not settings.jobylon.verify_tls:
            log.warning("jobylon.verify_tls = false: Jobylon's TLS certificate is NOT verified")
        if not getattr(settings.source, "verify_tls", True):
            log.warning("source.verify_tls = false: the source's TLS certificate is NOT verified")

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = open_source(self.settings.source, self.settings.retry)
        return self._source

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.executor.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.executor.clock = clock

    @property
    def on_progress(self) -> Callable[[ActionResult], None] | None:
        return self.executor.on_progress

    @on_progress.setter
    def on_progress(self, callback: Callable[[ActionResult], None] | None) -> None:
        self.executor.on_progress = callback

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self.client.close()

    def request_stop(self, reason: str = "interrupted") -> None:
        """Finish the calls in flight, start no new one (SIGTERM)."""
        self.executor.stop(reason)

    # -- the pass ----------------------------------------------------------------------------

    def run_pass(self, options: PassOptions = PassOptions()) -> PassResult:
        self.executor.reset()
        started = self.clock()
        run_id = None
        first_pass = False
        if not options.dry_run:
            if self.store.close_unfinished_runs(started, outcome="interrupted", error="the connector stopped before this pass finished"):
                log.warning("closed the run record of a pass whose process stopped before it finished")
            for intent, how in settle_orphaned_intents(self.store, started):
                log.warning(
                    "settled an unfinished %s of %s left by a stopped process: %s",
                    intent.action,
                    intent.remote_id,
                    "now in doubt" if how == "in_doubt" else "will be repeated",
                    extra={"remote_id": intent.remote_id, "action": intent.action, "outcome": how},
                )
            first_pass = self.store.is_new() and options.only is None
            run_id = self.store.start_run(started)
        complete = False
        try:
            complete, since = self._fetch_mode(options)
            fetched = self.source.fetch(since=since)
            complete = fetched.complete
            with PassCollector() as collector:
                return self._plan_and_execute(collector, run_id, fetched.take(), complete, options, started, first_pass)
        except SourceError as exc:
            return self._finish(run_id, "source_error", complete, started, Plan(), error=str(exc))
        except StateError as exc:  # the state file failed mid-pass: what was in flight is settled at the next start
            log.error("pass stopped: %s", exc, extra={"run_id": run_id})
            with suppress(StateError):
                self._finish(run_id, "state_error", complete, started, Plan(), error=str(exc))
            raise
        except Exception as exc:
            log.exception("pass failed: %s", exc, extra={"run_id": run_id})
            self._finish(run_id, "error", complete, started, Plan(), error=f"{type(exc).__name__}: {exc}")
            raise

    def _fetch_mode(self, options: PassOptions) -> tuple[bool, str | None]:
        """(complete wanted, since) for this pass. `since` is the cursor (the highest updated_at of a
        recorded pass) minus `source.since_overlap_seconds`: rows sharing the cursor's time, rows that
        arrive late and a partner clock a little off are fetched again rather than missed (the plan
        sends nothing for a row fetched twice unchanged). The lookup tables are read here, afresh for
        every pass, before the fetch."""
        from datetime import UTC, timedelta

        from connector.clock import parse_iso

        if self.settings.mapping.lookups:
            from connector.lookups import load_lookups

            self.mapper.set_lookups(load_lookups(self.settings))
        source = self.settings.source
        if not getattr(source, "incremental_capable", False) or options.full or options.only is not None:
            return True, None
        cursor = self.store.get_meta("cursor")
        polls = int(self.store.get_meta("polls_since_full") or 0)
        if options.full is None and (cursor is None or polls + 1 >= self.settings.sync.full_every):
            return True, None
        if cursor is None:
            return False, None
        try:
            moment = parse_iso(cursor)
        except ValueError:
            log.warning("meta.cursor %r is not a time: this pass fetches everything", cursor)
            return True, None
        assert moment is not None
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return False, iso(moment - timedelta(seconds=getattr(source, "since_overlap_seconds", 0)))

    def _known(self, interviews: list[Interview], invalid: list[InvalidItem], complete: bool, options: PassOptions) -> dict[str, Known]:
        if options.only is not None:
            known = self.store.known(options.only)
            if options.replay:  # a replay ignores backoff and parking; an in-doubt create still waits for an operator
                known = {
                    rid: k if k.failure_kind == "in_doubt" else replace(k, failure_kind=None, next_attempt_at=None, failed_content_hash=None)
                    for rid, k in known.items()
                }
            return known
        if complete:
            return self.store.known()
        # an incremental fetch plans nothing for ids it did not bring: read only its own
        return self.store.known([d.remote_id for d in interviews] + [i.remote_id for i in invalid if i.remote_id is not None])

    def _first_pass(self, run_id: int, creates: int, options: PassOptions) -> tuple[str, str | None]:
        """A new database's first pass says so plainly, so a wrong state.path is seen at once; with
        sync.first_pass_max_creates, too many creates are held back. (note, refusal or None)"""
        note = f"first pass on a new state database at {self.store.location}: {creates} creates"
        log.warning(note, extra={"run_id": run_id})
        limit = self.settings.sync.first_pass_max_creates
        if limit is None or creates <= limit or options.allow_mass_create:
            return note, None
        return note, (
            f"{note}, above sync.first_pass_max_creates = {limit}; creates held back. If {self.store.location} is the right "
            "database, run `connector sync --allow-mass-create`; if not, fix state.path"
        )

    def _plan_and_execute(
        self,
        collector: PassCollector,
        run_id: int | None,
        items: Iterator[Any],
        complete: bool,
        options: PassOptions,
        started: datetime,
        first_pass: bool = False,
    ) -> PassResult:
        # A complete pass plans against every mapping: read them first, so that what reading
        # them needs for a moment (SQLite's rows) is free again for the mapping, not added to its peak.
        known = self.store.known() if complete and options.only is None else None
        # Each raw item is mapped as it is read (a file source streams) and then released; a
        # SourceError while reading stops the pass here, before anything is planned or sent.
        mapped = self.mapper.map_all(items)
        fetched_count = mapped.fetched
        interviews, invalid = mapped.interviews, mapped.invalid
        if options.only is not None:
            interviews = [d for d in interviews if d.remote_id in options.only]
            invalid = [i for i in invalid if i.remote_id in options.only]
        mapped_live = self.store.count_live_events()
        if known is None:
            known = self._known(interviews, invalid, complete, options)
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
            return PassResult(None, "dry_run", planned_counts(planned), complete, planned, error=refusal, fetched=fetched_count)
        assert run_id is not None  # every pass but a dry run has a run record
        held_back: list[Delete] = []
        actions = planned.actions
        if refusal and not options.allow_mass_delete:
            held_back = planned.deletes
            actions = [a for a in actions if not (isinstance(a, Delete) and a.event_id is not None)]
            log.error("guard: %s; deletions held back (rerun with --allow-mass-delete if intended)", refusal, extra={"run_id": run_id})
        note = refused_creates = None
        creates = planned.count("create")
        if first_pass and creates:
            note, refused_creates = self._first_pass(run_id, creates, options)
            if refused_creates:
                actions = [a for a in actions if a.name != "create"]
                log.error("guard: %s", refused_creates, extra={"run_id": run_id})
        results = self.executor.record_without_call(run_id, actions, now)
        self._resolve_fixed_items(interviews, invalid, complete and options.only is None, now)
        calls = [a for a in actions if needs_call(a)]
        if self.on_planned:
            self.on_planned(len(calls))
        collector.calls_begin()
        results += self.executor.run_all(run_id, calls)  # type: ignore[arg-type]  # needs_call narrows to calls
        counts = result_counts(planned, results)
        counts["held_back"] = len(held_back) + (creates if refused_creates else 0)
        outcome = pass_outcome(self.executor.stop_reason, counts["held_back"] > 0, counts)
        error = "; ".join(e for e in (refusal if held_back else None, refused_creates) if e) or self.executor.stop_detail
        result = self._finish(run_id, outcome, complete, started, planned, results=results, counts=counts, error=error, fetched=fetched_count, note=note)
        self._advance_cursor(interviews, complete, outcome, options)  # only once the pass is recorded
        return result

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

    def _advance_cursor(self, interviews: list[Interview], complete: bool, outcome: str, options: PassOptions = PassOptions()) -> None:
        """Called after the pass is recorded, and only for a successful one: the cursor becomes the
        highest updated_at fetched, never moved back and never past this machine's now (a partner clock
        running ahead would blind the incremental polls until then). A pass restricted to some ids
        (`--only`, replay) saw only those and moves nothing."""
        if not getattr(self.settings.source, "incremental_capable", False) or not is_success(outcome) or options.only is not None:
            return
        stamps = [d.updated_at for d in interviews if d.updated_at is not None]
        if stamps:
            cursor = self.store.get_meta("cursor")
            newest = iso(min(max(stamps), self.clock()))
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
        note: str | None = None,
    ) -> PassResult:
        counts = counts or empty_counts()
        finished = self.clock()
        if error:
            error = self.redactor.text(error)
        duration_ms = int((finished - started).total_seconds() * 1000)
        if run_id is not None:
            self.store.finish_run(
                run_id,
                outcome=outcome,
                counts=counts,
                complete_fetch=complete,
                error=error,
                started_at=started,
                finished_at=finished,
                mark_complete_fetch=complete and is_success(outcome),
                note=note,
            )
        summary = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        log.log(
            logging.INFO if outcome in ("ok", "dry_run") else logging.WARNING,
            "pass %s: %s in %d ms%s%s",
            run_id if run_id is not None else "(dry run)",
            outcome,
            duration_ms,
            f" ({summary})" if summary else "",
            f": {error}" if error else "",
            extra={"run_id": run_id, "event": "pass", "outcome": outcome, "duration_ms": duration_ms},
        )
        return PassResult(run_id, outcome, counts, complete, planned, results or [], error, fetched)


@contextmanager
def open_engine(
    settings: Settings,
    *,
    lock: bool = True,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> Iterator[Engine]:
    """The store and an engine over it, closed after. With `lock`, the pass lock is held throughout,
    waiting up to `wait` seconds for a pass in progress (a running service's); without it (plan,
    a dry run) nothing is written and a missing database is an error, never a new one. The
    crash-test hook comes from the environment here, at the edge, unless given."""
    redactor = build_redactor(settings)
    store = open_store(settings.state, redactor=redactor, create=lock)
    pass_lock = store.pass_lock()
    try:
        if lock:
            pass_lock.acquire(wait=wait, on_wait=on_wait)
        kwargs.setdefault("crash_point", CrashPoint.from_env())
        engine = Engine(settings, store, redactor=redactor, **kwargs)
        try:
            yield engine
        finally:
            engine.close()
    finally:
        pass_lock.release()
        store.close()
