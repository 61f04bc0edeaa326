"""Prometheus metrics and the health verdict, served on loopback by the daemon (`/metrics`, `/healthz`)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connector.results import PassResult

HEALTHY_WITHIN_INTERVALS = 3
disable_created_metrics()  # the *_created series only add noise for a long-running service


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

    def health(self, interval_seconds: float, now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
        """Healthy while the last pass ended within three intervals."""
        now = now or datetime.now(UTC)
        limit = HEALTHY_WITHIN_INTERVALS * interval_seconds
        if self.last_pass_end is None:
            return False, {"healthy": False, "reason": "no pass has finished yet"}
        age = (now - self.last_pass_end).total_seconds()
        body = {"last_pass_ended_at": self.last_pass_end.isoformat(), "last_outcome": self.last_outcome, "seconds_since_last_pass": round(age, 1)}
        if age > limit:
            return False, {"healthy": False, "reason": f"no pass ended in the last {limit:g} s (3 intervals)", **body}
        return True, {"healthy": True, **body}


class _QuietServer(ThreadingHTTPServer):
    """A scraper that hangs up early is not an error worth a traceback in the service's log."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` (200 or 503 with a JSON reason) on 127.0.0.1."""

    def __init__(self, metrics: Metrics, port: int, interval_seconds: float, host: str = "127.0.0.1") -> None:
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._send(200, generate_latest(outer.metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path.split("?")[0] == "/healthz":
                    healthy, body = outer.metrics.health(outer.interval_seconds)
                    self._send(200 if healthy else 503, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b'{"error": "not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
