"""The bad and hostile input corpus (tests/data/bad_items.json): each item gets a specific error
record or syncs correctly; the valid ones in the same fetch still sync; nothing crashes; logs stay
one record per line; a huge body is refused within bounded memory."""

from __future__ import annotations

import json
import re
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Harness, item, run_cli

from connector.config import load_settings
from connector.errors import SourceError
from connector.sources import open_source

CORPUS = json.loads((Path(__file__).parent / "data" / "bad_items.json").read_text("utf-8"))


def expand(value):
    if isinstance(value, dict) and set(value) == {"$repeat"}:
        text, times = value["$repeat"]
        return text * times
    return value


def build_fetch():
    """The corpus as one fetch: (raw items, [(case, label, expected title)])."""
    raws, cases = [], []
    for number, case in enumerate(CORPUS):
        if "raw" in case:
            raw = case["raw"]
        else:
            raw = item(f"C{number}")
            for key, value in case.get("changes", {}).items():
                raw[key] = expand(value)
            if "drop" in case:
                raw.pop(case["drop"])
        label = case.get("label") or (
            raw["id"]
            if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"].strip() and len(raw["id"]) < 255 and "\n" not in raw["id"]
            else None
        )
        for _ in range(2 if case.get("twice") else 1):
            if label is None:
                label_here = f"<item #{len(raws)}>"
            else:
                label_here = label
            raws.append(raw)
        cases.append((case, label_here, raw.get("title") if isinstance(raw, dict) else None))
    return raws, cases


def test_corpus_has_at_least_40_cases():
    assert len(CORPUS) >= 40


def corpus_mapping(harness):
    """The corpus maps `end_at` too: an item without one takes its duration from `minutes`."""
    harness.data["mapping"]["end"] = "end_at"
    harness.reset_engine()


def test_each_bad_item_gets_a_specific_record_and_the_valid_ones_sync(harness):
    corpus_mapping(harness)
    raws, cases = build_fetch()
    harness.write(raws)
    result = harness.sync()
    assert result.outcome == "failed_items"
    titles = [e["title"] for e in harness.jobylon_events()]
    failures = {f.remote_id: f for f in harness.store.failures()}
    for case, label, title in cases:
        kind, _, field = case["expect"].partition(":")
        name = case["name"]
        if kind == "valid":
            assert titles.count(title) == 1, name
            assert label not in failures, name
        elif kind == "skipped":
            assert title not in titles and label not in failures, name
        elif kind == "invalid":
            assert label in failures, (name, label, sorted(failures))
            assert failures[label].action == "map" and f"{field}:" in failures[label].message, (name, failures[label].message)
            assert title not in titles, name
        else:
            failure = failures[label]
            assert failure.http_status == 400 and field in failure.response, name
    valid = sum(1 for case in CORPUS if case["expect"] == "valid")
    assert len(titles) == valid
    # The 1 MB title is reported, not stored whole.
    assert max(len(f.message) for f in failures.values()) < 2000


def test_hostile_text_round_trips_exactly(harness):
    corpus_mapping(harness)
    raws, cases = build_fetch()
    harness.write(raws)
    harness.sync()
    events = {e["title"] for e in harness.jobylon_events()}
    for case, _, title in cases:
        if case["expect"] == "valid" and any(ch in (title or "") for ch in "'\u200f\U0001f389|["):
            assert title in events


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_logs_stay_one_record_per_line(tmp_path, sandbox, log_format):
    h = Harness(tmp_path, sandbox)
    try:
        raws, _ = build_fetch()
        h.write(raws)
        result = run_cli("--config", str(h.config_file()), "--log-format", log_format, "sync", timeout=120)
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert len(lines) > 40
        for line in lines:
            if log_format == "json":
                record = json.loads(line)
                assert {"timestamp", "level", "event", "message"} <= set(record)
            else:
                assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|WARNING|ERROR|DEBUG) ", line), line
        assert "INFO fake log line" not in [line[21:] for line in lines]
    finally:
        h.close()


def test_source_failure_changes_nothing(harness):
    harness.write([item("A")])
    harness.sync()
    harness.source_path.write_text("[{ not json")
    result = harness.sync()
    assert result.outcome == "source_error" and "not valid JSON" in result.error
    assert len(harness.jobylon_events()) == 1 and harness.store.event("A").status == "synced"
    assert harness.store.runs(1)[0].outcome == "source_error"


def test_a_50_mb_body_is_refused_with_bounded_memory():
    body = b"[" + b",".join(b'{"id": "%d", "title": "%s"}' % (i, b"x" * 200) for i in range(230_000)) + b"]"
    assert len(body) > 50_000_000

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            for start in range(0, len(body), 1 << 20):
                try:
                    self.wfile.write(body[start : start + (1 << 20)])
                except OSError:
                    return

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = load_settings(
        data={
            "jobylon": {"app_id": "a", "app_key": "k" * 8},
            "source": {"kind": "http", "url": f"http://127.0.0.1:{server.server_address[1]}/i", "max_bytes": 5_000_000},
        }
    )
    source = open_source(settings.source, settings.retry)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="larger than source.max_bytes = 5000000"):
            source.fetch()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.shutdown()
    assert peak < 20_000_000, f"peak {peak} bytes"
