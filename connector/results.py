"""What a pass reports: per-action results, the counts, the pass outcomes and their exit codes.

Pass outcomes (`runs.outcome`):

    ok             every planned change was made
    failed_items   the pass finished; some items are invalid, failed or in doubt
    source_error   the source could not be read; nothing was planned
    guard          a safety guard held deletions back; the rest of the pass ran
    auth           Jobylon refused the credentials; the pass stopped
    circuit_open   too many consecutive transient failures; the pass stopped early
    interrupted    a signal stopped the pass; calls in flight finished
    state_error    the state database failed mid-pass (disk full, read-only); no further call was sent
    error          an unexpected error (a bug); recorded, the service goes on
    dry_run        nothing was sent (`plan`, `sync --dry-run`)

`ok` and `failed_items` count as a *successful* pass: the source was read and every item was
tried. Only those advance the cursor, mark a complete fetch, and reset the staleness alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.errors import ExitCode
from connector.plan import Plan

COUNT_NAMES = ("created", "updated", "recreated", "deleted", "unchanged", "skipped", "invalid", "failed", "in_doubt")
DONE = {"create": "created", "update": "updated", "recreate": "recreated", "delete": "deleted"}
SUCCESSFUL_OUTCOMES = frozenset({"ok", "failed_items"})
EXIT_CODES: dict[str, ExitCode] = {
    "ok": ExitCode.OK,
    "dry_run": ExitCode.OK,
    "failed_items": ExitCode.FAILED,
    "source_error": ExitCode.FAILED,
    "circuit_open": ExitCode.FAILED,
    "interrupted": ExitCode.FAILED,
    "error": ExitCode.FAILED,
    "state_error": ExitCode.STATE,
    "guard": ExitCode.GUARD,
    "auth": ExitCode.AUTH,
}


def is_success(outcome: str | None) -> bool:
    return outcome in SUCCESSFUL_OUTCOMES


@dataclass
class ActionResult:
    action: str
    remote_id: str
    event_id: int | None
    outcome: str  # created/updated/recreated/deleted/skipped/invalid/failed/in_doubt/not_run
    message: str = ""
    duration_ms: int = 0

    @property
    def done(self) -> bool:
        return self.outcome in DONE.values()


@dataclass
class PassResult:
    run_id: int | None
    outcome: str
    counts: dict[str, int]
    complete: bool
    planned: Plan
    results: list[ActionResult] = field(default_factory=list)
    error: str | None = None
    fetched: int = 0

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES.get(self.outcome, ExitCode.FAILED))


def empty_counts() -> dict[str, int]:
    return {name: 0 for name in COUNT_NAMES}


def planned_counts(planned: Plan) -> dict[str, int]:
    """What a dry run would do."""
    counts = empty_counts()
    counts["unchanged"] = planned.unchanged
    for action in planned.actions:
        key = DONE.get(action.name) or ("skipped" if action.name == "skip" else action.name)
        counts[key] = counts.get(key, 0) + 1
    return counts


def result_counts(planned: Plan, results: list[ActionResult]) -> dict[str, int]:
    """What a pass did."""
    counts = empty_counts()
    counts["unchanged"] = planned.unchanged
    for result in results:
        if result.outcome in counts:
            counts[result.outcome] += 1
        elif result.outcome == "not_run":
            counts["skipped"] += 1
    return counts


def pass_outcome(stop_reason: str | None, held_back: bool, counts: dict[str, int]) -> str:
    """The outcome of a pass that ran to its end or was stopped (see the module docstring)."""
    if stop_reason in ("auth", "circuit_open"):
        return stop_reason
    if stop_reason is not None:
        return "interrupted"
    if held_back:
        return "guard"
    return "failed_items" if counts["failed"] + counts["in_doubt"] + counts["invalid"] else "ok"
