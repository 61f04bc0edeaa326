"""Calls sent per change that needed a call: must be exactly 1.00 (a recreate counts as two calls
for one change), and an unchanged round must send nothing.

    python bench/calls_per_change.py --items 300 --rounds 20 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import Sandbox, interview, report, run_connector, write_config

CALLS = {"title": 1, "time": 1, "duration": 1, "participants": 2, "organizer": 2, "cancel": 1, "new": 1}


def mutate(rng: random.Random, items: dict[str, dict], next_number: list[int]) -> dict[str, int]:
    """Apply one round of distinct changes; returns how many of each kind."""
    done = dict.fromkeys(CALLS, 0)
    live = [key for key, item in items.items() if item["status"] != "cancelled"]
    for key in rng.sample(live, k=min(len(live), rng.randint(5, 25))):
        kind = rng.choice(["title", "time", "duration", "participants", "organizer", "cancel"])
        item = items[key]
        if kind == "title":
            item["title"] += " *"
        elif kind == "time":
            item["start_at"] = item["start_at"][:11] + ("07:00:00" if not item["start_at"].endswith("07:00:00") else "19:00:00")
        elif kind == "duration":
            item["minutes"] = 25 if item["minutes"] != 25 else 35
        elif kind == "participants":
            item["candidates"] = item["candidates"] + [{"jobylon_application_id": 100_000 + next_number[0]}]
        elif kind == "organizer":
            item["organizer"] = {"email": "ops@initech.example" if item["organizer"]["email"] != "ops@initech.example" else "recruiter@acme.example"}
        else:
            item["status"] = "cancelled"
        done[kind] += 1
    for _ in range(rng.randint(0, 5)):
        number = next_number[0]
        next_number[0] += 1
        items[f"INT-{number}"] = interview(number)
        done["new"] += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    items = {f"INT-{n}": interview(n) for n in range(args.items)}
    next_number = [args.items]
    sandbox = Sandbox()
    rows, needed_total, sent_total, unchanged_rounds_sent = [], 0, 0, 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-calls-") as name:
            folder = Path(name)
            source = folder / "interviews.json"
            source.write_text(json.dumps(list(items.values())))
            config = write_config(folder, sandbox.url, {"kind": "file", "path": str(source), "format": "json"})
            run_connector(config, "sync", "--full")
            for round_number in range(1, args.rounds + 1):
                unchanged = round_number % 5 == 0
                changes = dict.fromkeys(CALLS, 0) if unchanged else mutate(rng, items, next_number)
                source.write_text(json.dumps(list(items.values())))
                before = sandbox.requests()
                _, _, code = run_connector(config, "sync", "--full")
                sent = sandbox.requests() - before
                needed = sum(CALLS[kind] * count for kind, count in changes.items())
                if code != 0:
                    raise SystemExit(f"round {round_number}: sync exited {code}")
                needed_total += needed
                sent_total += sent
                if unchanged:
                    unchanged_rounds_sent += sent
                rows.append([round_number, "unchanged" if unchanged else ", ".join(f"{k} {v}" for k, v in changes.items() if v), needed, sent])
    finally:
        sandbox.stop()
    ratio = sent_total / needed_total
    summary = {
        "rounds": args.rounds,
        "calls_needed": needed_total,
        "calls_sent": sent_total,
        "calls_per_change": round(ratio, 4),
        "unchanged_rounds_calls": unchanged_rounds_sent,
    }
    rows.append(["total", "", needed_total, sent_total])
    report("calls_per_change", ["round", "changes", "calls needed", "calls sent"], rows, summary)
    print(f"calls per change: {ratio:.2f}")


if __name__ == "__main__":
    main()
