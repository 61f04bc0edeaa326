"""On-call commands: status, failures, replay, resolve, events. They parse, call `connector.oncall`
and the engine, and format; the logic is not here."""

from __future__ import annotations

import sys
from typing import Any

import click

from connector.cli_base import CliState, json_option, oncall, pass_state, tell_waiting, views, wait_option
from connector.clock import utcnow
from connector.engine import PassOptions, open_engine
from connector.errors import FAILURE_KINDS, UserError
from connector.store import Store, open_store


@click.command()
@click.option("--runs", "limit", default=10, show_default=True, help="How many recent runs to show.")
@json_option
@pass_state
def status(state: CliState, limit: int, as_json: bool) -> None:
    """Last runs, events per state, open failures, in-doubt items, the next run."""
    from connector.daemon import stale_heartbeat  # apscheduler is only needed here, not on every command

    store = _open_store(state)
    try:
        document = oncall.status_document(store, limit, heartbeat_fresh=not stale_heartbeat(store.get_meta("heartbeat_at"), 60))
    finally:
        store.close()
    if as_json:
        views.print_json(document)
        return
    out = views.console()
    out.print(views.runs_table(document["runs"]))
    out.print(views.counts_table("events", document["events"]))
    out.print(views.counts_table("open failures", document["failures"]))
    out.print(f"in doubt: {document['in_doubt']}    next run: {document['next_run_at'] or 'no daemon heartbeat'}")
    out.print(views.webhooks_line(document.get("webhooks", {})), markup=False, highlight=False)


def failure_filters(func: Any) -> Any:
    func = json_option(func)
    func = click.option("--open/--all", "only_open", default=True, help="Open failures only (default), or all, resolved included.")(func)
    return click.option("--kind", type=click.Choice(list(FAILURE_KINDS)), default=None)(func)


@click.group(invoke_without_command=True)
@failure_filters
@click.pass_context
def failures(ctx: click.Context, kind: str | None, only_open: bool, as_json: bool) -> None:
    """The dead-letter list: what could not be synced, and why. Without a subcommand: `list`
    (`connector failures --kind transient` is `connector failures list --kind transient`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(failures_list, kind=kind, only_open=only_open, as_json=as_json)


def _open_store(state: CliState) -> Store:
    """The state for a read-only command: a missing database is an error, never a new one."""
    settings = state.settings()
    return open_store(settings.state, redactor=state.redactor, create=False)


@failures.command("list")
@failure_filters
@pass_state
def failures_list(state: CliState, kind: str | None = None, only_open: bool = True, as_json: bool = False) -> None:
    """List failures: remote id, action, kind, attempts, times, HTTP status, message.

    `attempts` counts the passes (and replays) that tried the item; within each, a transient error
    is retried up to retry.attempts times before the item backs off.
    """
    store = _open_store(state)
    try:
        rows = [oncall.failure_document(r) for r in store.failures(kind=kind, include_resolved=not only_open)]
    finally:
        store.close()
    if as_json:
        views.print_json(rows)
        return
    views.console().print(views.failures_table(rows, "open failures" if only_open else "all failures"))


@failures.command("show")
@click.argument("failure_id", type=int)
@json_option
@pass_state
def failures_show(state: CliState, failure_id: int, as_json: bool) -> None:
    """One failure in full: the redacted request that was sent and Jobylon's answer."""
    store = _open_store(state)
    try:
        row = store.failure(failure_id)
    finally:
        store.close()
    if row is None:
        raise UserError(f"no failure with id {failure_id} (see `connector failures list --all`)")
    document = oncall.failure_document(row, detail=True)
    if as_json:
        views.print_json(document)
        return
    views.console().print(views.failure_panel(document))
    click.echo(f"next step: {document['next_step']}")


@click.command()
@click.argument("failure_ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Every open failure.")
@click.option("--kind", type=click.Choice(["transient", "permanent", "drift"]), default=None, help="Every open failure of this kind.")
@click.option("--remote-id", "remote_ids", multiple=True, help="This remote id (repeatable).")
@wait_option
@pass_state
def replay(state: CliState, failure_ids: tuple[int, ...], replay_all: bool, kind: str | None, remote_ids: tuple[str, ...], wait: float) -> None:
    """Re-attempt failed items now, with the latest source data; prints the outcome per item.

    Works while the service runs: it waits for a pass in progress, then holds the state until done.
    In-doubt creates are not replayed (that could make a second event): decide each with
    `connector resolve`; while any is left the exit code is 1.

    \b
    Examples:
      connector replay 17 18
      connector replay --kind transient
      connector replay --remote-id INT-1002
    """
    settings = state.settings()
    if not (failure_ids or replay_all or kind or remote_ids):
        raise click.UsageError("name failure ids, or use --all, --kind or --remote-id")
    with open_engine(settings, wait=wait, on_wait=tell_waiting(wait)) as engine:
        selection = oncall.select_replay(engine.store, failure_ids=failure_ids, replay_all=replay_all, kind=kind, remote_ids=remote_ids)
        from connector.webhooks.intake import repair_drift  # a drift failure's replay puts the source's version back

        repair_drift(engine.store, selection.remote_ids, utcnow())
        result = engine.run_pass(PassOptions(full=True, only=selection.remote_ids, replay=True)) if selection.remote_ids else None
    if result is not None:
        views.console().print(views.replay_table(result, sorted(selection.remote_ids)))
    elif not selection.in_doubt:
        click.echo("nothing to replay", err=True)
    for remote_id in selection.in_doubt:
        click.echo(f"{remote_id}: in doubt; not replayed (use `connector resolve {remote_id} --event-id N | --recreate`)", err=True)
    if selection.in_doubt:
        click.echo(
            f"{len(selection.in_doubt)} in-doubt create(s) not replayed, each waiting for a decision: look for the event in "
            "Jobylon (`connector failures show ID` has the request), then `connector resolve REMOTE_ID --event-id N` "
            "(it is there) or `--recreate` (it is not)",
            err=True,
        )
    code = result.exit_code if result is not None else 0
    sys.exit(code or (1 if selection.in_doubt else 0))


@click.command()
@click.argument("remote_id")
@click.option("--event-id", type=int, default=None, help="The create did reach Jobylon as this event: map it (the next pass updates it).")
@click.option("--recreate", is_flag=True, help="The create did not reach Jobylon: create it anew now.")
@click.option("--forget", is_flag=True, help="Stop syncing this interview: never created, updated or deleted again; Jobylon untouched.")
@wait_option
@pass_state
def resolve(state: CliState, remote_id: str, event_id: int | None, forget: bool, recreate: bool, wait: float) -> None:
    """Operator repair of one mapping, e.g. an in-doubt create. Recorded in `operations`.

    None of these can make a second event: --event-id refuses an event mapped to another interview
    or an interview mapped to another live event; --recreate refuses an interview with a live
    event; --forget detaches the interview for good (undo: --event-id N or --recreate).
    Works while the service runs (it waits for a pass in progress).
    """
    if sum((event_id is not None, forget, recreate)) != 1:
        raise click.UsageError("give exactly one of --event-id N, --recreate, --forget")
    settings = state.settings()
    with open_engine(settings, wait=wait, on_wait=tell_waiting(wait)) as engine:
        if event_id is not None:
            click.echo(oncall.resolve_with_event(engine.store, remote_id, event_id))
        elif forget:
            click.echo(oncall.forget(engine.store, remote_id))
        else:
            oncall.prepare_recreate(engine.store, remote_id)
            result = engine.run_pass(PassOptions(full=True, only=frozenset({remote_id}), replay=True))
            views.console().print(views.replay_table(result, [remote_id], title="resolve --recreate"))
            sys.exit(result.exit_code)


@click.group()
def events() -> None:
    """What Jobylon's webhooks said about the events."""


@events.command("show")
@click.argument("remote_id")
@json_option
@pass_state
def events_show(state: CliState, remote_id: str, as_json: bool) -> None:
    """One interview's event as Jobylon last described it: status, RSVPs, video link, when received."""
    store = _open_store(state)
    try:
        document = oncall.event_document(store, remote_id)
    finally:
        store.close()
    if as_json:
        views.print_json(document)
        return
    views.console().print(views.event_panel(document))
