"""The sandbox's state behind one lock: events, the request log, counters, faults, and the API's effects on them."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connector.sandbox.directory import Partner
from connector.sandbox.faults import check_faults, choose_fault
from connector.sandbox.validation import START_TIME_FORMAT, UPDATE_FIELDS, validate_availability, validate_create, validate_update

MAX_AVAILABILITY_RESULTS = 1000
NOT_FOUND = "Not found."
NO_PERMISSION = "You do not have permission to perform this action."
HIDDEN = ("app_id", "version")  # stored with an event, never shown by the API


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def copy_event(event: dict[str, Any], *, public: bool = False) -> dict[str, Any]:
    """A copy sharing no list with the stored event; `public`: as the API shows it, without partner id and version."""
    out = {**event, "participants": list(event["participants"])}
    if public:
        for key in HIDDEN:
            out.pop(key, None)
    return out


class SandboxState:
    """Events, the request log, counters and the fault configuration, behind one lock."""

    def __init__(self, *, faults: dict[str, Any], first_event_id: int) -> None:
        self.lock = threading.Lock()
        self.events: dict[int, dict[str, Any]] = {}
        self.by_organizer: dict[str, set[int]] = {}
        self.next_id = first_event_id
        self.log: list[dict[str, Any]] = []
        self.by_method: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.faults_seen: Counter[str] = Counter()
        self.connections = 0
        self.script: list[dict[str, Any]] = []
        self.use_faults(faults, reseed=True)

    def use_faults(self, config: dict[str, Any], *, reseed: bool) -> None:
        """Check and adopt a whole fault configuration; `reseed` restarts the random sequence from its seed (call under the lock)."""
        self.faults = check_faults(config)
        if reseed:
            self.rng = random.Random(self.faults["seed"])

    def pick_fault(self, method: str) -> dict[str, Any] | None:
        """The scripted fault for this method if one is queued, else maybe a random one."""
        with self.lock:
            return choose_fault(method, self.script, self.faults, self.rng)

    def record(self, method: str, path: str, status: int | None, fault: str | None, received: float | None = None) -> None:
        """`at` is when the answer went out; `received_at` when the request came in (rate checks)."""
        now = time.time()
        entry = {"seq": 0, "method": method, "path": path[:300], "status": status, "fault": fault, "at": now, "received_at": received or now}
        with self.lock:
            entry["seq"] = len(self.log) + 1
            self.log.append(entry)
            self.by_method[method] += 1
            self.by_status[str(status) if status is not None else "dropped"] += 1
            if fault:
                self.faults_seen[fault] += 1

    def reset(self, faults: dict[str, Any]) -> None:
        """Clear events, request log, counters and script, adopt `faults` (reseeded); event ids keep increasing."""
        with self.lock:
            self.events.clear()
            self.by_organizer.clear()
            self.log.clear()
            self.by_method.clear()
            self.by_status.clear()
            self.faults_seen.clear()
            self.script.clear()
            self.use_faults(faults, reseed=True)

    # -- events (the helpers below want the lock held)

    def remove(self, event_id: int) -> dict[str, Any] | None:
        """Take an event out, if it is there (call under the lock)."""
        event = self.events.pop(event_id, None)
        if event is not None:
            ids = self.by_organizer.get(event["organizer"])
            if ids is not None:
                ids.discard(event_id)
        return event

    def _owned(self, partner: Partner, event_id: int) -> tuple[int, Any] | None:
        """404 / 403 answer if the partner cannot touch this event (call under the lock)."""
        event = self.events.get(event_id)
        if event is None:
            return 404, {"detail": NOT_FOUND}
        if event["app_id"] != partner.app_id:
            return 403, {"detail": NO_PERMISSION}
        return None

    def _busy(self, email: str) -> list[tuple[datetime, datetime]]:
        """The UTC (start, end) of every event `email` organizes (call under the lock)."""
        out = []
        for event_id in self.by_organizer.get(email, ()):
            event = self.events[event_id]
            start = datetime.strptime(event["start_time"], START_TIME_FORMAT).replace(tzinfo=ZoneInfo(event["timezone"])).astimezone(UTC)
            out.append((start, start + timedelta(minutes=event["duration"])))
        return out

    # -- the API's effects: (status, answer); they take the lock themselves

    def create(self, partner: Partner, body: dict[str, Any]) -> tuple[int, Any]:
        errors = validate_create(body, partner)
        if errors:
            return 400, errors
        now = _now()
        with self.lock:
            event_id = self.next_id
            self.next_id += 1
            video = body.get("videoconferencing", False)
            self.events[event_id] = {
                "id": event_id,
                "app_id": partner.app_id,
                "title": body["title"],
                "description": body["description"],
                "duration": body["duration"],
                "start_time": body["start_time"],
                "timezone": body["timezone"],
                "organizer": body["organizer"],
                "participants": list(body["participants"]),
                "location": body.get("location"),
                "videoconferencing": video,
                "status": "created",
                "vc_link_url": f"https://meet.sandbox.jobylon.invalid/e/{event_id}" if video else None,
                "created_at": now,
                "updated_at": now,
                "version": 1,
            }
            self.by_organizer.setdefault(body["organizer"], set()).add(event_id)
        return 201, {"id": event_id}

    def update(self, partner: Partner, event_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            refused = self._owned(partner, event_id)
        if refused:
            return refused
        errors = validate_update(body)
        if errors:
            return 400, errors
        with self.lock:
            refused = self._owned(partner, event_id)  # it may have gone meanwhile
            if refused:
                return refused
            event = self.events[event_id]
            moved = any(event[k] != body[k] for k in ("start_time", "timezone", "duration"))
            event.update({k: body[k] for k in UPDATE_FIELDS})
            if moved and event["status"] != "canceled":
                event["status"] = "rescheduled"
            event["version"] += 1
            event["updated_at"] = _now()
            return 200, copy_event(event, public=True)

    def delete(self, partner: Partner, event_id: int) -> tuple[int, Any]:
        with self.lock:
            refused = self._owned(partner, event_id)
            if refused:
                return refused
            self.remove(event_id)
        return 204, None

    def availability(self, partner: Partner, body: dict[str, Any]) -> tuple[int, Any]:
        errors, query = validate_availability(body, partner)
        if errors:
            return 400, errors
        required, optional = list(dict.fromkeys(query["required"])), list(dict.fromkeys(query["optional"]))
        with self.lock:
            busy = {email: self._busy(email) for email in required + optional}
        duration: timedelta = query["duration"]
        results: list[dict[str, Any]] = []
        for start, end in query["periods"]:
            zone = start.tzinfo
            blocked = sorted(b for email in required for b in busy[email])
            free, cursor = [], start
            for b_start, b_end in blocked:
                if b_end <= cursor or b_start >= end:
                    continue
                if b_start > cursor:
                    free.append((cursor, b_start))
                cursor = max(cursor, b_end)
            if cursor < end:
                free.append((cursor, end))
            windows = [(s, e) for s, e in free if e - s >= duration]
            if query["format"] == "slots":
                slots: list[tuple[datetime, datetime]] = []
                for s, e in windows:
                    while s + duration <= e and len(slots) < MAX_AVAILABILITY_RESULTS:
                        slots.append((s, s + duration))
                        s += duration
                windows = slots
            for s, e in windows:
                present = required + [m for m in optional if not any(b_s < e and b_e > s for b_s, b_e in busy[m])]
                results.append({"start": s.astimezone(zone).isoformat(), "end": e.astimezone(zone).isoformat(), "participants": present})
                if len(results) >= MAX_AVAILABILITY_RESULTS:
                    return 200, results
        return 200, results
