"""Jobylon's calendar_event webhooks, as the sandbox plays them: a delivery to the configured URL
whenever an event changes (created or updated through the API; an RSVP, a cancellation or a
change made "inside Jobylon" through the control routes), with basic auth and custom headers,
retried on Jobylon's schedule (at once, then after 30 s, 5 min, 50 min, 8.3 h and 3.5 days),
compressed by `retry_scale` for tests.

Deliveries go out from one thread in the order they are due, so a delivery being retried can be
overtaken by a later one of the same event, as with Jobylon. Standard library plus `requests`.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from typing import Any

import requests

# Seconds before each retry of a failed delivery: at once, then 30 s, 5 min, 50 min, 8.3 h and 3.5 days.
RETRY_DELAYS = (0.0, 30.0, 300.0, 3000.0, 29880.0, 302400.0)
RSVPS = ("no_rsvp", "awaiting", "accepted", "declined")
STATUSES = ("created", "invited", "rescheduled", "canceled")
LINK_KEYS = ("vc_link_url", "vc_link")


class WebhookSender:
    """Delivers calendar_event webhooks: `deliver(event)` queues one; `wait_idle()` waits until all
    are delivered or given up; `log()` says what went out and how it was answered."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        headers: dict[str, str] | None = None,
        retry_scale: float = 1.0,
        link_key: str = "vc_link_url",
        timeout: float = 5.0,
        drop_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook url must be an http(s) URL")
        if link_key not in LINK_KEYS:
            raise ValueError(f"link_key must be one of {LINK_KEYS}")
        if retry_scale < 0:
            raise ValueError("retry_scale must be >= 0")
        self.url = url
        self.auth = (username, password or "") if username else None
        self.headers = dict(headers or {})
        self.retry_scale = retry_scale
        self.link_key = link_key
        self.timeout = timeout
        self.drop_rate = drop_rate  # share of deliveries lost on the way (retried as Jobylon does)
        self._rng = random.Random(seed)
        self.rsvps: dict[int, dict[int, str]] = {}  # event id -> application id -> rsvp
        self._queue: list[tuple[float, int, dict[str, Any], int]] = []  # (due, seq, body, attempt)
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._log: list[dict[str, Any]] = []
        self._stopped = False
        self._held = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "basic_auth": self.auth is not None,
            "headers": sorted(self.headers),
            "retry_scale": self.retry_scale,
            "link_key": self.link_key,
        }

    # -- what goes out

    def body(self, event: dict[str, Any]) -> dict[str, Any]:
        """The delivery of one event, in Jobylon's shape."""
        answers = self.rsvps.setdefault(event["id"], {})
        participants = [{"id": application_id, "rsvp": answers.get(application_id, "no_rsvp")} for application_id in event["participants"]]
        calendar_event = {
            "id": event["id"],
            "title": event["title"],
            "description": event["description"],
            "duration": event["duration"],
            "location": event.get("location"),
            "organizer": event["organizer"],
            "participants": participants,
            "start_time": event["start_time"],
            "timezone": event["timezone"],
            "status": event["status"],
            "videoconferencing": bool(event.get("videoconferencing")),
            self.link_key: event.get("vc_link_url"),
        }
        return {"event_type": "calendar_event", "action": "updated", "calendar_event": calendar_event}

    def deliver(self, event: dict[str, Any]) -> None:
        with self._cond:
            body = self.body(event)
            now = time.monotonic()
            heapq.heappush(self._queue, (now, next(self._seq), body, 1))
            self._cond.notify()

    def set_rsvp(self, event_id: int, application_id: int, rsvp: str) -> None:
        if rsvp not in RSVPS:
            raise ValueError(f"rsvp must be one of {RSVPS}")
        with self._cond:
            self.rsvps.setdefault(event_id, {})[application_id] = rsvp

    def hold(self, held: bool = True) -> None:
        """Keep deliveries queued (Jobylon being slow) until `hold(False)`."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    # -- waiting and inspection

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once nothing is queued or in flight (every delivery answered 2xx or given up)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def log(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(entry) for entry in self._log]

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._session.close()

    # -- the delivery thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (self._held or not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._queue or self._held else max(0.0, self._queue[0][0] - time.monotonic()))
                if self._stopped:
                    return
                _, _, body, attempt = heapq.heappop(self._queue)
                self._busy += 1
            status = self._post(body)
            with self._cond:
                self._busy -= 1
                event = body["calendar_event"]
                self._log.append({"event_id": event["id"], "status": event["status"], "attempt": attempt, "http_status": status, "at": time.time()})
                if (status is None or not 200 <= status < 300) and attempt <= len(RETRY_DELAYS):
                    due = time.monotonic() + RETRY_DELAYS[attempt - 1] * self.retry_scale
                    heapq.heappush(self._queue, (due, next(self._seq), body, attempt + 1))
                self._cond.notify_all()

    def _post(self, body: dict[str, Any]) -> int | None:
        if self.drop_rate and self._rng.random() < self.drop_rate:
            return None
        try:
            with self._session.post(self.url, json=body, auth=self.auth, headers=self.headers, timeout=self.timeout, allow_redirects=False) as answer:
                return answer.status_code
        except requests.RequestException:
            return None
