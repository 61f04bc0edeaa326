"""An incremental pass: 100 changes among 100,000 mapped interviews, through an HTTP source with a
cursor (`since_param`), timed as a whole `connector sync` process.

    python bench/incremental.py --items 100000 --changes 100

Set-up (not timed): a complete first pass creates every interview in the sandbox. Then 100
interviews get a new title and a newer updated_at, and `connector sync` runs: it asks the source
only for what changed since its cursor, reads only those mappings, and sends 100 updates.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from common import Sandbox, interview, last_run, report, run_connector, write_config

OLD, NEW = "2026-01-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"


def updated(n: int) -> str:
    """Interview n last changed n minutes after OLD: the cursor then sits on the newest, and the
    overlap (source.since_overlap_seconds, 300) re-fetches only the last few unchanged rows, as a
    real listing would (every row on the same second would be re-fetched whole)."""
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(OLD) + timedelta(minutes=n)).isoformat()


class Source:
    """The partner's API: all interviews, or those changed since `changed_since`."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                since = parse_qs(urlsplit(self.path).query).get("changed_since", [None])[0]
                chosen = outer.items if since is None else [i for i in outer.items if i["updated_at"] > since]
                body = json.dumps(chosen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/interviews"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    items = [interview(n, updated_at=updated(n)) for n in range(args.items)]
    source = Source(items)
    sandbox = Sandbox()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-incremental-") as name:
            config = write_config(
                Path(name),
                sandbox.url,
                {"kind": "http", "url": source.url, "since_param": "changed_since", "max_bytes": 500_000_000, "timeout_seconds": 120},
                sync={"full_every": 1000},
            )
            started = time.perf_counter()
            _, _, code = run_connector(config, "sync")
            setup = time.perf_counter() - started
            if code != 0:
                raise SystemExit(f"set-up sync exited {code}")
            step = max(1, args.items // args.changes)
            for n in range(0, step * args.changes, step):
                items[n] = interview(n, title=f"Interview {n} (moved)", updated_at=NEW)
            before = sandbox.requests()
            wall, rss, code = run_connector(config, "sync")
            sent = sandbox.requests() - before
            run = last_run(config)
    finally:
        sandbox.stop()
        source.server.shutdown()
    result = {
        "mapped": args.items,
        "changed": args.changes,
        "process_wall_s": round(wall, 3),
        "pass_ms": run["duration_ms"],
        "complete_fetch": run["complete_fetch"],
        "updated": run["counts"].get("updated", 0),
        "requests_sent": sent,
        "peak_rss_mb": rss,
        "setup_s": round(setup, 1),
        "exit_code": code,
    }
    report(
        "incremental",
        ["mapped", "changed", "process s", "pass ms", "complete fetch", "updated", "requests", "peak RSS MB", "set-up s", "exit"],
        [list(result.values())],
        result,
    )


if __name__ == "__main__":
    main()
