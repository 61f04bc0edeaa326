"""On-call work on the state: the status and failure documents, which failures a replay takes, and
the operator's repairs of one mapping (`connector resolve`). The CLI parses and prints; this decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.clock import utcnow
from connector.errors import UserError
from connector.model import fixed_hash
from connector.store import FailureRow, Store

FAILURE_COLUMNS = ("id", "remote_id", "action", "kind", "http_status", "message", "attempts", "first_at", "last_at", "next_attempt_at", "resolved_at")
RUN_COLUMNS = ("id", "started_at", "finished_at", "outcome", "complete_fetch", "counts", "duration_ms", "error")


def failure_document(row: FailureRow, *, detail: bool = False) -> dict[str, Any]:
    """The `failures list --json` shape; with `detail`, the `failures show --json` one."""
    document = {key: getattr(row, key) for key in FAILURE_COLUMNS}
    if detail:
        document["request"] = row.request_data
        document["response"] = row.response
        document["next_step"] = next_step(row)
    return document


def next_step(row: FailureRow) -> str:
    """What the person on call does about this failure."""
    if row.resolved_at:
        return "nothing: resolved"
    if row.kind == "in_doubt":
        return (
            "look in Jobylon for an event matching the request above; if it is there, "
            f"`connector resolve {row.remote_id} --event-id N`; if not, `connector resolve {row.remote_id} --recreate`"
        )
    if row.kind == "drift" and row.action == "duplicate":
        return (
            "look at both events in Jobylon (`connector events show "
            f"{row.remote_id}`); if the second is a copy, delete it in Jobylon (the connector never deletes it), then close this with `connector replay {row.id}`"
        )
    if row.kind == "drift":
        return (
            f"Jobylon's copy no longer matches the source (`connector events show {row.remote_id}`): `connector replay {row.id}` puts the "
            'source\'s version back (a PUT, or delete + create for a cancellation or a fixed field); sync.on_drift = "update" or "recreate" does that by itself'
        )
    if row.kind == "permanent":
        return f"fix the interview at the source (a change is tried at the next poll), or try again now with `connector replay {row.id}`"
    return f"none needed: tried again automatically after {row.next_attempt_at or 'the next poll'}; to try now, `connector replay {row.id}`"


def status_document(store: Store, limit: int = 10, *, heartbeat_fresh: bool) -> dict[str, Any]:
    """The `status --json` shape. `next_run_at` only while the daemon's heartbeat is fresh."""
    by_status = store.count_events_by_status()
    document: dict[str, Any] = {
        "runs": [{key: getattr(run, key) for key in RUN_COLUMNS} for run in store.runs(limit)],
        "events": by_status,
        "failures": store.count_open_failures(),
        "in_doubt": by_status.get("in_doubt", 0),
        "next_run_at": store.get_meta("next_run_at") if heartbeat_fresh else None,
    }
    webhooks = webhook_counts(store)
    if webhooks["events"] or webhooks["forwards_unsent"]:  # only once Jobylon's webhooks are in use: the documented shape otherwise
        document["webhooks"] = webhooks
    leader = getattr(store, "leader", None)  # replicas on PostgreSQL: who leads, under which epoch
    if leader is not None:
        document["leader"] = leader()
    return document


@dataclass(frozen=True)
class ReplaySelection:
    remote_ids: frozenset[str]  # to re-attempt now
    in_doubt: tuple[str, ...]  # asked for, but only `resolve` may decide them


def select_replay(
    store: Store, *, failure_ids: tuple[int, ...] = (), replay_all: bool = False, kind: str | None = None, remote_ids: tuple[str, ...] = ()
) -> ReplaySelection:
    """The remote ids a replay takes: named failures (open or resolved), every open one, those of
    one kind, or named remote ids. In-doubt creates are set apart: replaying one could double it."""
    open_rows = store.failures()
    wanted = set(failure_ids)
    missing = sorted(wanted - {r.id for r in store.failures(include_resolved=True)})
    if missing:
        raise UserError(f"no failure with id {', '.join(map(str, missing))}")
    chosen = set(remote_ids)
    for row in open_rows:
        if replay_all or row.id in wanted or (kind and row.kind == kind):
            chosen.add(row.remote_id)
    in_doubt = tuple(sorted(r.remote_id for r in open_rows if r.kind == "in_doubt" and r.remote_id in chosen))
    return ReplaySelection(frozenset(chosen - set(in_doubt)), in_doubt)


def resolve_with_event(store: Store, remote_id: str, event_id: int) -> str:
    """The create reached Jobylon as `event_id`: map it. Its update-able fields are not known for
    sure, so the next pass sends one PUT to make them match the source."""
    row = store.event(remote_id)
    if row is None:
        raise UserError(f"{remote_id}: not in the state database")
    if row.live and row.event_id != event_id:
        raise UserError(f"{remote_id}: mapped to live event {row.event_id}; --event-id applies to an interview without one (in doubt, failed, detached)")
    other = store.remote_id_for_event(event_id)
    if other is not None and other != remote_id:
        raise UserError(f"event {event_id} is already mapped to {other}; one event cannot serve two interviews")
    request = store.last_request(remote_id) or row.payload_data
    store.map_to_event(
        remote_id, event_id, fixed_hash(request) if request else None, utcnow(), message=f"operator: the create reached Jobylon as event {event_id}"
    )
    return f"{remote_id}: mapped to event {event_id}; the next pass updates it to match the source"


def forget(store: Store, remote_id: str) -> str:
    """Take the interview out of sync for good: no pass creates, updates or deletes it again, so
    forgetting can never lead to a second event. Jobylon is not touched. `resolve --event-id` or
    `--recreate` brings it back."""
    row = store.event(remote_id)
    if row is None:
        raise UserError(f"{remote_id}: not in the state database (nothing to forget)")
    store.detach(remote_id, utcnow(), message="operator: detached; never synced again, Jobylon untouched")
    event = f"; its event {row.event_id} stays in Jobylon as it is" if row.event_id is not None else ""
    return f"{remote_id}: detached, never synced again{event}; undo with `connector resolve {remote_id} --event-id N` or `--recreate`"


def prepare_recreate(store: Store, remote_id: str) -> None:
    """The create did not reach Jobylon: unmap the item so the pass that follows creates it anew.
    Refused for an item mapped to a live event (that would make a second one)."""
    row = store.event(remote_id)
    if row is None:
        raise UserError(f"{remote_id}: not in the state database")
    if row.event_id is not None and row.status not in ("in_doubt", "deleted"):
        raise UserError(f"{remote_id}: mapped to live event {row.event_id}; recreate only applies to items without an event")
    store.clear_for_create(remote_id, utcnow(), message="operator: create anew")


# -- for the status pages (connector.web) ------------------------------------------------------


def shell_next_step(row: FailureRow) -> str:
    """`next_step` with the remote id quoted for a POSIX shell where it needs it (`'INT 3'`), so a
    command copied from a page runs as shown. For a plain id (`INT-3`) the CLI's text exactly."""
    import dataclasses
    import shlex

    return next_step(dataclasses.replace(row, remote_id=shlex.quote(row.remote_id)))


def fix_commands(row: FailureRow) -> list[str]:
    """The commands in `shell_next_step`, in order: what the person on call may run for this failure."""
    return [piece for index, piece in enumerate(shell_next_step(row).split("`")) if index % 2 == 1]


# -- Jobylon's calendar_event webhooks (connector.webhooks) -----------------------------------------


def webhook_counts(store: Store) -> dict[str, Any]:
    """`status`: events Jobylon told us of (per status and per what the connector made of them), RSVPs,
    in-doubt creates healed by a webhook, records not yet forwarded, the last delivery's time."""
    from connector.store.webhooks import WebhookStore

    return WebhookStore(store).counts()


def event_document(store: Store, remote_id: str) -> dict[str, Any]:
    """`events show REMOTE_ID --json`: the interview's event as Jobylon last described it (status,
    RSVPs, video link, when received), and any other event settled to it (a likely duplicate)."""
    from connector.store.webhooks import WebhookStore

    row = store.event(remote_id)
    if row is None:
        raise UserError(f"{remote_id}: not in the state database")
    tables = WebhookStore(store)
    own = tables.event(row.event_id) if row.event_id is not None else None
    others = [e for e in tables.events_of(remote_id) if e.event_id != row.event_id]

    def describe(event: Any) -> dict[str, Any]:
        return {
            "event_id": event.event_id,
            "status": event.status,
            "title": event.title,
            "start_time": event.start_time,
            "timezone": event.timezone,
            "duration": event.duration,
            "video_link": event.video_link,
            "rsvps": [{"application_id": r.application_id, "rsvp": r.rsvp} for r in tables.rsvps(event.event_id)],
            "received_at": event.received_at,
            "first_received_at": event.first_received_at,
            "settled_as": event.settled_as,
            "note": event.note,
        }

    return {
        "remote_id": remote_id,
        "event_id": row.event_id,
        "mapping_status": row.status,
        "event": describe(own) if own is not None else None,
        "other_events": [describe(e) for e in others],
    }
