"""The sandbox's state behind one lock: events, the request log, counters, faults, and the API's effects on them."""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from connector.sandbox.directory import Partner, seeded_busy
from connector.sandbox.faults import check_faults, choose_fault
from connector.sandbox.validation import START_TIME_FORMAT, UPDATE_FIELDS, validate_availability, validate_create, validate_update

MAX_AVAILABILITY_RESULTS = 1000
NOT_FOUND = "Not found."
NO_PERMISSION = "You do not have permission to perform this action."
HIDDEN = ("app_id", "version")  # stored with an event, never shown by the API
Interval = tuple[datetime, datetime]
Found = list[tuple[datetime, datetime, list[str]]]  # (start, end, the members free throughout)


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
        self.by_client: Counter[str] = Counter()  # requests per User-Agent: which replica sent what
        self.connections = 0
        self.script: list[dict[str, Any]] = []
        self.on_change: Callable[[dict[str, Any]], None] | None = None  # webhooks: called under the lock with a copy
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

    def record(self, method: str, path: str, status: int | None, fault: str | None, received: float | None = None, *, client: str | None = None) -> None:
        """`at` is when the answer went out; `received_at` when the request came in (rate checks);
        `client` the User-Agent (the connector names its process there)."""
        now = time.time()
        entry = {"seq": 0, "method": method, "path": path[:300], "status": status, "fault": fault, "at": now, "received_at": received or now}
        with self.lock:
            entry["seq"] = len(self.log) + 1
            self.log.append(entry)
            self.by_method[method] += 1
            self.by_status[str(status) if status is not None else "dropped"] += 1
            if fault:
                self.faults_seen[fault] += 1
            if client:
                self.by_client[client] += 1

    def reset(self, faults: dict[str, Any]) -> None:
        """Clear events, request log, counters and script, adopt `faults` (reseeded); event ids keep increasing."""
        with self.lock:
            self.events.clear()
            self.by_organizer.clear()
            self.log.clear()
            self.by_method.clear()
            self.by_status.clear()
            self.faults_seen.clear()
            self.by_client.clear()
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

    def changed(self, event_id: int) -> None:
        """Tell the webhook sender, if any, that the event changed (call under the lock: deliveries queue in change order)."""
        if self.on_change is not None and event_id in self.events:
            self.on_change(copy_event(self.events[event_id]))

    def _owned(self, partner: Partner, event_id: int) -> tuple[int, Any] | None:
        """404 / 403 answer if the partner cannot touch this event (call under the lock)."""
        event = self.events.get(event_id)
        if event is None:
            return 404, {"detail": NOT_FOUND}
        if event["app_id"] != partner.app_id:
            return 403, {"detail": NO_PERMISSION}
        return None

    def _busy(self, email: str, start: datetime, end: datetime) -> list[Interval]:
        """The UTC (start, end) of `email`'s busy times overlapping start..end: the seeded calendar and
        every event they organize (call under the lock)."""
        out = seeded_busy(email, start, end)
        for event_id in self.by_organizer.get(email, ()):
            event = self.events[event_id]
            begins = datetime.strptime(event["start_time"], START_TIME_FORMAT).replace(tzinfo=ZoneInfo(event["timezone"])).astimezone(UTC)
            ends = begins + timedelta(minutes=event["duration"])
            if begins < end and ends > start:
                out.append((begins, ends))
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
            self.changed(event_id)
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
            self.changed(event_id)
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
        groups: list[tuple[list[str], int]] = query["groups"]
        emails = list(dict.fromkeys(email for members, _ in groups for email in members))
        found = _free_slots if query["format"] == "slots" else _free_periods
        results: list[dict[str, Any]] = []
        for start, end in query["periods"]:
            with self.lock:
                calendars = Calendars(groups, emails, {email: self._busy(email, start, end) for email in emails})
            for s, e, present in found(calendars, start, end, query["duration"]):
                results.append({"start": s.astimezone(start.tzinfo).isoformat(), "end": e.astimezone(start.tzinfo).isoformat(), "participants": present})
                if len(results) >= MAX_AVAILABILITY_RESULTS:
                    return 200, results
        return 200, results


class Calendars:
    """The busy times of the queried users, and who is free when.

    A slot fits when, in every group, at least as many members as it needs are free throughout it
    ("all": every one). Its participants are the members (of any group) free throughout it."""

    def __init__(self, groups: list[tuple[list[str], int]], emails: list[str], busy: dict[str, list[Interval]]) -> None:
        self.groups, self.emails, self.busy = groups, emails, busy

    def free(self, email: str, start: datetime, end: datetime) -> bool:
        return not any(b_start < end and b_end > start for b_start, b_end in self.busy[email])

    def fits(self, start: datetime, end: datetime) -> bool:
        return all(sum(self.free(m, start, end) for m in members) >= needed for members, needed in self.groups)

    def present(self, start: datetime, end: datetime) -> list[str]:
        return [email for email in self.emails if self.free(email, start, end)]

    def edges(self, start: datetime, end: datetime) -> list[datetime]:
        """Every instant strictly inside start..end where someone's busy time begins or ends, sorted."""
        return sorted({t for times in self.busy.values() for b in times for t in b if start < t < end})


def _free_slots(calendars: Calendars, start: datetime, end: datetime, duration: timedelta) -> Found:
    """Back-to-back slots of `duration`, each as early as it fits: after a slot the next one is tried at
    its end, after a slot that does not fit at the next instant someone's busy time begins or ends."""
    edges, at = calendars.edges(start, end), start
    out: Found = []
    while at + duration <= end and len(out) < MAX_AVAILABILITY_RESULTS:
        if calendars.fits(at, at + duration):
            out.append((at, at + duration, calendars.present(at, at + duration)))
            at += duration
        else:
            later = bisect_right(edges, at)
            if later == len(edges):
                break
            at = edges[later]
    return out


def _free_periods(calendars: Calendars, start: datetime, end: datetime, duration: timedelta) -> Found:
    """The stretches covered by slots that fit (of any start time), cut where the members free change:
    each lists the members free throughout it. Whether a slot starting at t fits changes only at an
    edge or `duration` before one, so those instants, and one instant between each two, decide."""
    latest = end - duration
    if latest < start:
        return []
    edges = calendars.edges(start, end)
    points = sorted({start, latest} | {p for edge in edges for p in (edge, edge - duration) if start < p < latest})
    covered: list[list[datetime]] = []

    def cover(first: datetime, last: datetime) -> None:  # slots starting first..last fit
        if covered and first <= covered[-1][1]:
            covered[-1][1] = max(covered[-1][1], last + duration)
        else:
            covered.append([first, last + duration])

    for index, point in enumerate(points):
        if calendars.fits(point, point + duration):
            cover(point, point)
        if index + 1 < len(points):
            middle = point + (points[index + 1] - point) / 2
            if calendars.fits(middle, middle + duration):
                cover(point, points[index + 1])
    out: Found = []
    for first, last in covered:
        cuts = [first, *(edge for edge in edges if first < edge < last), last]
        for s, e in pairwise(cuts):
            present = calendars.present(s, e)
            if out and out[-1][1] == s and out[-1][2] == present:
                out[-1] = (out[-1][0], e, present)
            else:
                out.append((s, e, present))
    return out
