"""What people and scripts see: rich tables for terminals and the JSON documents of DESIGN.md §4."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.plan import Plan
from connector.results import COUNT_NAMES, PassResult

SUMMARY_COLUMNS = ("created", "updated", "recreated", "deleted", "unchanged", "invalid", "failed")


def summary_table(result: PassResult, title: str | None = None) -> Table:
    table = Table(title=title or f"pass {result.run_id if result.run_id is not None else '(dry run)'}: {result.outcome}")
    columns = list(SUMMARY_COLUMNS)
    for extra in ("in_doubt", "skipped", "held_back"):
        if result.counts.get(extra):
            columns.append(extra)
    for name in columns:
        table.add_column(name.replace("_", " "), justify="right")
    table.add_row(*(str(result.counts.get(name, 0)) for name in columns))
    return table


def plan_rows(planned: Plan) -> list[dict[str, Any]]:
    rows = []
    for action in planned.actions:
        reason = getattr(action, "reason", None)
        if action.name == "invalid":
            reason = action.item.message  # type: ignore[union-attr]
        rows.append({"action": action.name, "remote_id": action.remote_id, "event_id": action.event_id, "reason": reason})
    return rows


def plan_table(planned: Plan) -> Table:
    table = Table(title=f"plan: {len(planned.calls)} call(s), {planned.unchanged} unchanged")
    for column in ("action", "remote id", "event id", "reason"):
        table.add_column(column)
    for row in plan_rows(planned):
        table.add_row(row["action"], row["remote_id"], "" if row["event_id"] is None else str(row["event_id"]), row["reason"] or "")
    return table


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="last runs")
    for column in ("id", "started (UTC)", "ms", "outcome", "fetch", "counts", "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        counts = run["counts"] or {}
        table.add_row(
            str(run["id"]),
            (run["started_at"] or "")[:19].replace("T", " "),
            "" if run["duration_ms"] is None else str(run["duration_ms"]),
            run["outcome"] or "",
            {True: "complete", False: "changes", None: ""}[run["complete_fetch"]],
            ", ".join(f"{name.replace('_', ' ')} {counts[name]}" for name in (*COUNT_NAMES, "held_back") if counts.get(name)),
            (run["error"] or "")[:160],
        )
    return table


def counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("state")
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
    every table here without cutting a column name."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=False, width=None if stream.isatty() else 120)


def failures_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=f"{title}: {len(rows)}")
    for column in ("id", "remote id", "action", "kind", "http", "attempts", "last", "next attempt"):
        table.add_column(column, no_wrap=column not in ("remote id", "next attempt"), overflow="fold")
    table.add_column("message", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["remote_id"],
            row["action"],
            row["kind"],
            "" if row["http_status"] is None else str(row["http_status"]),
            str(row["attempts"]),
            (row["last_at"] or "")[5:19].replace("T", " "),
            "resolved " + row["resolved_at"][5:19].replace("T", " ") if row["resolved_at"] else (row["next_attempt_at"] or "")[5:19].replace("T", " "),
            (row["message"] or "")[:160],
        )
    return table


def failure_panel(document: dict[str, Any]) -> Table:
    table = Table(title=f"failure {document['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in document.items():
        if key in ("request",):
            value = json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""
        table.add_row(key, "" if value is None else str(value))
    return table


def replay_table(result: PassResult, remote_ids: list[str]) -> Table:
    table = Table(title=f"replay: {result.outcome}")
    for column in ("remote id", "action", "outcome", "event id", "detail"):
        table.add_column(column, overflow="fold")
    seen = set()
    for action in result.results:
        seen.add(action.remote_id)
        table.add_row(action.remote_id, action.action, action.outcome, "" if action.event_id is None else str(action.event_id), action.message)
    for remote_id in remote_ids:
        if remote_id not in seen:
            table.add_row(remote_id, "-", "in step", "", "nothing to send: Jobylon already matches the source")
    return table
