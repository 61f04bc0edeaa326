"""Time a complete pass over an unchanged source, as a whole process, against json.load.

    python bench/unchanged_pass.py --items 10000 --items 100000

For each N: N interviews in a JSON file source are synced into the sandbox (set-up, not timed),
then `connector sync --full` runs again over the unchanged file: wall time and peak RSS of that
process (best of --repeat), the requests it sent (must be 0), and json.load of the same file.
With several N, the time ratio largest/smallest shows linearity.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import Sandbox, interview, report, run_connector, write_config


def measure(items: int, repeat: int, folder: Path) -> dict[str, float]:
    source = folder / "interviews.json"
    source.write_text(json.dumps([interview(n) for n in range(items)]))
    sandbox = Sandbox()
    try:
        config = write_config(folder, sandbox.url, {"kind": "file", "path": str(source), "format": "json"})
        started = time.perf_counter()
        _, _, code = run_connector(config, "sync", "--full")
        setup = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"set-up sync of {items} interviews exited {code}")
        before = sandbox.requests()
        runs = [run_connector(config, "sync", "--full") for _ in range(repeat)]
        sent = sandbox.requests() - before
    finally:
        sandbox.stop()
    loads = []
    for _ in range(3):
        started = time.perf_counter()
        with source.open("rb") as handle:
            json.load(handle)
        loads.append(time.perf_counter() - started)
    wall = min(r[0] for r in runs)
    return {
        "items": items,
        "pass_s": round(wall, 3),
        "peak_rss_mb": max(r[1] for r in runs),
        "json_load_s": round(min(loads), 3),
        "ratio_to_json_load": round(wall / min(loads), 2),
        "requests_sent": sent,
        "setup_s": round(setup, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, action="append", help="interviews (repeatable; default 10000 and 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per size; the best counts")
    args = parser.parse_args()
    sizes = sorted(args.items or [10_000, 100_000])
    results = []
    for items in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-unchanged-") as folder:
            results.append(measure(items, args.repeat, Path(folder)))
    summary: dict[str, object] = {"results": results}
    if len(results) > 1:
        summary["time_ratio_largest_to_smallest"] = round(results[-1]["pass_s"] / results[0]["pass_s"], 2)
        summary["size_ratio"] = round(results[-1]["items"] / results[0]["items"], 2)
    columns = ["items", "pass s", "peak RSS MB", "json.load s", "pass / json.load", "requests sent", "set-up s"]
    report("unchanged_pass", columns, [list(r.values()) for r in results], summary)


if __name__ == "__main__":
    main()
