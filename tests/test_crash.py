"""Kill -9 at varied points, restart, and still: no duplicate, nothing lost, convergence.

Each round mutates the source, then runs `connector sync` as a real process that is SIGKILLed
either by a test hook right after a chosen call (CONNECTOR_CRASH_AT) or by the test at a random
moment. In-doubt creates are then resolved the way an operator would (look the request up in
Jobylon: --event-id if it is there, --recreate if not) and a final pass must converge exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from conftest import Harness, item

KILLS_WANTED = 20
MAX_ROUNDS = 80


def desired_items(state: dict[str, dict]) -> list[dict]:
    return [raw for raw in state.values()]


def mutate(rng: random.Random, state: dict[str, dict], next_id: list[int]) -> None:
    for rid in rng.sample(sorted(state), k=min(10, len(state))):
        raw = state[rid]
        change = rng.choice(["title", "time", "participants", "cancel", "uncancel"])
        version = int(raw["title"].rsplit("v", 1)[1]) + 1
        if change == "title":
            raw["title"] = f"Interview {rid} v{version}"
        elif change == "time":
            raw["start_at"] = raw["start_at"][:11] + f"{rng.randint(8, 17):02d}:00:00"
            raw["title"] = f"Interview {rid} v{version}"
        elif change == "participants":
            raw["candidates"] = [{"jobylon_application_id": a} for a in sorted(rng.sample(range(1000, 1010), rng.randint(1, 3)))]
            raw["title"] = f"Interview {rid} v{version}"
        elif change == "cancel":
            raw["status"] = "cancelled"
        else:
            raw["status"] = "scheduled"
    for _ in range(rng.randint(0, 3)):
        rid = f"N{next_id[0]}"
        next_id[0] += 1
        state[rid] = item(rid, days=rng.randint(1, 20), title=f"Interview {rid} v0")
    for rid in rng.sample(sorted(state), k=rng.randint(0, 2)):
        del state[rid]


def run_sync(config, env_extra=None, kill_after=None):
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(config), "sync", "--full", "--allow-mass-delete"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def cli_json(config, *args):
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "connector", "--config", str(config), *args, "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_kill_9_at_varied_points_never_duplicates_and_converges(tmp_path, sandbox, state_section):
    rng = random.Random(20261124)
    h = Harness(tmp_path, sandbox, sync={"concurrency": 2, "max_deletes": 1000}, retry={"attempts": 2}, state=state_section)
    state = {f"R{i}": item(f"R{i}", days=1 + i % 15, title=f"Interview R{i} v0") for i in range(30)}
    next_id = [0]
    config = h.config_file()
    kills = 0
    try:
        round_no = 0
        while kills < KILLS_WANTED and round_no < MAX_ROUNDS:
            round_no += 1
            mutate(rng, state, next_id)
            h.write(desired_items(state))
            if round_no % 3 == 2:
                sandbox.set_faults(latency_ms=rng.choice([5, 20, 40]))
                code, err = run_sync(config, kill_after=rng.uniform(0.3, 1.2))
                sandbox.set_faults(latency_ms=0)
            else:
                spec = f"{rng.choice(['after_intent', 'after_response'])}:{rng.choice(['POST', 'POST', 'PUT', 'DELETE'])}:{rng.randint(1, 3)}"
                code, err = run_sync(config, {"CONNECTOR_CRASH_AT": spec})
            assert "Traceback" not in err, err
            kills += code == -signal.SIGKILL
        assert kills >= KILLS_WANTED, f"only {kills} runs were killed in {round_no} rounds"

        h.write(desired_items(state))
        run_sync(config)  # settles what the last kill left; in-doubt creates stay in doubt

        # Every event in Jobylon is mapped, or is the target of an in-doubt create.
        mapped = {e.event_id for e in h.store.events() if e.event_id is not None}
        in_doubt = cli_json(config, "failures", "list", "--kind", "in_doubt")
        doubtful_requests = [cli_json(config, "failures", "show", str(f["id"]))["request"] for f in in_doubt]
        for event in h.jobylon_events():
            if event["id"] not in mapped:
                assert any(_same(event, request) for request in doubtful_requests), f"unaccounted event {event}"

        # The operator resolves each in-doubt create from what Jobylon holds.
        for failure, request in zip(in_doubt, doubtful_requests, strict=True):
            matches = [e for e in h.jobylon_events() if _same(e, request) and e["id"] not in mapped]
            env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
            args = ["--event-id", str(matches[0]["id"])] if matches else ["--recreate"]
            done = subprocess.run(
                [sys.executable, "-m", "connector", "--config", str(config), "resolve", failure["remote_id"], *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert done.returncode in (0, 1), done.stderr
            if matches:
                mapped.add(matches[0]["id"])

        code, err = run_sync(config)
        assert code == 0, err
        code, err = run_sync(config)
        assert code == 0, err

        events = h.jobylon_events()
        per_remote = Counter(e["title"].split()[1] for e in events)
        assert [rid for rid, n in per_remote.items() if n > 1] == [], "duplicates"
        wanted = {rid: raw for rid, raw in state.items() if raw["status"] != "cancelled"}
        assert set(per_remote) == set(wanted)
        for event in events:
            rid = event["title"].split()[1]
            assert event["title"] == wanted[rid]["title"]
            assert event["start_time"] == wanted[rid]["start_at"]
            assert event["participants"] == sorted({c["jobylon_application_id"] for c in wanted[rid]["candidates"]})
        assert h.store.orphaned_intents() == []
        print(f"crash test: {round_no} rounds, {kills} kills, {len(in_doubt)} in doubt resolved, {len(events)} events, 0 duplicates")
    finally:
        h.close()


def _same(event: dict, request: dict | None) -> bool:
    return request is not None and all(event.get(k) == v for k, v in request.items())
