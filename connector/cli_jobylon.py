"""Commands that face Jobylon beyond the passes: calendar availability and the webhook receiver."""

from __future__ import annotations

import sys

import click

from connector.cli_base import CliState, json_option, pass_state, views
from connector.store import Store


@click.command("availability")
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


@click.group()
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
