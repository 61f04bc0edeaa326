"""The `connector` command line: parses, calls the modules, formats. Errors become exit codes in one
place (`ConnectorGroup.invoke`)."""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from connector.clock import utcnow
from connector.config import Settings, load_settings
from connector.engine import PassOptions, build_redactor, open_engine
from connector.errors import FAILURE_KINDS, ConfigError, ConnectorError, UserError
from connector.logs import setup_logging
from connector.redact import Redactor
from connector.results import ActionResult, PassResult
from connector.store import Store, open_store


class _OnFirstUse:
    """A module imported when a command first uses it: `sync` reaches its first call without rich
    (the tables come after the pass) or the on-call logic."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


if TYPE_CHECKING:
    from connector import oncall, views
else:
    oncall = _OnFirstUse("connector.oncall")
    views = _OnFirstUse("connector.views")


class ConnectorGroup(click.Group):
    """The one error boundary: the connector's errors become one line and the exit code their class
    carries (`connector.errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConnectorError as exc:
            click.echo(f"error: {_redact(ctx, str(exc))}", err=True)
            ctx.exit(exc.exit_code)


def _redact(ctx: click.Context, text: str) -> str:
    state = ctx.find_object(CliState)
    return state.redactor.text(text) if state is not None else text


@dataclass
class CliState:
    config_path: str | None
    log_format: str | None
    verbose: int
    _settings: Settings | None = None
    redactor: Redactor = field(default_factory=Redactor)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            self.redactor = build_redactor(self._settings)
            obs = self._settings.observability
            level = "DEBUG" if self.verbose else obs.log_level
            setup_logging(self.log_format or obs.log_format, level, self.redactor)
        return self._settings


pass_state = click.make_pass_decorator(CliState)
DEFAULT_LOCK_WAIT = 120.0


def json_option(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(func)


def wait_option(func: Any) -> Any:
    return click.option(
        "--wait",
        "wait",
        default=DEFAULT_LOCK_WAIT,
        show_default=True,
        type=click.FloatRange(0),
        help="Seconds to wait for a pass in progress (a running service's) to finish.",
    )(func)


def _waiting(wait: float) -> Any:
    def tell(holder: str) -> None:
        click.echo(f"waiting up to {wait:g} s for the pass in progress (connector process {holder}) to finish...", err=True)

    return tell


@click.group(cls=ConnectorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="CONNECTOR_CONFIG", type=click.Path(), help="Config file (default config.toml, env CONNECTOR_CONFIG).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Log line format (default: observability.log_format).")
@click.option("-v", "--verbose", count=True, help="Debug logging.")
@click.version_option(package_name="jobylon-connector")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_format: str | None, verbose: int) -> None:
    """Keep Jobylon's calendar in step with your interview system.

    \b
    Quick start:   connector demo
    One pass:      connector --config config.toml sync
    The service:   connector --config config.toml run
    """
    ctx.obj = CliState(config_path, log_format, verbose)
    setup_logging(log_format or "text", "DEBUG" if verbose else "INFO")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Plan only: show what would be sent, send nothing.")
@click.option("--full", is_flag=True, help="Force a complete fetch (deletions by absence possible).")
@click.option("--allow-mass-delete", is_flag=True, help="Let deletions through the mass-delete guard.")
@click.option("--allow-mass-create", is_flag=True, help="Let a new database's first pass create more than sync.first_pass_max_creates.")
@click.option("--only", "only", multiple=True, metavar="REMOTE_ID", help="Sync only this remote id (repeatable).")
@wait_option
@pass_state
def sync(state: CliState, dry_run: bool, full: bool, allow_mass_delete: bool, allow_mass_create: bool, only: tuple[str, ...], wait: float) -> None:
    """Run one pass: fetch, plan, send the differences, record.

    Exit codes: 0 ok, 1 failed items, 2 bad config, 3 a guard held deletions back, 4 credentials refused.
    """
    settings = state.settings()
    options = PassOptions(
        full=True if full else None,
        dry_run=dry_run,
        allow_mass_delete=allow_mass_delete,
        allow_mass_create=allow_mass_create,
        only=frozenset(only) if only else None,
    )
    with open_engine(settings, lock=not dry_run, wait=wait, on_wait=_waiting(wait)) as engine:
        result = _run_with_progress(engine, options)
    out = views.console()
    if dry_run:
        out.print(views.plan_table(result.planned))
    out.print(views.summary_table(result))
    if result.error:
        click.echo(f"{result.outcome}: {result.error}", err=True)
    sys.exit(result.exit_code)


def _run_with_progress(engine: Any, options: PassOptions) -> PassResult:
    """A progress bar on a terminal; plain log lines (one per action) otherwise.

    Above the bar only failures are logged (a line per call would bury it: 3,000 lines for 3,000
    creates); `-v` shows every call there too. The service's log (`connector run`) keeps them all.
    """
    if not sys.stderr.isatty():
        return engine.run_pass(options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=views.console(stderr=True), transient=True
    ) as progress:
        task = progress.add_task("sync", total=None)

        def planned(total: int) -> None:
            progress.update(task, total=total)

        def advanced(_: ActionResult) -> None:
            progress.advance(task)

        engine.on_planned = planned
        engine.on_progress = advanced
        # While the bar is live, rich swaps sys.stderr for a proxy that prints above the bar:
        # point the log handlers at it so log lines do not tear the bar.
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        previous = [h.setStream(sys.stderr) for h in handlers]
        context = click.get_current_context(silent=True)
        state = context.find_object(CliState) if context is not None else None
        per_call = logging.getLogger("connector.executor")  # INFO for a done call, WARNING for a failure
        level = per_call.level
        if not (state is not None and state.verbose):
            per_call.setLevel(logging.WARNING)
        try:
            return engine.run_pass(options)
        finally:
            per_call.setLevel(level)
            for handler, stream in zip(handlers, previous, strict=True):
                if stream is not None:
                    handler.setStream(stream)


@cli.command()
@json_option
@pass_state
def plan(state: CliState, as_json: bool) -> None:
    """Show what a pass would send (same as `sync --dry-run`); nothing is sent or recorded."""
    settings = state.settings()
    with open_engine(settings, lock=False) as engine:
        result = engine.run_pass(PassOptions(dry_run=True))
    if as_json:
        views.print_json(views.plan_rows(result.planned))
        return
    out = views.console()
    out.print(views.plan_table(result.planned))
    if result.error:
        click.echo(f"guard: {result.error}", err=True)


@cli.command()
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


@cli.command()
@pass_state
def run(state: CliState) -> None:
    """The service: a pass now, then every sync.interval_seconds (or sync.cron).

    SIGTERM/SIGINT let the calls in flight finish and exit 0; SIGHUP reloads the config.
    """
    from connector.daemon import run_daemon

    state.settings()  # a bad config refuses to start (exit 2)
    sys.exit(run_daemon(state.config_path, state.log_format, bool(state.verbose)))


def failure_filters(func: Any) -> Any:
    func = json_option(func)
    func = click.option("--open/--all", "only_open", default=True, help="Open failures only (default), or all, resolved included.")(func)
    return click.option("--kind", type=click.Choice(list(FAILURE_KINDS)), default=None)(func)


@cli.group(invoke_without_command=True)
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


@cli.command()
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
    with open_engine(settings, wait=wait, on_wait=_waiting(wait)) as engine:
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


@cli.command()
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
    with open_engine(settings, wait=wait, on_wait=_waiting(wait)) as engine:
        if event_id is not None:
            click.echo(oncall.resolve_with_event(engine.store, remote_id, event_id))
        elif forget:
            click.echo(oncall.forget(engine.store, remote_id))
        else:
            oncall.prepare_recreate(engine.store, remote_id)
            result = engine.run_pass(PassOptions(full=True, only=frozenset({remote_id}), replay=True))
            views.console().print(views.replay_table(result, [remote_id], title="resolve --recreate"))
            sys.exit(result.exit_code)


@cli.command()
@click.option(
    "--sample",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Show this many mapped items beside their source fields (every invalid item is listed anyway).",
)
@click.option("--config-only", is_flag=True, help="Only load and validate the config: no source, no Jobylon (systemd's ExecStartPre).")
@pass_state
def check(state: CliState, sample: int, config_only: bool) -> None:
    """Validate the config, read the source and map it, reach Jobylon (nothing is created).

    Exit 0 only when all is well; with --config-only, when the config is valid (a bad one: exit 2).
    """
    from connector.checks import check_config, run_checks

    settings = state.settings()
    if config_only:
        sys.exit(check_config(settings, views.console()))
    sys.exit(run_checks(settings, views.console(), sample=sample))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8765, show_default=True, help="Port (0 picks a free one).")
@click.option(
    "--fault-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of API calls that fail (429, 500, 503, drops, latency, apply-then-500).",
)
@click.option("--seed", default=None, type=int, help="Seed for the fault generator.")
def sandbox(host: str, port: int, fault_rate: float, seed: int | None) -> None:
    """Run the Jobylon Push API emulator on loopback (app id demo-app, app key demo-key-0123456789)."""
    import errno

    from connector.sandbox import serve_forever
    from connector.sandbox.server import SandboxBindError

    try:
        serve_forever(host=host, port=port, fault_rate=fault_rate, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except SandboxBindError as exc:  # a port in use: one line, exit 2 (as a bad option is)
        raise ConfigError(exc.explain("--port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "--host")) from None


@cli.command()
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Keep the demo's config, data and state in this folder.")
def demo(keep: str | None) -> None:
    """Run the whole job on the embedded sandbox and sample interviews: several passes with changes."""
    from connector.demo import run_demo

    setup_logging("text", "WARNING")  # the demo prints what each pass did itself
    sys.exit(run_demo(keep))


@cli.command("availability")
@click.option("--user", "users", multiple=True, required=True, metavar="EMAIL", help="A Jobylon user whose calendar counts (repeat for more).")
@click.option("--required", default="all", show_default=True, metavar="all|N", help="How many of the users must be free: all, or at least N.")
@click.option("--from", "start", required=True, metavar="ISO", help="Start of the period, with an offset: 2030-06-03T09:00:00+02:00 (or ...Z).")
@click.option("--to", "end", required=True, metavar="ISO", help="End of the period, at most 31 days after --from.")
@click.option("--duration", type=int, required=True, metavar="MIN", help="Meeting length in minutes, 1..480.")
@click.option("--periods", is_flag=True, help="Free periods instead of back-to-back slots of --duration.")
@json_option
@pass_state
def availability_command(state: CliState, users: tuple[str, ...], required: str, start: str, end: str, duration: int, periods: bool, as_json: bool) -> None:
    """When users are free: slots of --duration (or free periods) in --from..--to, from Jobylon's calendars.

    Exit codes: 0 ok (also when nothing is free), 1 Jobylon refused the query (an unknown user, one the partner
    cannot access, one without a calendar connection: named) or did not answer, 2 bad config or
    usage, 4 credentials refused.

    \b
    Example:
      connector availability --user recruiter@acme.example --user hiring.manager@acme.example \\
        --required 1 --from 2030-06-03T09:00:00Z --to 2030-06-03T17:00:00Z --duration 60
    """
    from connector import availability
    from connector.jobylon import JobylonClient

    try:
        query = availability.build_query(users, required, start, end, duration, "periods" if periods else "slots")
    except availability.QueryError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None
    settings = state.settings()
    client = JobylonClient(settings.jobylon, settings.retry, pool_size=1)
    try:
        slots = client.availability(query)
    finally:
        client.close()
    if as_json:
        views.print_json(availability.slots_document(slots))
        return
    views.console().print(views.availability_table(query, slots))


@cli.group()
def webhooks() -> None:
    """Jobylon's calendar_event webhooks: the receiver, and the partner's copy ([webhooks.forward])."""


@webhooks.command("serve")
@pass_state
def webhooks_serve(state: CliState) -> None:
    """Receive calendar_event deliveries on webhooks.host:webhooks.port until SIGTERM/SIGINT.

    Each delivery is stored before the 2xx; in-doubt creates it answers are healed, drift is
    reported (sync.on_drift). Beside `connector run` on the same database, or inside it with
    webhooks.enabled = true. Exit 2 when the port cannot be had.
    """
    from connector.webhooks.service import serve

    settings = state.settings()
    store = Store(settings.state.path, redactor=state.redactor)
    try:
        code = serve(settings, store)
    finally:
        store.close()
    sys.exit(code)


@webhooks.command("retry-forwards")
@pass_state
def webhooks_retry_forwards(state: CliState) -> None:
    """Try every record not yet forwarded to the partner again now, permanent failures included."""
    from connector.webhooks.service import retry_forwards

    settings = state.settings()
    store = Store(settings.state.path, redactor=state.redactor)
    try:
        sent, left = retry_forwards(settings, store)
    finally:
        store.close()
    click.echo(f"{sent} record(s) forwarded, {left} still waiting")
    sys.exit(1 if left else 0)


@cli.group()
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


def main() -> None:
    cli(prog_name="connector")
