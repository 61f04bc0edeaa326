"""Fail-over timeline of two `connector run` replicas on one PostgreSQL state: the leader is
killed with SIGKILL mid-work at T; when its lease expired (T+x, on the database's clock), when the
standby took the lease, and when the new leader's first call reached the sandbox (T+y); then the
sandbox's duplicate count after convergence.

    JOBYLON_TEST_PG_URL=postgresql+psycopg://connector@127.0.0.1:5432/postgres \\
        python bench/failover.py --items 200 --lease 6 --interval 1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
from common import APP_ID, APP_KEY, interview, write_config
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from connector.sandbox import SandboxServer


def pids(sandbox: SandboxServer) -> Counter[int]:
    counts: Counter[int] = Counter()
    for client, n in sandbox.requests_by_client().items():
        if "(pid " in client:
            counts[int(client.split("(pid ", 1)[1].rstrip(")"))] += n
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default=os.environ.get("JOBYLON_TEST_PG_URL"))
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--lease", type=float, default=6.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    if not args.pg_url:
        sys.exit("give --pg-url or JOBYLON_TEST_PG_URL (a PostgreSQL server on 127.0.0.1)")
    base = make_url(args.pg_url)
    name = f"connector_failover_{uuid.uuid4().hex[:8]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    folder = Path(tempfile.mkdtemp(prefix="failover-"))
    sandbox = SandboxServer(port=0).start()
    sandbox.set_faults(latency_ms=20)
    source = folder / "interviews.json"
    items = [interview(n) for n in range(args.items)]
    source.write_text(json.dumps(items))
    config = write_config(
        folder,
        sandbox.url,
        {"kind": "file", "path": str(source), "format": "json"},
        state={"url": url, "lease_seconds": args.lease},
        sync={"interval_seconds": args.interval, "concurrency": 4},
        jobylon={"max_requests_per_second": 200, "app_id": APP_ID, "app_key": APP_KEY},
    )
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
    replicas = [
        subprocess.Popen([sys.executable, "-m", "connector", "--config", str(config), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for _ in range(2)
    ]
    db = psycopg.connect(base.set(drivername="postgresql", database=name).render_as_string(hide_password=False), autocommit=True)

    def lease() -> tuple[str, int, float, float] | None:
        try:
            row = db.execute("SELECT holder, epoch, expires_at, extract(epoch from clock_timestamp()) FROM leases WHERE name = 'leader'").fetchone()
        except psycopg.Error:
            return None
        return (row[0], int(row[1]), float(row[2]), float(row[3])) if row else None

    try:
        deadline = time.monotonic() + 120
        while len(sandbox.events(APP_ID)) < args.items and time.monotonic() < deadline:
            time.sleep(0.2)
        round_no = 0
        items = [interview(n, title=f"round {round_no} #{n}") for n in range(args.items)]
        source.write_text(json.dumps(items))  # every interview changes: the leader is busy
        while sum(pids(sandbox).values()) < args.items + args.items // 4:
            time.sleep(0.05)
        holder, epoch, _, _ = lease() or ("", 0, 0.0, 0.0)
        old_pid = int(holder.split(":")[2])
        victim = next(p for p in replicas if p.pid == old_pid)
        new = next(p for p in replicas if p.pid != old_pid)
        before_new = pids(sandbox)[new.pid]
        db_now_at_kill = lease()[3]  # type: ignore[index]
        killed = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        expiry = (lease() or (holder, epoch, 0.0, 0.0))[2] - db_now_at_kill
        taken = first_call = None
        while time.monotonic() - killed < args.lease * 4 + 30 and first_call is None:
            now = lease()
            if taken is None and now is not None and now[1] > epoch:
                taken = time.monotonic() - killed
            if pids(sandbox)[new.pid] > before_new:
                first_call = time.monotonic() - killed
            time.sleep(0.02)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            events = sandbox.events(APP_ID)
            if all(e["title"].startswith("round 0 ") for e in events) and len(events) >= args.items:
                break
            time.sleep(0.2)
        events = sandbox.events(APP_ID)
        titles = Counter(e["title"] for e in events)
        duplicates = sum(n - 1 for n in titles.values() if n > 1)
        in_doubt = db.execute("SELECT count(*) FROM failures WHERE kind = 'in_doubt' AND resolved_at IS NULL").fetchone()[0]
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        db.close()
        sandbox.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    table = Table(title=f"fail-over of 2 replicas, lease {args.lease:g} s, interval {args.interval:g} s, {args.items} interviews")
    table.add_column("event")
    table.add_column("after the kill (s)", justify="right")
    table.add_row("leader killed (SIGKILL)", "0.00")
    table.add_row("its lease expired (database clock)", f"{expiry:.2f}")
    table.add_row("standby took the lease", "-" if taken is None else f"{taken:.2f}")
    table.add_row("first call of the new leader", "-" if first_call is None else f"{first_call:.2f}")
    table.add_row("events in the sandbox / interviews", f"{len(events)} / {args.items}")
    table.add_row("duplicates (same title twice)", str(duplicates))
    table.add_row("creates left in doubt by the kill", str(in_doubt))
    Console().print(table)
    print(
        json.dumps(
            {
                "bench": "failover",
                "lease_seconds": args.lease,
                "interval_seconds": args.interval,
                "lease_expired_after": round(expiry, 3),
                "taken_after": taken,
                "first_call_after": first_call,
                "events": len(events),
                "items": args.items,
                "duplicates": duplicates,
                "in_doubt": in_doubt,
            }
        )
    )


if __name__ == "__main__":
    main()
