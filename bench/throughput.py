"""Creates per second against the sandbox with added latency, against the bound min(R, C*1000/L).

    python bench/throughput.py --items 2000 --latency-ms 20 --concurrency 8 --rate 1000
    python bench/throughput.py --items 500 --latency-ms 20 --concurrency 8 --rate 100   # rate-bound

N new interviews are created in one `connector sync`; the sandbox adds L ms to every call. The
achieved rate is read from the sandbox's own request log (first to last request), and the busiest
one-second window is reported so that "never above R" can be checked.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import Sandbox, interview, report, run_connector, write_config


def busiest_second(stamps: list[float]) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def measure(items: int, latency_ms: float, concurrency: int, rate: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as name:
        folder = Path(name)
        source = folder / "interviews.json"
        source.write_text(json.dumps([interview(n) for n in range(items)]))
        sandbox = Sandbox()
        try:
            sandbox.post("/_sandbox/faults", {"rate": 0, "latency_ms": latency_ms})
            config = write_config(
                folder,
                sandbox.url,
                {"kind": "file", "path": str(source), "format": "json"},
                sync={"concurrency": concurrency},
                jobylon={"max_requests_per_second": rate},
            )
            wall, _, code = run_connector(config, "sync", "--full")
            log = sandbox.get("/_sandbox/requests")
        finally:
            sandbox.stop()
    if code != 0:
        raise SystemExit(f"sync exited {code}")
    stamps = sorted(r["received_at"] for r in log if r["method"] == "POST")
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    bound = min(rate, concurrency * 1000 / latency_ms) if latency_ms else rate
    return {
        "items": items,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "rate_limit": rate,
        "bound_per_s": round(bound, 1),
        "achieved_per_s": round(achieved, 1),
        "ratio_to_bound": round(achieved / bound, 3),
        "busiest_second": busiest_second(stamps),
        "process_wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, action="append", help="max requests per second (repeatable; default 1000 and 100)")
    args = parser.parse_args()
    rows = []
    for rate in args.rate or [1000, 100]:
        items = args.items if rate >= 200 else min(args.items, int(rate * 5))
        rows.append(measure(items, args.latency_ms, args.concurrency, rate))
    columns = ["items", "latency ms", "concurrency", "rate limit", "bound /s", "achieved /s", "achieved / bound", "busiest second", "process s"]
    report("throughput", columns, [list(r.values()) for r in rows], {"results": rows})


if __name__ == "__main__":
    main()
