"""`connector check`: is this installation able to work? Config, source, mapping, Jobylon — each
problem explained, nothing created."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from connector.config import Settings
from connector.errors import AuthError, JobylonError, SourceError, TransientError
from connector.jobylon import JobylonClient
from connector.mapping import Mapper
from connector.metrics import PassSchedule
from connector.model import Interview
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


def run_checks(settings: Settings, out: Console, *, sample: int = 0) -> int:
    ok = True
    check_config(settings, out)

    source = open_source(settings.source, settings.retry)
    mapper = Mapper(settings.mapping)
    try:
        if settings.mapping.lookups:
            from connector.lookups import load_lookups

            mapper.set_lookups(load_lookups(settings))
        fetched = source.fetch(since=None)
    except SourceError as exc:
        ok = False
        out.print(f"[red]FAIL[/] source: {exc}", markup=True, highlight=False)
    else:
        samples = _first_mapped(mapper, fetched.items, sample)
        mapped = mapper.map_all(fetched.items)
        out.print(f"[green]ok[/]   source answered: {len(fetched.items)} item(s) in {fetched.pages} page(s); {len(mapped.interviews)} map cleanly")
        valid = {d.remote_id for d in mapped.interviews}
        for index, raw, interview in samples:
            if interview.remote_id in valid:
                out.print(sample_table(index, raw, interview))
        deleted = [item for item in mapped.invalid if item.deleted and item.remote_id is not None]
        invalid = [item for item in mapped.invalid if item not in deleted]
        if deleted:
            out.print(f"[green]ok[/]   {len(deleted)} item(s) deleted at the source do not map; their events are deleted by remote id:", highlight=False)
            for item in deleted:
                out.print(f"       {item.label}: {item.message}", markup=False, highlight=False)
        if invalid:
            ok = False
            out.print(f"[red]FAIL[/] {len(invalid)} item(s) cannot be synced:")
            for item in invalid:
                out.print(f"       {item.label}: {item.message}", markup=False, highlight=False)
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


def _first_mapped(mapper: Mapper, items: list[Any], count: int) -> list[tuple[int, Any, Interview]]:
    """The first `count` items that map cleanly, each with its raw record (read before it is mapped)."""
    found: list[tuple[int, Any, Interview]] = []
    for index in range(len(items)):
        if len(found) >= count:
            break
        raw = items[index]
        result = mapper.map_one(raw, index)
        if isinstance(result, Interview):
            found.append((index, raw, result))
    return found


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [pair for key, inner in value.items() for pair in _flatten(inner, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(value, list) and value:
        return [pair for at, inner in enumerate(value) for pair in _flatten(inner, f"{prefix}[{at}]")]
    return [(prefix or "(item)", value)]


def _shown(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value) if not hasattr(value, "isoformat") else value.isoformat()
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def sample_table(index: int, raw: Any, interview: Interview) -> Table:
    """One mapped item beside the source fields it came from: what Jobylon would get, and from what."""
    mapped: dict[str, Any] = {"remote_id": interview.remote_id, **interview.payload}
    mapped["start (UTC)"] = interview.starts_at_utc.isoformat()
    if interview.cancelled:
        mapped["cancelled"] = True
    if interview.updated_at is not None:
        mapped["updated_at"] = interview.updated_at.isoformat()
    left = [f"{key} = {_shown(value)}" for key, value in _flatten(raw)]
    right = [f"{key} = {_shown(value)}" for key, value in mapped.items()]
    table = Table(title=Text(f"{interview.remote_id} (item #{index})"), title_justify="left", box=box.SIMPLE, show_lines=False)
    table.add_column("source fields", overflow="fold")
    table.add_column("mapped (the create Jobylon would get)", overflow="fold")
    for at in range(max(len(left), len(right))):
        table.add_row(Text(left[at] if at < len(left) else ""), Text(right[at] if at < len(right) else ""))
    return table


def describe_schedule(schedule: PassSchedule, now: datetime | None = None) -> str:
    """The schedule `connector run` follows; for a cron, its next two runs (UTC), so a wrong hour shows."""
    if schedule.cron is None:
        return schedule.describe()
    runs = schedule.fire_times(now or datetime.now(UTC), 2)
    return f"{schedule.describe()}; next runs at " + " and ".join(run.strftime("%Y-%m-%d %H:%M UTC") for run in runs)
