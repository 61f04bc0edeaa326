"""`connector check`: is this installation able to work? Config, source, mapping, Jobylon — each
problem explained, nothing created."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from connector.config import Settings
from connector.errors import AuthError, JobylonError, SourceError, TransientError
from connector.jobylon import JobylonClient
from connector.mapping import Mapper
from connector.metrics import PassSchedule
from connector.sources import open_source


def check_config(settings: Settings, out: Console) -> int:
    """`connector check --config-only`: what a loaded config says about itself, no source and no
    Jobylon, so an interview that is invalid or a source that is down for a minute cannot stop the
    service from starting (systemd's ExecStartPre). A config that does not load never gets here:
    that is exit 2, from the CLI's error boundary."""
    out.print("[green]ok[/]   config is valid")  # load_settings refused a bad cron, default zone or blank key already
    out.print(f"[green]ok[/]   schedule: {describe_schedule(PassSchedule.of(settings.sync))}", markup=True, highlight=False)
    if not settings.jobylon.verify_tls:
        out.print("[yellow]warn[/] jobylon.verify_tls = false: Jobylon's TLS certificate is not checked")
    return 0


def run_checks(settings: Settings, out: Console, *, sample: int = 20) -> int:
    ok = True
    check_config(settings, out)

    source = open_source(settings.source, settings.retry)
    try:
        fetched = source.fetch(since=None)
    except SourceError as exc:
        ok = False
        out.print(f"[red]FAIL[/] source: {exc}", markup=True, highlight=False)
    else:
        mapped = Mapper(settings.mapping).map_all(fetched.items)
        out.print(f"[green]ok[/]   source answered: {len(fetched.items)} item(s) in {fetched.pages} page(s); {len(mapped.interviews)} map cleanly")
        if mapped.invalid:
            ok = False
            out.print(f"[red]FAIL[/] {len(mapped.invalid)} item(s) cannot be synced:")
            for item in mapped.invalid[:sample]:
                out.print(f"       {item.label}: {item.message}", markup=False, highlight=False)
            if len(mapped.invalid) > sample:
                out.print(f"       ... and {len(mapped.invalid) - sample} more")
    finally:
        source.close()

    client = JobylonClient(settings.jobylon, settings.retry.model_copy(update={"attempts": 1}))
    where = settings.jobylon.base_url
    try:
        client.probe()
    except AuthError as exc:
        ok = False
        out.print(f"[red]FAIL[/] Jobylon at {where}: credentials refused (HTTP {exc.http_status}); check jobylon.app_id and jobylon.app_key", highlight=False)
    except TransientError as exc:
        ok = False
        out.print(f"[red]FAIL[/] Jobylon at {where}: unreachable ({exc.message})", highlight=False)
    except JobylonError as exc:
        ok = False
        out.print(f"[red]FAIL[/] Jobylon at {where}: unexpected answer ({exc.message})", highlight=False)
    else:
        out.print(f"[green]ok[/]   Jobylon at {where}: reachable, credentials accepted", highlight=False)
    finally:
        client.close()
    return 0 if ok else 1


def describe_schedule(schedule: PassSchedule, now: datetime | None = None) -> str:
    """The schedule `connector run` follows; for a cron, its next two runs (UTC), so a wrong hour shows."""
    if schedule.cron is None:
        return schedule.describe()
    runs = schedule.fire_times(now or datetime.now(UTC), 2)
    return f"{schedule.describe()}; next runs at " + " and ".join(run.strftime("%Y-%m-%d %H:%M UTC") for run in runs)
