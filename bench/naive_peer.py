"""The simplest client a partner could write: the same interviews as creates, nothing else.

    python bench/naive_peer.py --url http://127.0.0.1:PORT --file interviews.json --threads 8

T threads, one `requests.Session` each, take the next interview from the file, build its create
payload straight from the raw item and POST it. No state, no retries, no rate limit, no log, no
validation: what is left is Python, `requests` and the network. `bench/throughput.py` times it as a
whole process beside `connector sync`, against the same sandbox settings, so the connector's figure
has a floor that moves with the machine.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from typing import Any

import requests

APP_ID, APP_KEY = "demo-app", "demo-key-0123456789"


def payload(raw: dict[str, Any]) -> dict[str, Any]:
    """The create body of one raw item in bench/common.py's shape (no checks at all)."""
    return {
        "title": raw["title"],
        "description": raw.get("notes") or "",
        "duration": raw["minutes"],
        "start_time": raw["start_at"],
        "timezone": raw["timezone"],
        "organizer": raw["organizer"]["email"],
        "participants": [c["jobylon_application_id"] for c in raw["candidates"]],
        "videoconferencing": bool(raw.get("video")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the sandbox's base URL")
    parser.add_argument("--file", required=True, help="a JSON list of raw interviews")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with open(args.file, "rb") as handle:
        items: Iterator[dict[str, Any]] = iter(json.load(handle))
    lock = threading.Lock()
    sent = [0] * args.threads
    url = args.url.rstrip("/") + "/p1/events/"

    def work(number: int) -> None:
        session = requests.Session()
        session.headers.update({"X-App-Id": APP_ID, "X-App-Key": APP_KEY})
        while True:
            with lock:
                raw = next(items, None)
            if raw is None:
                return
            session.post(url, json=payload(raw), timeout=30)
            sent[number] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"sent": sum(sent)}))


if __name__ == "__main__":
    main()
