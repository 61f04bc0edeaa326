"""What people and scripts see: rich tables for terminals and the JSON documents of DESIGN.md §4."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.table import Table

from connector.availability import AvailabilityQuery, Slot
from connector.plan import Plan
from connector.results import COUNT_NAMES, PassResult

SUMMARY_COLUMNS = ("created", "updated", "recreated", "deleted", "unchanged", "invalid", "failed")


def summary_table(result: PassResult, title: str | None = None) -> Fitted:
    """One row of counts; where that row would not fit, one line per count."""
    columns = list(SUMMARY_COLUMNS)
    for extra in ("in_doubt", "skipped", "held_back"):
        if result.counts.get(extra):
            columns.append(extra)
    names = [name.replace("_", " ") for name in columns]
    values = [str(result.counts.get(name, 0)) for name in columns]
    heading = title or f"pass {result.run_id if result.run_id is not None else '(dry run)'}: {result.outcome}"

    def build(width: int) -> Table:
        table = Table(title=heading)
        if sum(max(len(n), len(v)) + 3 for n, v in zip(names, values, strict=True)) + 1 <= width:
            for name in names:
                table.add_column(name, justify="right")
            table.add_row(*values)
        else:
            table.add_column("count")
            table.add_column("", justify="right")
            for name, value in zip(names, values, strict=True):
                table.add_row(name, value)
        return table

    return Fitted(build)


def plan_rows(planned: Plan) -> list[dict[str, Any]]:
    rows = []
    for action in planned.actions:
        reason = getattr(action, "reason", None)
        if action.name == "invalid":
            reason = action.item.message  # type: ignore[union-attr]
        rows.append({"action": action.name, "remote_id": action.remote_id, "event_id": action.event_id, "reason": reason})
    return rows


class Fitted:
    """A table built for the width it is printed at: a terminal's own, 80 columns included, or a
    pipe's 120 (`console()`); columns of low value are left out on a narrow one."""

    def __init__(self, build: Callable[[int], Table]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        yield self.build(options.max_width)


def _id_column(table: Table, name: str, max_width: int | None = None) -> None:
    """Ids stay on one line: cut with an ellipsis if the terminal is too narrow, never folded."""
    table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=max_width)


def plan_table(planned: Plan) -> Table:
    table = Table(title=f"plan: {len(planned.calls)} call(s), {planned.unchanged} unchanged")
    table.add_column("action", no_wrap=True)
    _id_column(table, "remote id")
    _id_column(table, "event id")
    table.add_column("reason", overflow="fold")
    for row in plan_rows(planned):
        table.add_row(row["action"], row["remote_id"], "" if row["event_id"] is None else str(row["event_id"]), row["reason"] or "")
    return table


def runs_table(runs: list[dict[str, Any]]) -> Fitted:
    """The last runs; under 100 columns without the fetch kind and the duration, the start without its year."""

    def build(width: int) -> Table:
        narrow = width < 100
        table = Table(title="last runs")
        columns = ("id", "started (UTC)", "outcome") if narrow else ("id", "started (UTC)", "ms", "outcome", "fetch")
        for column in columns:
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        for column in ("counts", "error"):
            table.add_column(column, overflow="fold", ratio=1)
        for run in runs:
            counts = run["counts"] or {}
            cells = {
                "id": str(run["id"]),
                "started (UTC)": (run["started_at"] or "")[5 if narrow else 0 : 19].replace("T", " "),
                "ms": "" if run["duration_ms"] is None else str(run["duration_ms"]),
                "outcome": run["outcome"] or "",
                "fetch": {True: "complete", False: "changes", None: ""}[run["complete_fetch"]],
            }
            table.add_row(
                *(cells[column] for column in columns),
                ", ".join(f"{name.replace('_', ' ')} {counts[name]}" for name in (*COUNT_NAMES, "held_back") if counts.get(name)),
                (run["error"] or "")[:160],
            )
        return table

    return Fitted(build)


def counts_table(title: str, counts: dict[str, int], key: str | None = None) -> Table:
    """Counts per key; the key column says what is counted (`key`, by default "kind" for a table
    of failures, else "state")."""
    table = Table(title=title)
    table.add_column(key or ("kind" if "failures" in title else "state"))
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(key, str(value))
    if not counts:
        table.add_row("(none)", "0")
    return table


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def console(stderr: bool = False) -> Console:
    """A terminal gets its own width; a pipe or a log file gets 120 columns, wide enough for
    every table here without cutting a column name. An explicit COLUMNS counts for a pipe too."""
    stream = sys.stderr if stderr else sys.stdout
    explicit = os.environ.get("COLUMNS", "").isdigit()  # COLUMNS=80 connector failures list | less
    return Console(stderr=stderr, soft_wrap=False, width=None if stream.isatty() or explicit else 120)


# The failure list's columns by value, each shown from a terminal width on: what to look at
# (`failures show ID`), whose, what kind, how often, and why come first; the message takes the rest.
FAILURE_COLUMNS = (
    ("id", 0),
    ("remote id", 0),
    ("kind", 0),
    ("attempts", 0),
    ("action", 100),
    ("last", 120),
    ("http", 150),  # the message names the HTTP status too
    ("next attempt", 150),
)
MESSAGE_MIN_WIDTH = 20  # narrower, a message is fragments


def _short_time(value: str | None) -> str:
    return (value or "")[5:19].replace("T", " ")


def failures_table(rows: list[dict[str, Any]], title: str) -> Fitted:
    """The failure list, fitted to the width it is printed at (see FAILURE_COLUMNS)."""

    cells = [
        {
            "id": str(row["id"]),
            "remote id": row["remote_id"],
            "kind": row["kind"],
            "attempts": str(row["attempts"]),
            "action": row["action"],
            "last": _short_time(row["last_at"]),
            "http": "" if row["http_status"] is None else str(row["http_status"]),
            "next attempt": "resolved " + _short_time(row["resolved_at"]) if row["resolved_at"] else _short_time(row["next_attempt_at"]),
            "message": (row["message"] or "")[:160],
        }
        for row in rows
    ]

    def build(width: int) -> Table:
        table = Table(title=f"{title}: {len(rows)}")
        shown = [name for name, from_width in FAILURE_COLUMNS if width >= from_width]
        # Every column but the remote id and the message is as wide as its widest cell; the remote id
        # gets what is left after a readable message (cut with an ellipsis past that), the message the rest.
        fixed = sum(max(len(name), *(len(c[name]) for c in cells)) for name in shown if name != "remote id")
        borders = 3 * (len(shown) + 1) + 1
        for name in shown:
            if name == "remote id":
                _id_column(table, name, max_width=max(len(name), width - borders - fixed - MESSAGE_MIN_WIDTH))
            elif name == "id":
                _id_column(table, name)
            else:
                table.add_column(name, no_wrap=True, justify="right" if name in ("attempts", "http") else "left")
        table.add_column("message", overflow="fold", ratio=1)
        for c in cells:
            table.add_row(*(c[name] for name in shown), c["message"])
        return table

    return Fitted(build)


def failure_panel(document: dict[str, Any]) -> Table:
    table = Table(title=f"failure {document['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in document.items():
        if key in ("request",):
            value = json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""
        table.add_row(key, "" if value is None else str(value))
    return table


def replay_table(result: PassResult, remote_ids: list[str], title: str = "replay") -> Table:
    """What a replay (or `resolve --recreate`, named by `title`) did per remote id."""
    table = Table(title=f"{title}: {result.outcome}")
    _id_column(table, "remote id")
    table.add_column("action", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    _id_column(table, "event id")
    table.add_column("detail", overflow="fold")
    seen = set()
    for action in result.results:
        seen.add(action.remote_id)
        table.add_row(action.remote_id, action.action, action.outcome, "" if action.event_id is None else str(action.event_id), action.message)
    for remote_id in remote_ids:
        if remote_id not in seen:
            table.add_row(remote_id, "-", "in step", "", "nothing to send: Jobylon already matches the source")
    return table


def availability_table(query: AvailabilityQuery, slots: list[Slot]) -> Table:
    """Free slots (or periods) in the time zone of the query's --from; the end's date only when it
    falls on another day."""
    zone = query.start.tzinfo
    offset = query.start.strftime("%z")
    shown = "UTC" if offset in ("+0000", "") else f"UTC{offset[:3]}:{offset[3:]}"
    kind = "slots of" if query.response_format == "slots" else "periods for meetings of"
    table = Table(title=f"{len(slots)} {kind} {query.duration_minutes} min where {query.needs}, times {shown}")
    table.add_column("start", no_wrap=True)
    table.add_column("end", no_wrap=True)
    table.add_column("min", justify="right")
    table.add_column("free", overflow="fold")
    for slot in slots:
        start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
        table.add_row(
            start.strftime("%a %Y-%m-%d %H:%M"),
            end.strftime("%H:%M" if end.date() == start.date() else "%a %Y-%m-%d %H:%M"),
            str(slot.minutes),
            ", ".join(slot.participants),
        )
    if not slots:
        table.add_row("(none)", "", "", "")
    return table


# -- Jobylon's calendar_event webhooks ------------------------------------------------------------


def webhooks_line(counts: dict[str, Any]) -> str:
    """`status`: one line on what Jobylon's webhooks told us."""
    if not counts.get("events"):
        return "webhooks: no calendar_event delivery received"
    statuses = ", ".join(f"{name} {n}" for name, n in counts["by_status"].items())
    settled = counts.get("settled_as", {})
    waiting = sum(settled.get(name, 0) for name in ("received", "waiting", "ambiguous", "unmatched"))
    rsvps = ", ".join(f"{name} {n}" for name, n in counts.get("rsvps", {}).items()) or "none"
    parts = [
        f"webhooks: {counts['events']} events ({statuses})",
        f"RSVPs: {rsvps}",
        f"in-doubt creates healed: {counts.get('healed', 0)}",
        f"unmatched: {waiting}",
    ]
    if settled.get("duplicate"):
        parts.append(f"likely duplicates: {settled['duplicate']}")
    if counts.get("forwards_unsent"):
        parts.append(f"not yet forwarded: {counts['forwards_unsent']}")
    parts.append(f"last delivery: {counts.get('last_received_at') or '-'}")
    return "    ".join(parts)


def event_panel(document: dict[str, Any]) -> Table:
    """`events show`: the interview's event, its RSVPs and video link, and any likely duplicate."""
    event = document["event"]
    title = f"{document['remote_id']}: event {document['event_id'] if document['event_id'] is not None else '-'} ({document['mapping_status']})"
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    if event is None:
        table.add_row("webhook", "no calendar_event delivery received for this event yet")
    for shown in [event] if event is not None else []:
        table.add_row("status", shown["status"])
        table.add_row("title", shown["title"] or "")
        table.add_row("start", f"{shown['start_time'] or ''} {shown['timezone'] or ''} ({shown['duration']} min)")
        table.add_row("video link", shown["video_link"] or "(none)")
        table.add_row("RSVPs", ", ".join(f"{r['application_id']}: {r['rsvp']}" for r in shown["rsvps"]) or "(no participants)")
        table.add_row("received", f"{shown['received_at']} (first {shown['first_received_at']})")
        if shown["note"]:
            table.add_row("note", shown["note"])
    for other in document["other_events"]:
        table.add_row(f"event {other['event_id']}", f"{other['settled_as']}: {other['note'] or ''}")
    return table
