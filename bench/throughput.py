"""Creates per second, as a partner meets them, against the bound min(R, C*1000/L) and a naive peer.

    python bench/throughput.py                                   # 5,000 creates at L = 20 ms, C = 8, R = 1000 and R = 100
    python bench/throughput.py --items 2000 --rate 1000 --repeat 5
    python bench/throughput.py --no-whole-process                # headline: first to last request only

N new interviews in a JSON file are created by one `connector sync --full`; the sandbox (its own
process) adds L ms to every call. Two figures per run, both printed:

- whole process (the default headline, `--whole-process`): calls / wall time of the `connector`
  process from spawn to exit, as a cron job or a partner's script sees it: interpreter start-up,
  imports, config, state database, fetch, map, plan, every call, the run record, exit;
- first to last: (calls - 1) / (last - first request time at the sandbox), which leaves out what
  the process does before its first call and after its last one.

With `--baseline DIR` (another checkout, e.g. `git archive HEAD~5 | tar -x -C DIR`), that
connector is measured too, interleaved with this one: a before and after under the same load.

Beside it, in the same run and against a sandbox set up the same way, `bench/naive_peer.py` sends
the same interviews with C threads and one `requests.Session` each (no state, no retries, no rate
limit), timed the same way; it runs only where the rate limit does not bind. The busiest one-second
window of request times at the sandbox shows "never above R". Every measurement is repeated
(`--repeat`, default 3), connector and peer interleaved; the tables give medians and spreads
(max - min), and the load average says when other work on the machine may blur them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, Sandbox, byte_compile, check_checkouts, interview, load, median_spread, report, run_process, write_config


def busiest_second(stamps: list[float]) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def measure(who: str, source: Path, folder: Path, latency_ms: float, concurrency: int, rate: float, baseline: str | None = None) -> dict[str, float]:
    """One timed process (`connector`, `baseline` or `peer`) against a fresh sandbox."""
    sandbox = Sandbox()
    try:
        sandbox.post("/_sandbox/faults", {"rate": 0, "latency_ms": latency_ms})
        if who in ("connector", "baseline"):
            run = folder / f"run-{len(list(folder.glob('run-*')))}"
            run.mkdir()
            config = write_config(
                run,
                sandbox.url,
                {"kind": "file", "path": str(source), "format": "json", "max_bytes": 1 << 30},
                sync={"concurrency": concurrency},
                jobylon={"max_requests_per_second": rate},
            )
            command = [sys.executable, "-m", "connector", "--config", str(config), "sync", "--full"]
        else:
            command = [sys.executable, str(ROOT / "bench" / "naive_peer.py"), "--url", sandbox.url, "--file", str(source), "--threads", str(concurrency)]
        timed = run_process(command, pythonpath=baseline if who == "baseline" else None)
        log = sandbox.get("/_sandbox/requests")
    finally:
        sandbox.stop()
    if timed.code != 0:
        raise SystemExit(f"{who} exited {timed.code}")
    posts = [r for r in log if r["method"] == "POST"]
    stamps = sorted(r["received_at"] for r in posts)
    created = sum(1 for r in posts if r["status"] == 201)
    return {
        "calls": len(posts),
        "created": created,
        "whole_per_s": len(posts) / timed.wall,
        "window_per_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
        "to_first_call_s": stamps[0] - timed.started_at,
        "after_last_answer_s": timed.ended_at - max(r["at"] for r in posts),
        "busiest_second": busiest_second(stamps),
        "process_s": timed.wall,
        "cpu_ms_per_call": 1000 * timed.cpu_s / max(len(posts), 1),
    }


def summarise(who: str, items: int, latency_ms: float, concurrency: int, rate: float, runs: list[dict[str, float]]) -> dict[str, Any]:
    bound = min(rate, concurrency * 1000 / latency_ms) if latency_ms else rate
    out: dict[str, Any] = {"who": who, "items": items, "latency_ms": latency_ms, "concurrency": concurrency, "rate_limit": rate, "bound_per_s": round(bound, 1)}
    for key in ("whole_per_s", "window_per_s", "to_first_call_s", "after_last_answer_s", "process_s", "cpu_ms_per_call"):
        median, spread = median_spread([r[key] for r in runs])
        out[key] = round(median, 3)
        out[f"{key}_spread"] = round(spread, 3)
    out["whole_ratio"] = round(out["whole_per_s"] / bound, 3)
    out["window_ratio"] = round(out["window_per_s"] / bound, 3)
    out["busiest_second_max"] = max(r["busiest_second"] for r in runs)
    out["calls"] = sorted({int(r["calls"]) for r in runs})
    out["created"] = sorted({int(r["created"]) for r in runs})
    out["runs"] = len(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, action="append", help="max requests per second (repeatable; default 1000 and 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; medians and spreads are reported")
    parser.add_argument(
        "--whole-process", action=argparse.BooleanOptionalAction, default=True, help="headline figure: the whole process (default) or first to last request"
    )
    parser.add_argument("--no-peer", action="store_true", help="leave out the naive peer")
    parser.add_argument("--baseline", metavar="DIR", help="also measure the connector checked out in DIR, interleaved (before and after)")
    args = parser.parse_args()
    byte_compile(ROOT, args.baseline)
    check_checkouts(args.baseline)
    load_before = load()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as name:
        folder = Path(name)
        for rate in args.rate or [1000, 100]:
            bound = min(rate, args.concurrency * 1000 / args.latency_ms) if args.latency_ms else rate
            items = args.items if rate >= 200 else min(args.items, int(rate * 5))
            source = folder / f"interviews-{items}.json"
            source.write_text(json.dumps([interview(n) for n in range(items)]))
            with_peer = not args.no_peer and rate > bound  # a peer without a rate limit says nothing where the limit binds
            runs: dict[str, list[dict[str, float]]] = {"baseline": [], "connector": [], "peer": []}
            who = [name for name, wanted in (("baseline", args.baseline), ("connector", True), ("peer", with_peer)) if wanted]
            for round_ in range(args.repeat):
                # The order turns each round: the first process of a round met a different machine
                # (caches, the sandbox's warm-up) than the last, and a fixed order biased the pairs.
                for name in who[round_ % len(who) :] + who[: round_ % len(who)]:
                    runs[name].append(measure(name, source, folder, args.latency_ms, args.concurrency, rate, args.baseline))
            rows += [summarise(who, items, args.latency_ms, args.concurrency, rate, got) for who, got in runs.items() if got]
    headline = "whole_ratio" if args.whole_process else "window_ratio"
    columns = [
        "who",
        "items",
        "L ms",
        "C",
        "R",
        "bound /s",
        "whole process /s (spread)",
        "whole / bound",
        "first-to-last /s (spread)",
        "first-to-last / bound",
        "to first call s",
        "after last answer s",
        "busiest second",
        "process s (spread)",
        "CPU ms / call",
    ]
    table = [
        [
            r["who"],
            r["items"],
            r["latency_ms"],
            r["concurrency"],
            r["rate_limit"],
            r["bound_per_s"],
            f"{r['whole_per_s']:.1f} ({r['whole_per_s_spread']:.1f})",
            f"{r['whole_ratio']:.3f}",
            f"{r['window_per_s']:.1f} ({r['window_per_s_spread']:.1f})",
            f"{r['window_ratio']:.3f}",
            f"{r['to_first_call_s']:.3f}",
            f"{r['after_last_answer_s']:.3f}",
            r["busiest_second_max"],
            f"{r['process_s']:.2f} ({r['process_s_spread']:.2f})",
            f"{r['cpu_ms_per_call']:.2f}",
        ]
        for r in rows
    ]
    verdicts = []
    for r in rows:
        if r["who"] != "connector":
            continue
        if r["rate_limit"] < r["concurrency"] * 1000 / r["latency_ms"]:
            verdicts.append(f"R = {r['rate_limit']:g}: busiest second {r['busiest_second_max']} (never above R: {r['busiest_second_max'] <= r['rate_limit']})")
            continue
        peer = next((p for p in rows if p["who"] == "peer" and p["rate_limit"] == r["rate_limit"]), None)
        line = f"R = {r['rate_limit']:g}: connector {r[headline]:.3f} of the bound"
        if peer is not None:
            line += f", naive peer {peer[headline]:.3f} (connector >= peer: {r[headline] >= peer[headline]})"
        verdicts.append(line)
    summary = {"headline": headline, "load_before": load_before, "load_after": load(), "results": rows, "verdicts": verdicts}
    report("throughput", columns, table, summary)
    for line in [f"{load_before} before, {load()} after; medians of {args.repeat} runs", *verdicts]:
        print(line)


if __name__ == "__main__":
    main()
