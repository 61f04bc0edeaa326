"""The `sql` source at 100,000 rows (a SQLite file), timed as whole `connector sync` processes.

    python bench/sql_source.py --items 100000 --changes 100

Set-up (not timed): 100,000 rows in a SQLite file, last updated a minute apart, and a complete first
pass that creates every interview in the sandbox. Then:

1. incremental: `changes` rows get a new title and a newer updated_at, and `connector sync` runs: the
   query binds {since} = the cursor minus since_overlap_seconds (300 s), reads those rows and the few
   inside the overlap, and sends `changes` updates. Target: at most 1 s for the whole process.
2. complete: `connector sync --full` over the unchanged table (0 requests), against the same rows as
   a JSON file (`kind = "file"`, a copy of the same state database). Target: the sql pass's peak RSS at
   most the JSON file's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Sandbox, interview, last_run, report, run_connector, write_config

FIRST = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = ("id", "title", "notes", "start_at", "minutes", "timezone", "organizer_email", "candidates", "location", "video", "status", "updated_at")
MAPPING = {"duration_minutes": "minutes", "end": "", "organizer_email": "organizer_email", "videoconferencing": "video"}
QUERY = "SELECT " + ", ".join(COLUMNS) + " FROM interviews WHERE {since} IS NULL OR datetime(updated_at) >= datetime({since})"


def record(number: int, *, title: str | None = None, updated_at: datetime | None = None) -> dict[str, Any]:
    """bench/common.py's interview as a row: the organizer's email a column, the candidates JSON."""
    item = interview(number, title=title)
    return {
        "id": item["id"],
        "title": item["title"],
        "notes": item["notes"],
        "start_at": item["start_at"],
        "minutes": item["minutes"],
        "timezone": item["timezone"],
        "organizer_email": item["organizer"]["email"],
        "candidates": item["candidates"],
        "location": item["location"],
        "video": item["video"],
        "status": item["status"],
        "updated_at": (updated_at or FIRST + timedelta(minutes=number)).isoformat(),
    }


def timed(config: Path, *args: str) -> tuple[float, float, int, int]:
    """(wall s, CPU s (user + system), peak RSS MB, exit code) of one `connector` process, from GNU
    time: on a machine shared with other work the CPU time says what the wall time cannot."""
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
    command = ["/usr/bin/time", "-f", "TIMED=%e %U %S %M", sys.executable, "-m", "connector", "--config", str(config), *args]
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall, user, system, rss = next(line for line in proc.stderr.splitlines() if line.startswith("TIMED=")).removeprefix("TIMED=").split()
    return float(wall), round(float(user) + float(system), 2), int(rss) // 1024, proc.returncode


def write_rows(db: Path, rows: list[dict[str, Any]]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS interviews ({', '.join(COLUMNS)}, PRIMARY KEY (id))")
        conn.execute("CREATE INDEX IF NOT EXISTS interviews_updated ON interviews (datetime(updated_at))")
        marks = ", ".join("?" for _ in COLUMNS)
        conn.executemany(
            f"INSERT OR REPLACE INTO interviews VALUES ({marks})",
            ([json.dumps(r[c]) if c == "candidates" else r[c] for c in COLUMNS] for r in rows),
        )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each pass; the best time and the highest RSS count")
    args = parser.parse_args()
    sandbox = Sandbox()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sql-") as name:
            folder = Path(name)
            rows = [record(n) for n in range(args.items)]
            db = folder / "partner.db"
            write_rows(db, rows)
            sql_home, file_home = folder / "sql", folder / "file"
            sql_home.mkdir()
            file_home.mkdir()
            source = {"kind": "sql", "url": f"sqlite:///{db}", "query": QUERY, "json_columns": ["candidates"]}
            sql_config = write_config(sql_home, sandbox.url, source, mapping=MAPPING, sync={"full_every": 1000})
            started = time.perf_counter()
            _, _, code = run_connector(sql_config, "sync", "--full")
            setup = time.perf_counter() - started
            if code != 0:
                raise SystemExit(f"set-up sync exited {code}")

            # 2. complete passes over the unchanged rows: sql, and the same rows from a JSON file
            items_file = folder / "interviews.json"
            items_file.write_text(json.dumps(rows))
            (file_home / "state").mkdir()
            shutil.copy(sql_home / "state" / "connector.db", file_home / "state" / "connector.db")
            file_config = write_config(file_home, sandbox.url, {"kind": "file", "path": str(items_file), "format": "json"}, mapping=MAPPING)
            del rows
            before = sandbox.requests()
            sql_runs = [timed(sql_config, "sync", "--full") for _ in range(args.repeat)]
            file_runs = [timed(file_config, "sync", "--full") for _ in range(args.repeat)]
            complete_sent = sandbox.requests() - before

            # 1. the incremental pass: `changes` rows changed, spread over the table
            step = max(1, args.items // args.changes)
            newer = FIRST + timedelta(minutes=args.items + 60)
            write_rows(db, [record(n, title=f"Interview {n} (moved)", updated_at=newer) for n in range(0, step * args.changes, step)])
            before = sandbox.requests()
            load = os.getloadavg()[0]
            wall, cpu, rss, code = timed(sql_config, "sync")
            sent = sandbox.requests() - before
            run = last_run(sql_config)
            # the same rows seen again (inside the overlap): nothing to send; more timings of the process
            again = [timed(sql_config, "sync") for _ in range(args.repeat)]
    finally:
        sandbox.stop()
    incremental = {
        "rows": args.items,
        "changed": args.changes,
        "process_wall_s": round(wall, 3),
        "process_cpu_s": cpu,
        "again_best_wall_s": round(min(a[0] for a in again), 3),
        "again_best_cpu_s": min(a[1] for a in again),
        "pass_ms": run["duration_ms"],
        "complete_fetch": run["complete_fetch"],
        "updated": run["counts"].get("updated", 0),
        "requests_sent": sent,
        "peak_rss_mb": rss,
        "exit_code": code,
        "load_1min": round(load, 2),
    }
    complete = {
        "sql_wall_s": round(min(r[0] for r in sql_runs), 3),
        "sql_cpu_s": min(r[1] for r in sql_runs),
        "sql_peak_rss_mb": max(r[2] for r in sql_runs),
        "json_file_wall_s": round(min(r[0] for r in file_runs), 3),
        "json_file_cpu_s": min(r[1] for r in file_runs),
        "json_file_peak_rss_mb": max(r[2] for r in file_runs),
        "requests_sent": complete_sent,
        "exit_codes": sorted({r[3] for r in sql_runs + file_runs}),
    }
    report(
        "sql_source incremental",
        ["rows", "changed", "process s", "CPU s", "again s", "again CPU s", "pass ms", "complete fetch", "updated", "requests", "peak RSS MB", "exit", "load"],
        [list(incremental.values())],
        {**incremental, "target_s": 1.0, "met": wall <= 1.0 and code == 0 and sent == args.changes},
    )
    report(
        "sql_source complete",
        ["sql s", "sql CPU s", "sql peak RSS MB", "json file s", "json file CPU s", "json file peak RSS MB", "requests", "exit codes"],
        [list(complete.values())],
        {**complete, "setup_s": round(setup, 1), "met": complete["sql_peak_rss_mb"] <= complete["json_file_peak_rss_mb"] and complete_sent == 0},
    )


if __name__ == "__main__":
    main()
