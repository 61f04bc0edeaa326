"""The file source reads its file as a stream: memory follows what the pass keeps, not the file, and
what it reads is what json.loads / the whole-text reading read before, errors and their places
included. A problem found mid-stream stops the pass before anything is planned or sent."""

from __future__ import annotations

import codecs
import itertools
import json
import random
import tracemalloc

import pytest
from conftest import item

from connector.config import load_settings
from connector.errors import SourceError
from connector.sources import BrokenItem, FetchResult, file, json_problem, open_source


def file_source(path, **extra):
    settings = load_settings(data={"jobylon": {"app_id": "a", "app_key": "k" * 8}, "source": {"kind": "file", "path": str(path), **extra}})
    return open_source(settings.source, settings.retry)


def whole_text_reading(data: bytes):
    """What the source read before it streamed: the whole file decoded, then json.loads."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ("error", f"not UTF-8 text (byte {exc.start})")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return ("error", f"not valid JSON ({json_problem(exc)})")
    return ("ok", parsed) if isinstance(parsed, list) else ("error", "not a list")


def streamed_reading(path):
    try:
        return ("ok", list(file_source(path).fetch().take()))
    except SourceError as exc:
        message = str(exc).split(": ", 1)[1]
        return ("error", "not a list" if message.startswith("expected a JSON list") else message)


def big_list(count: int) -> list[dict]:
    return [item(f"INT-{n}", notes="Video call with the team lead. " * 8) for n in range(count)]


# -- memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_a_file_is_read_as_a_stream_in_far_less_memory_than_its_size(tmp_path, fmt):
    items = big_list(30_000)
    path = tmp_path / f"big.{fmt}"
    path.write_text(json.dumps(items) if fmt == "json" else "\n".join(json.dumps(i) for i in items))
    size = path.stat().st_size
    assert size > 15_000_000
    tracemalloc.start()
    try:
        fetched = file_source(path).fetch()
        count = sum(1 for _ in fetched.take())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(items)
    assert peak < size / 10, f"peak {peak} bytes while streaming a file of {size} bytes"


def test_a_csv_file_streams_too(tmp_path):
    path = tmp_path / "big.csv"
    rows = "".join(f'INT-{n},"Interview {n}, with a comma","Room\n{n}"\n' for n in range(300_000))
    path.write_text("id,title,location\n" + rows)
    tracemalloc.start()
    try:
        taken = file_source(path).fetch().take()
        first = next(taken)
        count = 1 + sum(1 for _ in taken)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first == {"id": "INT-0", "title": "Interview 0, with a comma", "location": "Room\n0"}
    assert count == 300_000
    assert peak < path.stat().st_size / 5


# -- the same reading as before ------------------------------------------------------------------


def test_items_is_still_the_whole_list_and_take_hands_each_item_out_once(tmp_path):
    path = tmp_path / "i.json"
    path.write_text(json.dumps([{"id": 1}, {"id": 2}, {"id": 3}]))
    assert file_source(path).fetch().items == [{"id": 1}, {"id": 2}, {"id": 3}]
    fetched = file_source(path).fetch()
    assert list(fetched.take()) == [{"id": 1}, {"id": 2}, {"id": 3}]
    with pytest.raises(RuntimeError, match="taken one by one already"):
        fetched.items  # noqa: B018
    listed = FetchResult(items=[{"id": 1}, {"id": 2}], complete=True)
    taken = listed.take()
    assert next(taken) == {"id": 1} and listed._items is None  # the list is emptied as it is read


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_in_small_chunks_a_json_file_reads_as_json_loads_reads_it(tmp_path, monkeypatch, chunk):
    """Chunk edges anywhere: inside strings, escapes, UTF-8 sequences, numbers (`1e5` cut after
    `1e` is not 1 followed by garbage) and the byte order mark; broken files name the same place."""
    monkeypatch.setattr(file, "CHUNK", chunk)
    rng = random.Random(chunk)
    base = json.dumps(
        [{"id": n, "t": 'é "q" \\ ' * (n % 3), "n": [1.5e3, -0.25, 12345678901234567890, True, None, 1e5], "s": "a\nb"} for n in range(5)], indent=1
    )
    path = tmp_path / "i.json"
    for _ in range(120):
        text, op = base, rng.random()
        if op < 0.3:
            text = text[: rng.randint(0, len(text))]
        elif op < 0.8:
            at = rng.randint(0, len(text) - 1)
            text = text[:at] + rng.choice('[]{},:"\\ \n0e.-tn') + text[at + 1 :]
        data = (codecs.BOM_UTF8 if rng.random() < 0.3 else b"") + text.encode()
        path.write_bytes(data)
        assert streamed_reading(path) == whole_text_reading(data), text


@pytest.mark.parametrize("chunk", [1, 5, 1 << 18])
def test_in_small_chunks_ndjson_and_csv_read_as_the_whole_text_did(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(file, "CHUNK", chunk)
    ndjson = tmp_path / "i.ndjson"
    ndjson.write_bytes(codecs.BOM_UTF8 + '{"id": 1}\r\n\n{"id": \n{"id": 3, "t": "a\u2028b"}\n  \n{"id": 4}'.encode())
    items = list(file_source(ndjson).fetch().take())
    assert items[0] == {"id": 1} and items[2] == {"id": 3, "t": "a\u2028b"} and items[3] == {"id": 4} and len(items) == 4
    assert isinstance(items[1], BrokenItem) and items[1].position == "line 3"
    csv_path = tmp_path / "i.csv"
    for newline in ("\n", "\r\n", "\r"):
        rows = ["id,title,location", '1,"two\r\nlines",Room 1', "2,too,many,fields", "3,plain,"]
        csv_path.write_bytes(codecs.BOM_UTF8 + newline.join(rows).encode() + newline.encode())
        got = list(file_source(csv_path).fetch().take())
        assert got[0] == {"id": "1", "title": "two\r\nlines", "location": "Room 1"}, newline
        assert got[1] == BrokenItem("row 3", "4 fields where the header has 3") and got[2] == {"id": "3", "title": "plain", "location": None}


# -- problems found mid-stream -------------------------------------------------------------------


def test_a_broken_element_mid_stream_is_reported_with_json_loads_place(tmp_path):
    items = [json.dumps(i) for i in big_list(3_000)]
    items[2_500] = items[2_500][:-20] + "}"  # cut short: a key without its value
    text = "[\n" + ",\n".join(items) + "\n]"
    path = tmp_path / "i.json"
    path.write_text(text)
    assert len(text) > 2 * file.CHUNK  # far past what fetch() reads
    fetched = file_source(path).fetch()  # the start of the file is fine
    taken = fetched.take()
    assert sum(1 for _ in itertools.islice(taken, 2_500)) == 2_500  # every item before it arrives
    expected = whole_text_reading(text.encode())
    assert expected[0] == "error"
    with pytest.raises(SourceError) as raised:
        next(taken)
    assert str(raised.value) == f"source file {path}: {expected[1]}"
    assert "at line 2502 column" in str(raised.value)


def test_not_utf8_mid_stream_names_the_byte(tmp_path):
    data = codecs.BOM_UTF8 + json.dumps([{"id": n, "t": "é" * 50} for n in range(5_000)]).encode()
    at = len(data) - 1_000
    data = data[:at] + b"\xff" + data[at + 1 :]
    path = tmp_path / "i.json"
    path.write_bytes(data)
    assert at > file.CHUNK
    expected = whole_text_reading(data)
    with pytest.raises(SourceError) as raised:
        list(file_source(path).fetch().take())
    assert str(raised.value) == f"source file {path}: {expected[1]}"


def test_deep_nesting_mid_stream_is_refused_without_building_it(tmp_path):
    path = tmp_path / "i.json"
    path.write_text('[{"id": 1}, ' + "[" * 100_000 + "]" * 100_000 + "]")
    taken = file_source(path).fetch().take()
    assert next(taken) == {"id": 1}
    with pytest.raises(SourceError, match=r"not valid JSON \(nested too deeply\)"):
        next(taken)


def test_the_size_cap_holds_while_reading(tmp_path):
    """A file that grows after fetch() checked its size is still read no further than the cap."""
    path = tmp_path / "i.json"
    path.write_text(json.dumps([{"id": n} for n in range(50_000)]))
    cap = path.stat().st_size + 10
    fetched = file_source(path, max_bytes=cap).fetch()
    with path.open("a") as handle:
        handle.write(" " * 1_000)
    with pytest.raises(SourceError, match=rf"{cap + 990} bytes, above source.max_bytes = {cap}"):
        list(fetched.take())


def test_a_pass_over_a_file_broken_mid_stream_sends_nothing_and_deletes_nothing(harness):
    harness.data["sync"]["max_delete_fraction"] = 1
    harness.write([item("A"), item("B")])
    assert harness.sync().outcome == "ok"
    before = harness.api_requests()
    harness.reset_engine()
    lines = [json.dumps(i) for i in [item(f"N{n}", notes="x" * 200) for n in range(3_000)]]
    harness.source_path.write_text("[" + ",".join(lines) + ', {"id": "Z", "title": oops}]')
    result = harness.sync()
    assert result.outcome == "source_error" and "not valid JSON" in (result.error or "")
    assert harness.api_requests() == before, "no create for the items read before the problem, no delete for A and B"
    assert sorted(e["title"] for e in harness.jobylon_events()) == ["Interview A", "Interview B"]
