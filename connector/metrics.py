"""Prometheus metrics and the health verdict, served on loopback by the daemon (`/metrics`, `/healthz`),
with the status pages (`connector.web`) beside them, on waitress."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, make_wsgi_app

from connector.config import SyncConfig
from connector.errors import ConfigError
from connector.results import PassResult
from connector.wsgi import WsgiApp, WsgiServer, bind_problem

log = logging.getLogger("connector.metrics")
HEALTHY_WITHIN_INTERVALS = 3
disable_created_metrics()  # the *_created series only add noise for a long-running service


@dataclass(frozen=True)
class PassSchedule:
    """When passes are due, as the daemon schedules them: every `interval_seconds` plus up to
    `jitter_seconds`, or, when `cron` is set, at that crontab's fire times in UTC."""

    interval_seconds: float = 300
    jitter_seconds: float = 0
    cron: str | None = None

    @classmethod
    def of(cls, sync: SyncConfig) -> PassSchedule:
        return cls(interval_seconds=sync.interval_seconds, jitter_seconds=sync.jitter_seconds, cron=sync.cron)

    @cached_property
    def _trigger(self) -> Any:
        from apscheduler.triggers.cron import CronTrigger  # only for a cron schedule

        return CronTrigger.from_crontab(self.cron, timezone=UTC)

    def fire_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times of the crontab at or after `after` (fewer if it stops firing)."""
        times: list[datetime] = []
        fire = self._trigger.get_next_fire_time(None, after)
        while fire is not None and len(times) < count:
            times.append(fire)
            fire = self._trigger.get_next_fire_time(fire, fire)
        return times

    def due_by(self, since: datetime, passes: int = HEALTHY_WITHIN_INTERVALS) -> datetime:
        """When `passes` more passes after `since` should have ended: `passes` longest gaps later on an
        interval; for a cron, its `passes`-th fire time after `since` (so an hourly cron, or one that
        fires on weekdays only, is judged by its own gaps, not by a fixed interval)."""
        if self.cron is None:
            return since + timedelta(seconds=passes * (self.interval_seconds + self.jitter_seconds))
        times = self.fire_times(since, passes)
        return times[-1] if len(times) == passes else datetime.max.replace(tzinfo=UTC)

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} in UTC"
        jitter = f" plus up to {self.jitter_seconds:g} s of jitter" if self.jitter_seconds else ""
        return f"every {self.interval_seconds:g} s{jitter}"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter("connector_passes", "Sync passes by outcome.", ["outcome"], registry=self.registry)
        self.actions = Counter("connector_actions", "Actions by kind and outcome.", ["action", "outcome"], registry=self.registry)
        self.failures_open = Gauge("connector_failures_open", "Open failures by kind.", ["kind"], registry=self.registry)
        self.in_doubt = Gauge("connector_in_doubt", "Creates in doubt, waiting for an operator.", registry=self.registry)
        self.duration = Histogram(
            "connector_pass_duration_seconds",
            "Wall time of a pass.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.last_success = Gauge("connector_last_success_timestamp_seconds", "When the last successful pass ended (unix time).", registry=self.registry)
        self.source_items = Gauge("connector_source_items", "Items in the last fetch.", registry=self.registry)
        for kind in ("transient", "permanent", "in_doubt"):
            self.failures_open.labels(kind).set(0)
        self.last_pass_end: datetime | None = None
        self.last_outcome: str | None = None
        self.last_error: str | None = None

    def observe_pass(self, result: PassResult | None, seconds: float, failures_open: dict[str, int], in_doubt: int, error: str | None = None) -> None:
        outcome = result.outcome if result is not None else "error"
        self.passes.labels(outcome).inc()
        self.duration.observe(seconds)
        if result is not None:
            for action in result.results:
                self.actions.labels(action.action, action.outcome).inc()
            self.source_items.set(result.fetched)
        for kind in ("transient", "permanent", "in_doubt"):
            self.failures_open.labels(kind).set(failures_open.get(kind, 0))
        self.in_doubt.set(in_doubt)
        now = datetime.now(UTC)
        self.last_pass_end = now
        self.last_outcome = outcome
        self.last_error = error or (result.error if result is not None else None)
        if outcome in ("ok", "failed_items"):
            self.last_success.set(now.timestamp())

    def health(self, schedule: PassSchedule | float, now: datetime | None = None, *, since: datetime | None = None) -> tuple[bool, dict[str, Any]]:
        """Healthy while the last pass ended within three scheduled passes (`PassSchedule.due_by`),
        counted from the last pass's end, or from `since` (a schedule changed by SIGHUP) when later.
        A number is an interval in seconds."""
        if not isinstance(schedule, PassSchedule):
            schedule = PassSchedule(interval_seconds=schedule)
        now = now or datetime.now(UTC)
        if self.last_pass_end is None:
            return False, {"healthy": False, "reason": "no pass has finished yet", "schedule": schedule.describe()}
        age = (now - self.last_pass_end).total_seconds()
        reference = max(self.last_pass_end, since) if since is not None else self.last_pass_end
        due = schedule.due_by(reference)
        body = {
            "last_pass_ended_at": self.last_pass_end.isoformat(),
            "last_outcome": self.last_outcome,
            "seconds_since_last_pass": round(age, 1),
            "schedule": schedule.describe(),
            "healthy_until": due.isoformat() if due.year < 9999 else None,
        }
        if now > due:
            if schedule.cron is None:
                limit = (due - reference).total_seconds()
                gap = schedule.interval_seconds + schedule.jitter_seconds
                reason = f"no pass ended in the last {limit:g} s ({HEALTHY_WITHIN_INTERVALS} intervals of {gap:g} s)"
            else:
                reason = f"no pass ended since {reference.isoformat()}: {HEALTHY_WITHIN_INTERVALS} runs of {schedule.describe()} were due by {due.isoformat()}"
            return False, {"healthy": False, "reason": reason, **body}
        return True, {"healthy": True, **body}


HEALTH_KEY = "connector.health"  # environ key: the verdict, for the status pages (connector.web.app reads it)
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", "default-src 'none'"))


class MetricsServer:
    """`/metrics` (Prometheus text format, prometheus_client's WSGI app) and `/healthz` (200 or 503
    with a JSON reason) on 127.0.0.1, or the address `observability.metrics_host` names; every other
    path goes to `pages` (the status pages, `connector.web.app.StatusPages`), else 404. Served by
    waitress; the socket is bound here, so a port in use is a ConfigError before the first pass."""

    def __init__(
        self,
        metrics: Metrics,
        port: int,
        interval_seconds: float | None = None,
        host: str = "127.0.0.1",
        *,
        schedule: PassSchedule | None = None,
        pages: WsgiApp | None = None,
        role: Callable[[], tuple[str, bool]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.role = role  # replicas on PostgreSQL: (leader | standby, is some leader's lease fresh)
        if schedule is None:
            schedule = PassSchedule(interval_seconds=interval_seconds) if interval_seconds is not None else PassSchedule()
        self._expected: tuple[PassSchedule, datetime | None] = (schedule, None)
        self.pages = pages
        self._prometheus = make_wsgi_app(metrics.registry)
        address = ipaddress.ip_address(host)  # observability.metrics_host, checked at load
        try:
            self.server = WsgiServer(self._app, host, port, name="metrics")
        except OSError as exc:  # before the first pass: the service stays down with exit 2, not a restart loop
            raise ConfigError(bind_problem(host, port, exc, "observability.metrics_port")) from None
        self.port = self.server.port
        self.host = host
        if not address.is_loopback:
            where = "every interface" if address.is_unspecified else f"the interface of {host}"
            log.warning(
                "observability.metrics_host = %s: /metrics and /healthz listen on %s (port %d), open to whoever can reach it; "
                "keep the port behind a firewall or a container network",
                host,
                where,
                self.port,
            )

    def verdict(self, now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
        """The `/healthz` verdict: healthy or not, and its JSON body. A replica's body says its role;
        a standby runs no pass, so it is healthy while some leader's lease is fresh."""
        schedule, since = self._expected
        if self.role is None:
            return self.metrics.health(schedule, now, since=since)
        role, lease_fresh = self.role()
        if role == "standby":
            body: dict[str, Any] = {"healthy": lease_fresh, "role": "standby", "leader_lease_fresh": lease_fresh}
            if not lease_fresh:
                body["reason"] = "standby, and no replica holds a fresh lease"
            return lease_fresh, body
        healthy, body = self.metrics.health(schedule, now, since=since)
        return healthy, {**body, "role": "leader"}

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._prometheus(environ, lambda status, headers, *exc: start_response(status, [*headers, *SECURITY_HEADERS], *exc))
        if path == "/healthz":
            healthy, body = self.verdict()
            return _send(start_response, 200 if healthy else 503, json.dumps(body).encode())
        if self.pages is not None:
            environ[HEALTH_KEY] = self.verdict
            return self.pages(environ, start_response)
        return _send(start_response, 404, b'{"error": "not found"}')

    @property
    def schedule(self) -> PassSchedule:
        return self._expected[0]

    def set_schedule(self, schedule: PassSchedule, now: datetime | None = None) -> None:
        """The schedule changed (SIGHUP): `/healthz` judges by it from now on, counting from now if the
        last pass ended earlier (the new schedule's first pass is not due yet)."""
        if schedule != self._expected[0]:
            self._expected = (schedule, now or datetime.now(UTC))

    def start(self) -> MetricsServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


def _send(start_response: Callable[..., Any], status: int, body: bytes) -> list[bytes]:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *SECURITY_HEADERS])
    return [body]
