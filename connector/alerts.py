"""Alerts on state changes: one message when a bad condition starts, one when it ends, none between.

Conditions: the last pass failed, Jobylon refused the credentials, a guard held deletions back,
events Jobylon refuses this partner (403 on one event), open failures above
`alerts.failures_threshold`, no successful pass for `alerts.stale_after_seconds`.
Which conditions hold is kept in the state database, so a restart does not repeat an alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import requests

from connector.config import AlertsConfig

log = logging.getLogger("connector.alerts")
STATE_KEY = "alert_conditions"


@dataclass(frozen=True)
class Observation:
    outcome: str | None  # outcome of the last pass
    error: str | None
    open_failures: int
    last_success_at: datetime | None
    now: datetime
    forbidden: int = 0  # open failures of events Jobylon does not let this partner change (403)


def conditions(obs: Observation, config: AlertsConfig) -> dict[str, str]:
    """The bad conditions that hold now, each with a sentence for people."""
    found: dict[str, str] = {}
    if obs.outcome == "auth":
        found["credentials_refused"] = f"Jobylon refused the credentials: {obs.error or ''}".strip()
    elif obs.outcome in ("error", "source_error", "circuit_open"):
        found["pass_failed"] = f"the last pass failed ({obs.outcome}): {obs.error or ''}".strip()
    if obs.outcome == "guard":
        found["guard"] = f"a guard held deletions back: {obs.error or ''}".strip()
    if obs.forbidden:
        found["forbidden_events"] = (
            f"Jobylon refuses this partner {obs.forbidden} event(s) (403: made by another partner or inside Jobylon); see `connector failures --kind permanent`"
        )
    if obs.open_failures > config.failures_threshold:
        found["failures"] = f"{obs.open_failures} open failures (threshold {config.failures_threshold})"
    if obs.last_success_at is None or (obs.now - obs.last_success_at).total_seconds() > config.stale_after_seconds:
        since = obs.last_success_at.isoformat() if obs.last_success_at else "ever"
        found["stale"] = f"no successful pass since {since} (limit {config.stale_after_seconds:g} s)"
    return found


class Alerter:
    def __init__(
        self, config: AlertsConfig, get_state: Callable[[], str | None], set_state: Callable[[str], None], *, service: str = "jobylon-connector"
    ) -> None:
        self.config = config
        self._get = get_state
        self._set = set_state
        self.service = service
        self.session = requests.Session()

    def evaluate(self, obs: Observation) -> list[str]:
        """Send what changed; returns the messages sent (or attempted)."""
        now_bad = conditions(obs, self.config)
        before: dict[str, str] = json.loads(self._get() or "{}")
        messages = [f":rotating_light: {self.service}: {text}" for name, text in now_bad.items() if name not in before]
        messages += [f":white_check_mark: {self.service} recovered: {before[name]} — no longer the case" for name in before if name not in now_bad]
        self._set(json.dumps(now_bad))
        for text in messages:
            self.send(text)
        return messages

    def send(self, text: str) -> None:
        url = self.config.webhook_url.get_secret_value()
        if not url:
            return
        try:
            response = self.session.post(url, json={"text": text}, timeout=5)
            response.raise_for_status()
        except requests.RequestException as exc:
            log.warning("alert not delivered (%s); the condition stays recorded", type(exc).__name__)
