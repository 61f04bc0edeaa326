"""`connector run`: the service. APScheduler runs a pass at start and then on the schedule; signals
stop it cleanly or reload its config; every pass feeds metrics, health, alerts and a heartbeat.

- One pass at a time (max_instances=1), missed runs coalesced into one.
- SIGTERM / SIGINT: the calls in flight finish and are recorded, no new call starts, exit 0.
  A second signal exits at once (code 130).
- SIGHUP: re-read and validate the config; a bad one is reported and the old one kept.
- A pass that raises is recorded as a failed run; the service keeps going.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.alerts import Alerter, Observation
from connector.clock import iso, parse_iso
from connector.config import Settings, load_settings
from connector.engine import Engine, PassOptions, build_redactor
from connector.errors import ConfigError, LockedError
from connector.leader import Leadership
from connector.logs import setup_logging
from connector.metrics import Metrics, MetricsServer, PassSchedule
from connector.recovery import CrashPoint
from connector.redact import Redactor
from connector.results import PassResult, is_success
from connector.store import ProcessLock, open_store
from connector.store.postgres import PostgresStore
from connector.web.app import StatusPages
from connector.webhooks.service import WebhookService

log = logging.getLogger("connector.daemon")
SHUTDOWN_GRACE_SECONDS = 60
PASS_LOCK_WAIT_SECONDS = 3600  # an on-call command's replay or repair; a stop signal ends the wait


def make_trigger(settings: Settings) -> BaseTrigger:
    jitter = int(settings.sync.jitter_seconds) or None
    if settings.sync.cron:
        return CronTrigger.from_crontab(settings.sync.cron, timezone=UTC)
    return IntervalTrigger(seconds=settings.sync.interval_seconds, jitter=jitter, timezone=UTC)


def validate_schedule(settings: Settings) -> None:
    try:
        make_trigger(settings)
    except ValueError as exc:
        raise ConfigError(f"sync.cron: not a valid crontab expression ({exc})") from None


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None, log_format: str | None = None, verbose: bool = False) -> None:
        validate_schedule(settings)
        self.settings = settings
        self.config_path = config_path
        self.log_format = log_format
        self.verbose = verbose
        self.store = open_store(settings.state, redactor=build_redactor(settings))
        # SQLite: one service per database, for its lifetime (the service lock). PostgreSQL: any
        # number of replicas, one of them the leader (connector.leader). Either way the pass lock
        # is held only while a pass runs, so on-call commands can replay and repair meanwhile.
        self.leadership: Leadership | None = None
        self.service_lock: ProcessLock | None = None
        try:
            if isinstance(self.store, PostgresStore):
                self.leadership = Leadership(self.store, settings.state.lease_seconds)
            else:
                self.service_lock = ProcessLock(self.store.path, ".service.lock", what="served by connector process")
                self.service_lock.acquire()
        except BaseException:
            self.store.close()
            raise
        self.pass_lock = self.store.pass_lock()
        self.crash_point = CrashPoint.from_env()
        self.engine = self._make_engine(settings, None)
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self.webhooks: WebhookService | None = None
        self.alerter = self._make_alerter(settings)
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self._stopping = threading.Event()
        self._signals = 0
        self._pending_settings: Settings | None = None

    def _make_engine(self, settings: Settings, redactor: Redactor | None) -> Engine:
        lease_check = self.leadership.check if self.leadership is not None else None
        return Engine(settings, self.store, redactor=redactor, crash_point=self.crash_point, lease_check=lease_check)

    @property
    def role(self) -> str:
        return self.leadership.role if self.leadership is not None else "leader"

    def _role_and_lease(self) -> tuple[str, bool]:
        """For /healthz: this replica's role, and whether some replica's lease is fresh."""
        if self.leadership is not None and self.leadership.valid():
            return "leader", True
        try:
            leader = self.store.leader() if isinstance(self.store, PostgresStore) else None
        except Exception:  # the database unreachable: no lease can be seen to be fresh
            leader = None
        return "standby", bool(leader and leader["fresh"])

    def _lead(self) -> None:
        """The lease loop of a PostgreSQL replica: renew, or take over; a new leader runs a pass at once."""
        assert self.leadership is not None
        while not self._stopping.is_set():
            before = self.leadership.role
            after = self.leadership.step()
            if after == "leader" and before != "leader" and self.scheduler.running:
                self.scheduler.modify_job("poll", next_run_time=datetime.now(UTC))
            elif after != "leader" and before == "leader":
                self.engine.request_stop("lease_lost")
            self._stopping.wait(self.leadership.interval)

    def _make_alerter(self, settings: Settings) -> Alerter:
        return Alerter(settings.alerts, lambda: self.store.get_meta("alert_conditions"), lambda v: self.store.set_meta("alert_conditions", v))

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        if self.settings.observability.metrics_port:
            # a port in use is a ConfigError (exit 2), raised before the first pass
            schedule = PassSchedule.of(self.settings.sync)
            obs = self.settings.observability
            # the status pages read the SQLite file through a read-only connection of their own
            # (on PostgreSQL: /metrics and /healthz only)
            pages = (
                StatusPages.of(obs, self.store.path, redactor=lambda: self.store.redactor, heartbeat_fresh=lambda at: not stale_heartbeat(at, 60))
                if self.store.engine == "sqlite"
                else None
            )
            role = self._role_and_lease if self.leadership is not None else None
            self.metrics_server = MetricsServer(self.metrics, obs.metrics_port, host=obs.metrics_host, schedule=schedule, pages=pages, role=role).start()
            shown = f"[{obs.metrics_host}]" if ":" in obs.metrics_host else obs.metrics_host
            log.info("metrics on http://%s:%d/metrics and /healthz%s", shown, self.metrics_server.port, "; status pages on /" if pages else "")
        if self.settings.webhooks.enabled:  # binds before the first pass too: a port in use is exit 2
            self.webhooks = WebhookService(self.settings, self.store).start()
        self.scheduler.add_job(
            self._poll,
            make_trigger(self.settings),
            id="poll",
            name="sync pass",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )
        if self.leadership is not None:
            self.leadership.step()  # a replica that can lead at once runs its first pass now
        self.scheduler.start()
        if self.leadership is not None:
            threading.Thread(target=self._lead, name="lease", daemon=True).start()
        log.info("connector running (pid %d, %s); state %s", os.getpid(), self.role, self.store.location)
        try:
            while not self._stopping.wait(5.0):
                self._heartbeat()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        log.info("stopping: letting the calls in flight finish")
        done = threading.Event()

        def stop_scheduler() -> None:
            self.scheduler.shutdown(wait=True)
            done.set()

        threading.Thread(target=stop_scheduler, daemon=True).start()
        if not done.wait(SHUTDOWN_GRACE_SECONDS):
            log.error("the pass did not stop within %d s; exiting anyway", SHUTDOWN_GRACE_SECONDS)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        self.store.set_meta("next_run_at", None)
        self.store.set_meta("heartbeat_at", None)
        self.engine.close()
        if self.service_lock is not None:
            self.service_lock.release()
        if self.leadership is not None:
            self.leadership.close()
        self.store.close()
        log.info("stopped")

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(130)
        log.info("received %s", signal.Signals(signum).name)
        self.engine.request_stop("shutdown")
        self._stopping.set()

    def _on_reload_signal(self, signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    def reload(self) -> bool:
        """Validate the config file again; apply it before the next pass, or keep the old one."""
        try:
            settings = load_settings(self.config_path)
            validate_schedule(settings)
        except ConfigError as exc:
            # One line: the error holds a line per problem, which a log line would show as a literal \n.
            problems = str(exc).replace(":\n  ", ": ").replace("\n  ", "; ").replace("\n", "; ")
            log.error("SIGHUP: the new config is invalid, keeping the old one: %s", problems)
            return False
        if settings.state.path != self.settings.state.path:
            log.error("SIGHUP: state.path cannot change while running (%s); keeping the old config", settings.state.path)
            return False
        self._pending_settings = settings
        log.info("SIGHUP: new config validated; it applies from the next pass")
        if settings.sync != self.settings.sync:
            self.scheduler.reschedule_job("poll", trigger=make_trigger(settings))
            if self.metrics_server is not None:  # /healthz judges by the schedule the passes now follow
                self.metrics_server.set_schedule(PassSchedule.of(settings.sync))
        return True

    def _apply_pending_settings(self) -> None:
        settings, self._pending_settings = self._pending_settings, None
        if settings is None:
            return
        self.engine.close()
        self.settings = settings
        redactor = build_redactor(settings)
        self.store.redactor = redactor  # new secrets are masked in what is stored and logged from now on
        self.engine = self._make_engine(settings, redactor)
        self.alerter = self._make_alerter(settings)
        setup_logging(self.log_format or settings.observability.log_format, "DEBUG" if self.verbose else settings.observability.log_level, redactor)
        log.info("config reloaded")

    # -- a poll ------------------------------------------------------------------------------

    def _poll(self) -> None:
        if self._stopping.is_set():
            return
        if self.leadership is not None and not self.leadership.valid():
            self._heartbeat()
            return  # a standby serves /healthz and waits for the lease
        self._apply_pending_settings()
        started = time.monotonic()
        result: PassResult | None = None
        error = None
        try:
            with self.pass_lock.held_for(wait=PASS_LOCK_WAIT_SECONDS, on_wait=self._waiting_for, give_up=self._stopping.is_set):
                result = self.engine.run_pass(PassOptions())
        except LockedError as exc:
            log.warning("poll skipped: %s; the next poll tries again", exc)
            return
        except Exception as exc:  # recorded as a failed run by the engine; the service goes on
            error = f"{type(exc).__name__}: {exc}"
            log.error("pass raised: %s", error)
        try:
            self._after_pass(result, time.monotonic() - started, error)
        except Exception:
            log.exception("could not record metrics, alerts or heartbeat after the pass")

    @staticmethod
    def _waiting_for(holder: str) -> None:
        log.info("waiting for connector process %s (an on-call command) to finish with the state", holder)

    def _after_pass(self, result: PassResult | None, seconds: float, error: str | None) -> None:
        if self.webhooks is not None:  # deliveries that came before their create's answer was recorded
            self.webhooks.tick()
        failures = self.store.count_open_failures()
        in_doubt = failures.get("in_doubt", 0)
        self.metrics.observe_pass(result, seconds, failures, in_doubt, error)
        last_success = parse_iso(self.store.get_meta("last_success_at"))
        if result is not None and is_success(result.outcome):
            last_success = datetime.now(UTC)
            self.store.set_meta("last_success_at", iso(last_success))
        self.alerter.evaluate(
            Observation(
                outcome=result.outcome if result is not None else "error",
                error=(result.error if result is not None else error),
                open_failures=sum(failures.values()),
                last_success_at=last_success,
                now=datetime.now(UTC),
                forbidden=self.store.count_open_failures_with_status(403),
            )
        )
        self._heartbeat()

    def _heartbeat(self) -> None:
        if self.role != "leader":
            return  # the heartbeat and the next run are the leader's
        job = self.scheduler.get_job("poll") if self.scheduler.running else None
        next_run = job.next_run_time if job is not None else None
        try:
            self.store.set_meta("heartbeat_at", iso(datetime.now(UTC)))
            self.store.set_meta("next_run_at", iso(next_run) if next_run else None)
        except Exception as exc:  # a locked database must not stop the service
            log.warning("heartbeat not written: %s", exc)


def run_daemon(config_path: str | None, log_format: str | None, verbose: bool) -> int:
    settings = load_settings(config_path)
    setup_logging(log_format or settings.observability.log_format, "DEBUG" if verbose else settings.observability.log_level, build_redactor(settings))
    daemon = Daemon(settings, config_path=config_path, log_format=log_format, verbose=verbose)
    return daemon.run()


def stale_heartbeat(heartbeat_at: str | None, interval_seconds: float) -> bool:
    moment = parse_iso(heartbeat_at)
    return moment is None or datetime.now(UTC) - moment > timedelta(seconds=max(10, interval_seconds))
