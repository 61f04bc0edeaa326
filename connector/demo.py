"""`connector demo`: the real job, end to end, on the embedded sandbox and the shipped sample interviews.

It writes a real config file and a file source, then runs passes with changes between them, each
through the same engine `connector sync` uses, and prints what every pass did.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.config import load_settings
from connector.engine import PassOptions, open_engine
from connector.results import PassResult
from connector.sandbox import SandboxServer
from connector.sandbox.directory import DEMO_APP_ID, DEMO_APP_KEY
from connector.views import counts_table, summary_table
from connector.webhooks.service import WebhookService

CONFIG_TEMPLATE = """\
# Written by `connector demo`: a working config against the embedded sandbox.
[jobylon]
base_url = "{base_url}"
app_id = "{app_id}"
app_key = "{app_key}"
max_requests_per_second = 50
timeout_seconds = 5

[source]
kind = "file"
path = "{source}"
format = "json"

[mapping]
duration_minutes = "minutes"
end = ""

[sync]
concurrency = 2

[retry]
backoff_initial_seconds = 0.2
backoff_max_seconds = 2
failed_item_backoff_seconds = [1, 5]

[state]
path = "{state}"

[webhooks]
port = 0
username = "jobylon"
password = "{webhook_password}"
"""


def sample_interviews(today: date | None = None) -> list[dict[str, Any]]:
    """The shipped samples, their dates made relative to today so they stay in the future."""
    today = today or date.today()
    template = json.loads(resources.files("connector.sandbox").joinpath("sample_interviews.json").read_text("utf-8"))
    items = []
    for raw in template:
        item = dict(raw)
        day = today + timedelta(days=item.pop("day_offset"))
        item["start_at"] = f"{day.isoformat()}T{item.pop('local_start')}:00"
        items.append(item)
    return items


def _write(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(items, indent=2, ensure_ascii=False), "utf-8")


def _by_id(items: list[dict[str, Any]], remote_id: str) -> dict[str, Any]:
    return next(item for item in items if item["id"] == remote_id)


def run_demo(keep: str | None = None, console: Console | None = None) -> int:
    out = console or Console(width=None if sys.stdout.isatty() else 130)
    holder = None if keep else tempfile.TemporaryDirectory(prefix="connector-demo-")
    folder = Path(keep or holder.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with SandboxServer(port=0, retry_after_seconds=1, seed=7).start() as sandbox:
            source = folder / "interviews.json"
            config = folder / "config.toml"
            items = sample_interviews()
            _write(source, items)
            # Paths relative to the config file's folder (the rule for every path key): the folder
            # works from any current directory, and `--keep` with a relative folder too.
            config.write_text(
                CONFIG_TEMPLATE.format(
                    base_url=sandbox.url,
                    app_id=DEMO_APP_ID,
                    app_key=DEMO_APP_KEY,
                    source=source.name,
                    state="state/connector.db",
                    webhook_password=secrets.token_urlsafe(12),
                ),
                "utf-8",
            )
            config.chmod(0o600)
            settings = load_settings(config)
            out.rule(f"[bold]jobylon-connector demo[/]: sandbox at {sandbox.url}, files in {folder}")
            codes = []
            with open_engine(settings) as engine:

                def run(title: str, note: str) -> PassResult:
                    # The heading first: the pass's own log lines (warnings, on stderr) belong under it.
                    out.print()
                    out.rule(title)
                    out.print(note)
                    before = sandbox.stats()["requests"]
                    result = engine.run_pass(PassOptions(full=True))
                    sent = sandbox.stats()["requests"] - before
                    out.print(summary_table(result, f"{title}: {result.outcome}, {sent} request(s) reached Jobylon"))
                    for action in result.results:
                        if action.outcome != "skipped":
                            where = f" -> event {action.event_id}" if action.event_id is not None else ""
                            out.print(f"  {action.action:<9} {action.remote_id:<10} {action.outcome}{where}  {action.message}", markup=False, highlight=False)
                    codes.append(result.exit_code)
                    return result

                run("pass 1: first sync", "Six valid interviews are created; INT-1007 has an unknown time zone and is reported, not sent.")
                run("pass 2: nothing changed", "An unchanged source sends nothing at all.")

                _by_id(items, "INT-1002")["start_at"] = _by_id(items, "INT-1002")["start_at"][:11] + "15:00:00"
                _by_id(items, "INT-1003")["candidates"].append({"name": "Ada Jones", "jobylon_application_id": 1009})
                _by_id(items, "INT-1005")["status"] = "cancelled"
                new = dict(_by_id(items, "INT-1006"), id="INT-1008", title="Support Specialist - second screening", day_offset=None)
                new.pop("day_offset")
                new["start_at"] = new["start_at"][:11] + "10:00:00"
                items.append(new)
                _by_id(items, "INT-1007")["timezone"] = "Europe/Stockholm"
                _write(source, items)
                sandbox.script({"method": "PUT", "fault": "503"})
                run(
                    "pass 3: changes at the source",
                    "INT-1002 rescheduled (update, its first PUT answered 503 and retried), INT-1003 got a second candidate "
                    "(recreate: PUT cannot change participants), INT-1005 cancelled (delete), INT-1008 is new, INT-1007's time zone was fixed.",
                )
                run("pass 4: steady state", "Everything is in step again: no calls.")

                # Jobylon's calendar_event webhooks heal a create whose answer was lost.
                hooks = WebhookService(settings, engine.store).start()
                try:
                    sender = sandbox.use_webhooks(hooks.url, username="jobylon", password=settings.webhooks.password.get_secret_value(), retry_scale=0.001)
                    assert sender is not None
                    sender.hold()  # for the demo: Jobylon delivers a moment after the pass
                    late = dict(_by_id(items, "INT-1006"), id="INT-1009", title="Support Specialist - final interview")
                    late["start_at"] = late["start_at"][:11] + "16:00:00"
                    items.append(late)
                    _write(source, items)
                    sandbox.script({"method": "POST", "fault": "apply_then_500"})
                    run(
                        "pass 5: a create whose answer is lost",
                        "INT-1009 is new; Jobylon makes its event but answers 500, so the create is in doubt (never sent twice by itself).",
                    )
                    out.print(f"  in doubt now: {engine.store.count_open_failures().get('in_doubt', 0)}")
                    sender.hold(False)
                    sandbox.wait_for_webhooks(10)
                    hooks.tick()
                    healed = [op for op in engine.store.operations("INT-1009") if op.action == "webhook_link"]
                    out.print()
                    out.rule("Jobylon's calendar_event webhook arrives")
                    for op in healed:
                        out.print(f"  INT-1009 -> event {op.event_id}: {op.message}", markup=False, highlight=False)
                    out.print(f"  in doubt now: {engine.store.count_open_failures().get('in_doubt', 0)}")
                    run("pass 6: after the webhook", "The healed create is mapped: nothing is created twice.")
                finally:
                    sandbox.use_webhooks(None)
                    hooks.stop()

                events = sandbox.events(DEMO_APP_ID)
                table = Table(title=f"Jobylon now holds {len(events)} events (read from the sandbox)")
                for column in ("event id", "title", "start (local)", "timezone", "min", "participants"):
                    table.add_column(column)
                for event in sorted(events, key=lambda e: e["start_time"]):
                    table.add_row(
                        str(event["id"]),
                        event["title"],
                        event["start_time"],
                        event["timezone"],
                        str(event["duration"]),
                        ", ".join(map(str, event["participants"])),
                    )
                out.print()
                out.print(table)
                out.print(counts_table("state database: events per state", engine.store.count_events_by_status()))
                out.print(counts_table("open failures", engine.store.count_open_failures()))
            wanted = sum(1 for item in items if item["status"] != "cancelled")
            expected_ok = codes[-1] == 0 and len(events) == wanted and bool(healed)
            out.print("[green]demo finished: Jobylon matches the source.[/]" if expected_ok else "[red]demo finished with a mismatch[/]")
            return 0 if expected_ok else 1
    finally:
        if holder is not None:
            holder.cleanup()
