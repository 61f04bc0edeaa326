"""The webhook service: the receiver, plus a loop that settles what is left unsettled and sends
the due forwards every `webhooks.settle_interval_seconds`. `connector webhooks serve` runs it in
the foreground; `connector run` runs it beside the passes when `webhooks.enabled` (and settles
after every pass too)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType

from connector.clock import utcnow
from connector.config import Settings
from connector.redact import Redactor
from connector.store import Store
from connector.store.webhooks import WebhookStore
from connector.webhooks.forward import Forwarder
from connector.webhooks.intake import Intake, Settled
from connector.webhooks.receiver import Receiver

log = logging.getLogger("connector.webhooks")


class WebhookService:
    def __init__(self, settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        config = settings.webhooks
        self.intake = Intake(settings, store, clock=clock)
        self.forwarder = Forwarder(config.forward, settings.retry, WebhookStore(store), Redactor(settings.secrets()), clock=clock)
        self.receiver = Receiver(config, self.intake)  # binds now: a port in use is a ConfigError
        self.interval = config.settle_interval_seconds
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.receiver.url

    def start(self) -> WebhookService:
        self.receiver.start()
        self._loop = threading.Thread(target=self._run, name="webhooks-settle", daemon=True)
        self._loop.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> Settled | None:
        """Settle what is left unsettled, send the due forwards; problems are logged, never raised."""
        try:
            summary = self.intake.settle_pending()
            self.forwarder.send_due()
            return summary
        except Exception as exc:
            log.error("webhooks: settling or forwarding failed, tried again in %g s: %s", self.interval, exc)
            return None

    def stop(self) -> None:
        self._stop.set()
        self.receiver.stop()
        if self._loop is not None:
            self._loop.join(timeout=30)
        self.forwarder.close()


def serve(settings: Settings, store: Store) -> int:
    """`connector webhooks serve`: until SIGTERM or SIGINT, then exit 0."""
    service = WebhookService(settings, store)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    service.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def retry_forwards(settings: Settings, store: Store) -> tuple[int, int]:
    """`connector webhooks retry-forwards`: every unsent record due now; (sent, still unsent)."""
    tables = WebhookStore(store)
    tables.retry_forwards()
    forwarder = Forwarder(settings.webhooks.forward, settings.retry, tables, Redactor(settings.secrets()))
    try:
        sent = forwarder.send_due()
    finally:
        forwarder.close()
    return sent, len(tables.forwards())
