"""How long the status pages take to answer over a big state database: 100,000 mapped events, 10,000
open failures (and resolved ones, runs and calls around them), each page timed over HTTP on
127.0.0.1 as the daemon serves it (waitress, a read-only SQLite connection per request).

    python bench/page_times.py --events 100000 --failures 10000 --requests 30

Set-up (not timed): the schema from `Store` (every migration, the page indexes included), then rows
written straight into the file. Then, per page, one warm-up request and `--requests` timed ones on a
kept-alive connection: median, 95th percentile and worst, in milliseconds. Meanwhile a writer process
commits a small transaction every 20 ms, as a pass would; its commit times alone and while the
pages are read show whether the pages ever hold a pass up (WAL: they should not).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from common import report

from connector.metrics import Metrics, MetricsServer
from connector.store import Store
from connector.web.app import StatusPages

BUDGET_MS = 200
T0 = "2026-03-02T10:00:00.000+00:00"


def payload(n: int) -> str:
    return json.dumps(
        {
            "title": f"Interview {n} <b>&</b> \u200f",
            "description": "Video call with the team lead.",
            "duration": 45,
            "start_time": "2030-01-01T09:15:00",
            "timezone": "Europe/Stockholm",
            "organizer": "recruiter@acme.example",
            "participants": [1000 + n % 5000],
            "videoconferencing": True,
        }
    )


def fill(path: Path, events: int, failures: int, runs: int, seed: int = 1) -> dict[str, int]:
    """Rows of a long-lived installation, written in a few big transactions."""
    rnd = random.Random(seed)
    Store(path).close()  # the schema, every migration applied
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    statuses = ["synced"] * 97 + ["in_doubt", "failed", "deleted"]
    db.executemany(
        """INSERT INTO events(remote_id, event_id, status, payload, mutable_hash, fixed_hash, starts_at_utc, ends_at_utc,
                              first_synced_at, last_synced_at, source_updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            (f"INT-{n}", n, statuses[n % 100], payload(n), f"m{n}", f"f{n}", "2030-01-01T08:15:00+00:00", "2030-01-01T09:00:00+00:00", T0, T0, T0)
            for n in range(1, events + 1)
        ),
    )
    counts = {"created": 0, "updated": 3, "recreated": 0, "deleted": 1, "unchanged": events - 4, "skipped": 0, "invalid": 1, "failed": 2, "in_doubt": 0}
    first = {**counts, "created": events, "unchanged": 0, "updated": 0, "deleted": 0}
    db.executemany(
        "INSERT INTO runs(id, started_at, finished_at, outcome, complete_fetch, counts, duration_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ((r, T0, T0, "ok" if r % 7 else "failed_items", r % 12 == 1, json.dumps(first if r == 1 else counts), 900 + r % 300, None) for r in range(1, runs + 1)),
    )

    def operations():
        for n in range(1, events + 1):  # the first pass: every create
            yield (1, f"INT-{n}", n, "create", "POST", 201, "ok", None, T0, 40)
        for r in range(2, runs + 1):  # then a few calls per pass
            for k in range(6):
                n = rnd.randrange(1, events + 1)
                action, method = [("update", "PUT"), ("update", "PUT"), ("update", "PUT"), ("delete", "DELETE"), ("create", "POST"), ("update", "PUT")][k]
                outcome = "transient" if k == 5 else "ok"
                yield (r, f"INT-{n}", n, action, method, 503 if k == 5 else 200, outcome, "503 Service Unavailable" if k == 5 else None, T0, 30)

    db.executemany(
        "INSERT INTO operations(run_id, remote_id, event_id, action, method, http_status, outcome, message, at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        operations(),
    )
    kinds = ["transient"] * 6 + ["permanent"] * 3 + ["in_doubt"]
    resolved = failures * 2

    def failure_rows():
        for i in range(resolved + failures):
            n = 1 + (i * 7919) % events
            kind = kinds[i % 10]
            is_open = i >= resolved
            request = payload(n)
            response = json.dumps({"detail": f"organizer {n}@acme.example is not in an account this partner can access", "code": "invalid"})
            yield (
                f"INT-{n}",
                "create" if kind == "in_doubt" else "update",
                kind,
                {"transient": 503, "permanent": 400, "in_doubt": 504}[kind],
                f"{kind} failure of INT-{n}",
                request,
                response,
                1 + i % 5,
                T0,
                T0,
                T0 if kind == "transient" and is_open else None,
                None if is_open else T0,
                f"h{n}",
            )

    db.executemany(
        """INSERT INTO failures(remote_id, action, kind, http_status, message, request, response, attempts, first_at, last_at,
                                next_attempt_at, resolved_at, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        failure_rows(),
    )
    db.execute("INSERT INTO meta(key, value) VALUES ('heartbeat_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [T0])
    db.commit()
    db.execute("ANALYZE")
    db.commit()
    totals = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "failures", "runs", "operations")}
    totals["open_failures"] = db.execute("SELECT count(*) FROM failures WHERE resolved_at IS NULL").fetchone()[0]
    db.close()
    return totals


def write_like_a_pass(path: str, stop: Any, out: Any) -> None:
    """A pass's share of the database, in a process of its own (so only the database is shared, not
    the GIL): a small write transaction every 20 ms; sends back (wall time, commit ms) of each."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    times = []
    while not stop.wait(0.02):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO meta(key, value) VALUES ('bench', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [str(started)])
        db.execute("COMMIT")
        times.append((time.time(), (time.perf_counter() - started) * 1000))
    db.close()
    out.send(times)


def _round(value: float) -> float:
    return round(value, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--failures", type=int, default=10_000, help="open failures (twice as many resolved ones are added)")
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="page-times-"))
    path = folder / "connector.db"
    started = time.monotonic()
    totals = fill(path, args.events, args.failures, args.runs)
    print(f"filled {path} in {time.monotonic() - started:.1f} s: {totals}")

    metrics = Metrics()
    metrics.observe_pass(None, 1.0, {}, 0)
    pages = StatusPages(path, heartbeat_fresh=lambda at: True)
    server = MetricsServer(metrics, 0, interval_seconds=300, pages=pages).start()
    base = f"http://127.0.0.1:{server.port}"
    open_ids = [f["id"] for f in requests.get(base + "/failures?format=json", timeout=30).json()]  # newest first
    deep = open_ids[0] - args.failures // 2 if open_ids else 1  # a page half way down the open failures
    middle_event = f"INT-{args.events // 2}"
    paths = [
        "/",
        "/?format=json",
        "/runs",
        f"/runs?before={args.runs // 2}",
        "/failures",
        "/failures?kind=permanent",
        "/failures?kind=in_doubt",
        f"/failures?before={deep}",
        "/failures?all=1",
        f"/failures/{open_ids[0] if open_ids else 1}",
        f"/failures/{open_ids[0] if open_ids else 1}?format=json",
        "/events/INT-1",
        f"/events/{middle_event}",
        f"/events/{middle_event}?format=json",
        "/static/status.css",
        "/healthz",
        "/metrics",
    ]
    stop, (receive, send) = multiprocessing.Event(), multiprocessing.Pipe(duplex=False)
    writer = multiprocessing.Process(target=write_like_a_pass, args=(str(path), stop, send), daemon=True)
    writer.start()
    time.sleep(3)  # the writer alone first: its commit times without any page being read
    pages_from = time.time()
    rows, worst_page = [], 0.0
    session = requests.Session()
    try:
        for page in paths:
            answer = session.get(base + page, timeout=30)  # warm-up
            status = answer.status_code
            times = []
            for _ in range(args.requests):
                t = time.perf_counter()
                answer = session.get(base + page, timeout=30)
                answer.content  # noqa: B018 - read the whole body
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            worst_page = max(worst_page, times[-1]) if page not in ("/healthz", "/metrics") else worst_page
            rows.append([page, status, len(answer.content), f"{statistics.median(times):.1f}", f"{p95:.1f}", f"{times[-1]:.1f}"])
    finally:
        stop.set()
        commits = receive.recv()
        writer.join()
        server.stop()
    alone = sorted(ms for at, ms in commits if at < pages_from)
    during = sorted(ms for at, ms in commits if at >= pages_from)
    report(
        "status pages",
        ["page", "status", "bytes", "median ms", "p95 ms", "max ms"],
        rows,
        {
            "events": totals["events"],
            "open_failures": totals["open_failures"],
            "failures": totals["failures"],
            "runs": totals["runs"],
            "operations": totals["operations"],
            "worst_page_ms": round(worst_page, 1),
            "budget_ms": BUDGET_MS,
            "within_budget": worst_page <= BUDGET_MS and all(row[1] == 200 for row in rows),
            "writer_commits": {"alone": len(alone), "during_pages": len(during)},
            "writer_commit_median_ms": {"alone": _round(statistics.median(alone)), "during_pages": _round(statistics.median(during))},
            "writer_commit_max_ms": {"alone": _round(alone[-1]), "during_pages": _round(during[-1])},
        },
    )


if __name__ == "__main__":
    main()
