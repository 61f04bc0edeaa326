"""Source kinds against real files in tmp_path and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.config import load_settings
from connector.errors import SourceError
from connector.model import BrokenItem as ModelBrokenItem
from connector.sources import BrokenItem, FetchResult, open_source, register_source, source_kinds

RETRY = {"attempts": 3, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, "retry_after_max_seconds": 0.05}
SECRETS = {"bearer": "tok-SECRET-bearer-1", "basic": "pw-SECRET-basic-2", "header": "val-SECRET-header-3"}
AUTH = {
    "bearer": {"type": "bearer", "token": SECRETS["bearer"]},
    "basic": {"type": "basic", "username": "user", "password": SECRETS["basic"]},
    "header": {"type": "header", "name": "X-Api-Key", "value": SECRETS["header"]},
}
ITEMS = [{"id": i} for i in range(25)]


def source_for(source: dict, retry: dict | None = None):
    settings = load_settings(data={"jobylon": {"app_id": "a", "app_key": "k" * 8}, "source": source, "retry": {**RETRY, **(retry or {})}})
    return open_source(settings.source, settings.retry)


def error_text(exc: BaseException) -> str:
    """Everything an exception could show: message, repr, and the traceback an operator might see."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


# -- registry --------------------------------------------------------------------------------


def test_broken_item_is_the_mappers_class_and_the_registry_is_keyed_by_kind(tmp_path):
    assert BrokenItem is ModelBrokenItem
    assert {"file", "http"} <= set(source_kinds())

    class Fake:
        kind = "file"

        def fetch(self, since=None):
            return FetchResult(items=["fake"], complete=True)

        def close(self):
            pass

    original = open_source.__globals__["_REGISTRY"]["file"]
    register_source("file", lambda config, retry: Fake())
    try:
        assert source_for({"kind": "file", "path": str(tmp_path / "x.json")}).fetch().items == ["fake"]
    finally:
        register_source("file", original)

    class Odd:
        kind = "carrier-pigeon"

    with pytest.raises(SourceError, match="'carrier-pigeon' is not a known source kind"):
        open_source(Odd(), load_settings(data={"jobylon": {"app_id": "a", "app_key": "k" * 8}, "source": {"kind": "file", "path": "x"}}).retry)


# -- file ------------------------------------------------------------------------------------


def file_source(path, **extra):
    return source_for({"kind": "file", "path": str(path), **extra})


def test_json_file(tmp_path):
    path = tmp_path / "i.json"
    path.write_text("\ufeff" + json.dumps([{"id": 1}, {"id": 2}]), encoding="utf-8")  # a BOM is tolerated
    result = file_source(path).fetch(since="2026-01-01T00:00:00Z")  # a file ignores the cursor
    assert result.items == [{"id": 1}, {"id": 2}] and result.complete and result.pages == 1


def test_json_file_must_be_a_list(tmp_path):
    path = tmp_path / "i.json"
    path.write_text('{"items": []}')
    with pytest.raises(SourceError, match=r"i\.json: expected a JSON list of interviews, found an object"):
        file_source(path).fetch()
    path.write_text('"just text"')
    with pytest.raises(SourceError, match="found a string"):
        file_source(path).fetch()
    path.write_text("[{")
    with pytest.raises(SourceError, match=r"i\.json: not valid JSON \(.* at line 1 column 3\)"):
        file_source(path).fetch()
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SourceError, match="not valid JSON"):
        file_source(path).fetch()


def test_ndjson_broken_line_is_an_item_of_its_own(tmp_path):
    path = tmp_path / "i.ndjson"
    # line 5 holds U+2028 inside a string: valid JSON, and not a line break for ndjson
    path.write_text('{"id": 1}\n\n{"id": \n{"id": 3}\r\n{"id": 4, "t": "a\u2028b"}\n   \n', encoding="utf-8")
    items = file_source(path).fetch().items
    assert items[0] == {"id": 1} and items[2] == {"id": 3} and items[3] == {"id": 4, "t": "a\u2028b"}
    assert len(items) == 4
    assert isinstance(items[1], BrokenItem) and items[1].position == "line 3"
    assert items[1].message.startswith("not valid JSON: Expecting value at column")


def test_jsonl_suffix_and_explicit_format(tmp_path):
    path = tmp_path / "i.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n')
    assert file_source(path).fetch().items == [{"id": 1}, {"id": 2}]
    other = tmp_path / "export.txt"
    other.write_text("id\n7\n")
    assert file_source(other, format="csv").fetch().items == [{"id": "7"}]


def test_csv_broken_rows_and_empty_cells(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text(
        "\ufeffid,title,location\n"
        "1,First,\n"
        '2,"Second, with comma",Room 1\n'
        "3,too,many,fields\n"
        "4,too few\n"
        ",,\n"  # a spreadsheet's empty row
        '5,"two\nlines",Room 2\n',
        encoding="utf-8",
    )
    items = file_source(path).fetch().items
    assert items[0] == {"id": "1", "title": "First", "location": None}
    assert items[1] == {"id": "2", "title": "Second, with comma", "location": "Room 1"}
    assert items[2] == BrokenItem("row 4", "4 fields where the header has 3")
    assert items[3] == BrokenItem("row 5", "2 fields where the header has 3")
    assert items[4] == {"id": "5", "title": "two\nlines", "location": "Room 2"}
    assert len(items) == 5


def test_csv_header_problems(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("")
    assert file_source(path).fetch().items == []
    path.write_text("id,title,id\n1,a,2\n")
    with pytest.raises(SourceError, match="names 'id' more than once"):
        file_source(path).fetch()


def test_file_size_cap_missing_and_unreadable(tmp_path):
    path = tmp_path / "i.json"
    path.write_text(json.dumps([{"id": i} for i in range(100)]))
    size = path.stat().st_size
    with pytest.raises(SourceError, match=f"i.json: {size} bytes, above source.max_bytes = 100"):
        file_source(path, max_bytes=100).fetch()
    assert len(file_source(path, max_bytes=size).fetch().items) == 100  # exactly at the cap is fine
    with pytest.raises(SourceError, match="nope.json: not found"):
        file_source(tmp_path / "nope.json").fetch()
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(SourceError, match="folder.json: is a directory"):
        file_source(folder).fetch()
    binary = tmp_path / "b.json"
    binary.write_bytes(b"[\xff\xfe]")
    with pytest.raises(SourceError, match="b.json: not UTF-8"):
        file_source(binary).fetch()


# -- http: a scripted JSON API on 127.0.0.1 ----------------------------------------------------

Answer = tuple[int, Any, dict[str, str]]


class Api:
    """A scripted partner API. `handler(path, query, headers) -> (status, body, headers)`, where body
    is JSON-able, bytes, or an iterator of bytes (then streamed without a Content-Length).
    `failures` are answered first, in order. Every request is recorded in `seen`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.seen: list[dict[str, Any]] = []
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.handler: Callable[[str, dict, dict], Answer] = lambda path, query, headers: (200, [], {})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                headers = dict(self.headers)
                outer.seen.append({"path": parts.path, "query": query, "headers": headers})
                if outer.failures:
                    status, extra = outer.failures.pop(0)
                    body: Any = b'{"error": "try later"}'
                else:
                    status, body, extra = outer.handler(parts.path, query, headers)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                if isinstance(body, Iterator):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    for chunk in body:
                        self.wfile.write(chunk)
                    return
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that stops reading (size cap) is expected
                pass

        self.server = Server((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = Api()
    yield server
    server.stop()


def http_source(api: Api, path: str = "/i", retry: dict | None = None, **extra):
    return source_for({"kind": "http", "url": api.url + path, **extra}, retry)


def test_plain_list_and_items_expression(api):
    api.handler = lambda path, q, h: (200, {"data": {"interviews": ITEMS[:3]}}, {})
    result = http_source(api, items="data.interviews").fetch()
    assert result.items == ITEMS[:3] and result.complete and result.pages == 1
    assert len(api.seen) == 1 and api.seen[0]["query"] == {}
    api.handler = lambda path, q, h: (200, {"data": 5}, {})
    with pytest.raises(SourceError, match=r"/i page 1: source.items = 'data' gives a number, not a list"):
        http_source(api, items="data").fetch()
    api.handler = lambda path, q, h: (200, {"other": []}, {})
    with pytest.raises(SourceError, match=r"gives null, not a list \(if the source sends null"):
        http_source(api, items="data").fetch()
    assert http_source(api, items="data || `[]`").fetch().items == []
    api.handler = lambda path, q, h: (200, {"items": ITEMS[:2]}, {})
    with pytest.raises(SourceError, match="'@' gives an object, not a list"):
        http_source(api).fetch()


def test_page_pagination_keeps_the_configured_query(api):
    api.handler = lambda path, q, h: (200, ITEMS[(int(q["page"]) - 1) * 10 : int(q["page"]) * 10], {})
    result = http_source(api, "/i?active=1&page_size=999", pagination={"style": "page", "size": 10}).fetch()
    assert result.items == ITEMS and result.pages == 3 and result.complete
    assert [s["query"] for s in api.seen] == [{"active": "1", "page": str(p), "page_size": "10"} for p in (1, 2, 3)]


def test_page_pagination_stops_on_an_empty_page(api):
    api.handler = lambda path, q, h: (200, ITEMS[:20][(int(q["p"]) - 1) * 10 : int(q["p"]) * 10], {})
    result = http_source(api, pagination={"style": "page", "size": 10, "page_param": "p", "size_param": "n"}).fetch()
    assert result.items == ITEMS[:20] and result.pages == 3
    assert [s["query"] for s in api.seen] == [{"p": str(p), "n": "10"} for p in (1, 2, 3)]


def test_offset_pagination(api):
    api.handler = lambda path, q, h: (200, ITEMS[int(q["offset"]) : int(q["offset"]) + int(q["limit"])], {})
    result = http_source(api, pagination={"style": "offset", "size": 5, "size_param": "limit"}).fetch()
    assert result.items == ITEMS and result.pages == 6
    assert [s["query"] for s in api.seen] == [{"offset": str(o), "limit": "5"} for o in (0, 5, 10, 15, 20, 25)]
    api.seen.clear()
    api.handler = lambda path, q, h: (200, ITEMS[int(q["skip"]) : int(q["skip"]) + int(q["limit"])], {})
    result = http_source(api, pagination={"style": "offset", "size": 10, "size_param": "limit", "offset_param": "skip"}).fetch()
    assert result.items == ITEMS and [s["query"] for s in api.seen] == [{"skip": str(o), "limit": "10"} for o in (0, 10, 20)]


def test_link_header_pagination_with_relative_urls(api):
    def handler(path, q, h):
        page = int(q.get("p", 1))
        links = [f'</i?p={page + 1}&k=v>; rel="next"'] if page == 1 else [f'<i?p={page + 1}>; rel="next"'] if page == 2 else []
        links.append('</i?p=1>; rel="first"')
        return 200, ITEMS[(page - 1) * 10 : page * 10], {"Link": ", ".join(links)}

    api.handler = handler
    result = http_source(api, "/i", pagination={"style": "link_header"}).fetch()
    assert result.items == ITEMS and result.pages == 3
    assert [(s["path"], s["query"]) for s in api.seen] == [("/i", {}), ("/i", {"p": "2", "k": "v"}), ("/i", {"p": "3"})]


def test_next_field_pagination_absolute_and_relative(api):
    def handler(path, q, h):
        page = int(q.get("p", 1))
        following = {1: f"{api.url}/i?p=2", 2: "?p=3", 3: None}[page]
        return 200, {"results": ITEMS[(page - 1) * 10 : page * 10], "links": {"next": following}}, {}

    api.handler = handler
    result = http_source(api, items="results", pagination={"style": "next_field", "next": "links.next"}).fetch()
    assert result.items == ITEMS and result.pages == 3
    assert [s["query"] for s in api.seen] == [{}, {"p": "2"}, {"p": "3"}]
    api.handler = lambda path, q, h: (200, {"results": [], "links": {"next": 7}}, {})
    with pytest.raises(SourceError, match="source.pagination.next = 'links.next' gives a number, not a URL"):
        http_source(api, items="results", pagination={"style": "next_field", "next": "links.next"}).fetch()
    with pytest.raises(SourceError, match="needs source.pagination.next"):
        http_source(api, items="results", pagination={"style": "next_field"}).fetch()


def test_loop_guards(api):
    # a next link back to the first page
    api.handler = lambda path, q, h: (200, {"results": [{"id": 1}], "next": "/i?p=1"}, {})
    with pytest.raises(SourceError, match="page 2 repeats an earlier page's URL; stopping \\(a pagination loop\\)"):
        http_source(api, "/i?p=1", items="results", pagination={"style": "next_field", "next": "next"}).fetch()
    # a Link header that always points at itself
    api.handler = lambda path, q, h: (200, [{"id": 1}], {"Link": '</i>; rel="next"'})
    with pytest.raises(SourceError, match="pagination loop"):
        http_source(api, pagination={"style": "link_header"}).fetch()
    # an endless chain of new URLs stops at max_pages
    api.seen.clear()
    api.handler = lambda path, q, h: (200, [{"id": q.get("p")}], {"Link": f'</i?p={int(q.get("p", 0)) + 1}>; rel="next"'})
    with pytest.raises(SourceError, match="more than source.pagination.max_pages = 4 pages"):
        http_source(api, pagination={"style": "link_header", "max_pages": 4}).fetch()
    assert len(api.seen) == 4
    # a server that ignores the page parameter and sends the same full page forever
    api.seen.clear()
    api.handler = lambda path, q, h: (200, ITEMS[:5], {})
    with pytest.raises(SourceError, match="page 2 is the same as page 1; the source seems to ignore source.pagination.page_param = 'page'"):
        http_source(api, pagination={"style": "page", "size": 5}).fetch()
    assert len(api.seen) == 2


def test_a_next_page_on_another_host_gets_no_credentials(api):
    api.handler = lambda path, q, h: (200, [{"id": 1}], {"Link": '<https://elsewhere.example/i?p=2>; rel="next"'})
    with pytest.raises(SourceError, match="next page is on another host or scheme \\(https://elsewhere.example/i\\)") as raised:
        http_source(api, auth=AUTH["bearer"], pagination={"style": "link_header"}).fetch()
    assert SECRETS["bearer"] not in error_text(raised.value)


def test_a_redirect_to_another_host_drops_every_credential(api):
    other = Api(host="localhost")  # another host name for the same machine
    try:
        other.handler = lambda path, q, h: (200, ITEMS[:2], {})
        api.handler = lambda path, q, h: (302, b"", {"Location": other.url + "/moved"})
        for kind in ("bearer", "header"):
            assert http_source(api, auth=AUTH[kind], headers={"X-Tenant": "t-SECRET-9"}).fetch().items == ITEMS[:2]
        for seen in other.seen:
            assert not any(secret in json.dumps(seen["headers"]) for secret in (*SECRETS.values(), "t-SECRET-9"))
        assert api.seen[0]["headers"]["X-Tenant"] == "t-SECRET-9"
    finally:
        other.stop()


@pytest.mark.parametrize("kind", ["bearer", "basic", "header"])
def test_auth_reaches_the_server_and_no_secret_reaches_an_error_or_a_log(api, kind, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    api.handler = lambda path, q, h: (200, ITEMS[:1], {})
    source = http_source(api, auth=AUTH[kind], headers={"X-Client": "connector"})
    assert source.fetch().items == ITEMS[:1]
    source.close()
    headers = api.seen[0]["headers"]
    assert headers["X-Client"] == "connector" and headers["Accept"] == "application/json"
    if kind == "bearer":
        assert headers["Authorization"] == f"Bearer {SECRETS['bearer']}"
    elif kind == "basic":
        assert headers["Authorization"] == "Basic " + base64.b64encode(f"user:{SECRETS['basic']}".encode()).decode()
    else:
        assert headers["X-Api-Key"] == SECRETS["header"]

    texts = []
    for status in (401, 403):
        api.handler = lambda path, q, h, status=status: (status, {"detail": "no", "echo": dict(h)}, {})
        with pytest.raises(SourceError, match=f"/i page 1: HTTP {status}, the source refused the credentials") as raised:
            http_source(api, auth=AUTH[kind]).fetch()
        texts.append(error_text(raised.value))
    api.handler = lambda path, q, h: (200, b"<html>" + json.dumps(dict(h)).encode(), {"Content-Type": "text/html"})
    with pytest.raises(SourceError, match="not JSON") as raised:
        http_source(api, auth=AUTH[kind]).fetch()
    texts.append(error_text(raised.value))
    api.failures = [(503, {})] * 3
    with pytest.raises(SourceError, match="HTTP 503") as raised:
        http_source(api, auth=AUTH[kind]).fetch()
    texts.append(error_text(raised.value))
    with pytest.raises(SourceError, match="could not connect") as raised:
        source_for({"kind": "http", "url": "http://127.0.0.1:9/i", "auth": AUTH[kind]}, {"attempts": 2}).fetch()
    texts.append(error_text(raised.value))

    assert any(r.name == "connector.sources" and r.getMessage().endswith("page 1: 1 item(s)") for r in caplog.records)
    for text in [*texts, *(r.getMessage() for r in caplog.records), caplog.text]:
        assert SECRETS[kind] not in text


def test_a_credential_in_the_url_is_not_shown(api):
    api.handler = lambda path, q, h: (404, {}, {})
    host = api.url.removeprefix("http://")
    with pytest.raises(SourceError) as raised:
        source_for({"kind": "http", "url": f"http://user:{SECRETS['basic']}@{host}/i?token={SECRETS['bearer']}"}).fetch()
    assert str(raised.value) == f"source http://{host}/i page 1: HTTP 404"
    assert SECRETS["basic"] not in error_text(raised.value) and SECRETS["bearer"] not in error_text(raised.value)


def test_one_debug_line_per_page_without_headers(api, caplog):
    caplog.set_level(logging.DEBUG, logger="connector.sources")
    api.handler = lambda path, q, h: (200, ITEMS[(int(q["page"]) - 1) * 10 : int(q["page"]) * 10], {})
    http_source(api, "/i?secret=q", auth=AUTH["bearer"], pagination={"style": "page", "size": 10}).fetch()
    lines = [r.getMessage() for r in caplog.records if r.name == "connector.sources"]
    assert lines == [f"source {api.url}/i page {p}: {n} item(s)" for p, n in ((1, 10), (2, 10), (3, 5))]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "connector.sources")


def test_transient_errors_are_retried_then_succeed(api, caplog):
    caplog.set_level(logging.INFO, logger="connector.sources")
    api.handler = lambda path, q, h: (200, ITEMS[:2], {})
    api.failures = [(503, {"Retry-After": "0"}), (500, {}), (429, {})]
    result = http_source(api, retry={"attempts": 4}).fetch()
    assert result.items == ITEMS[:2] and len(api.seen) == 4
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3 and retries[0] == f"source {api.url}/i page 1: HTTP 503; retrying in 0.0 s (attempt 1 of 4)"
    for status in (502, 504):
        api.failures = [(status, {})]
        assert http_source(api).fetch().items == ITEMS[:2]


def test_retry_after_is_honoured_up_to_its_cap(api):
    api.handler = lambda path, q, h: (200, ITEMS[:1], {})
    api.failures = [(503, {"Retry-After": "0.3"})]
    started = time.monotonic()
    http_source(api, retry={"retry_after_max_seconds": 1}).fetch()
    assert time.monotonic() - started >= 0.3
    api.failures = [(429, {"Retry-After": "120"})]
    started = time.monotonic()
    http_source(api, retry={"retry_after_max_seconds": 0.05}).fetch()
    assert time.monotonic() - started < 2


def test_persistent_failures_and_other_client_errors(api):
    api.failures = [(500, {})] * 3
    with pytest.raises(SourceError, match=r"/i page 1: HTTP 500 \(after 3 attempts\)"):
        http_source(api).fetch()
    assert len(api.seen) == 3
    api.seen.clear()
    api.handler = lambda path, q, h: (404, {"detail": "not here"}, {})
    with pytest.raises(SourceError, match="/i page 1: HTTP 404$"):
        http_source(api).fetch()
    assert len(api.seen) == 1  # not retried


def test_a_slow_server_times_out_and_is_retried(api):
    def slow(path, q, h):
        time.sleep(0.5)
        return 200, [], {}

    api.handler = slow
    with pytest.raises(SourceError, match=r"no answer within 0.1 s \(after 2 attempts\)"):
        http_source(api, retry={"attempts": 2}, timeout_seconds=0.1).fetch()
    assert len(api.seen) == 2


def test_a_trickling_page_times_out_in_total_and_is_retried(api):
    """One byte every 0.1 s never trips a per-read timeout; source.timeout_seconds bounds the page."""

    def trickling(path, q, h):
        def body():
            for byte in json.dumps(ITEMS[:3]).encode():  # 33 bytes: about 3.3 s
                time.sleep(0.1)
                yield bytes([byte])

        return 200, body(), {}

    api.handler = trickling
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"/i page 1: no answer within 0.5 s \(after 2 attempts\)"):
        http_source(api, retry={"attempts": 2}, timeout_seconds=0.5).fetch()
    assert time.monotonic() - started < 2.5
    assert len(api.seen) == 2


def test_unreachable_source_and_bad_url():
    with pytest.raises(SourceError, match=r"source http://127.0.0.1:9/i page 1: could not connect \(after 3 attempts\)"):
        source_for({"kind": "http", "url": "http://127.0.0.1:9/i"}).fetch()
    with pytest.raises(SourceError, match="is not an http\\(s\\) URL"):
        source_for({"kind": "http", "url": "ftp://partner.example/i"}).fetch()


def test_a_page_that_is_not_json_names_the_page_and_the_url(api):
    def handler(path, q, h):
        if q["page"] == "2":
            return 200, b"<html>Please log in</html>", {"Content-Type": "text/html; charset=utf-8"}
        return 200, ITEMS[:10], {}

    api.handler = handler
    with pytest.raises(SourceError) as raised:
        http_source(api, "/i?tenant=acme", pagination={"style": "page", "size": 10}).fetch()
    assert str(raised.value) == f"source {api.url}/i page 2: the body is not JSON (Expecting value at line 1 column 1, Content-Type text/html)"


def test_size_cap_with_and_without_content_length(api):
    big = json.dumps([{"id": i, "title": "x" * 100} for i in range(200)]).encode()
    api.handler = lambda path, q, h: (200, big, {})
    with pytest.raises(SourceError, match=f"/i page 1: response of {len(big)} bytes is larger than source.max_bytes = 10000 bytes"):
        http_source(api, max_bytes=10_000).fetch()
    assert len(http_source(api, max_bytes=len(big)).fetch().items) == 200  # exactly at the cap is fine

    # 50 MB streamed without a Content-Length: reading stops at the cap, memory stays near it
    chunk = b" " * (1 << 20)
    api.handler = lambda path, q, h: (200, iter([b"["] + [chunk] * 50 + [b"]"]), {})
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match=r"/i page 1: response larger than source.max_bytes = 2000000 bytes; stopped reading"):
            http_source(api, max_bytes=2_000_000).fetch()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"peak {peak} bytes"


def test_since_param_makes_an_incremental_fetch(api):
    api.handler = lambda path, q, h: (200, ITEMS[:1], {})
    source = http_source(api, "/i?x=1", since_param="updated_since")
    assert source.fetch(since=None).complete and api.seen[-1]["query"] == {"x": "1"}
    result = source.fetch(since="2026-01-01T00:00:00+00:00")
    assert not result.complete and api.seen[-1]["query"] == {"x": "1", "updated_since": "2026-01-01T00:00:00+00:00"}
    # without since_param the cursor is ignored and the fetch is complete
    result = http_source(api).fetch(since="2026-01-01T00:00:00+00:00")
    assert result.complete and api.seen[-1]["query"] == {}


def test_since_param_with_pagination(api):
    api.handler = lambda path, q, h: (200, ITEMS[(int(q["page"]) - 1) * 10 : int(q["page"]) * 10], {})
    result = http_source(api, since_param="since", pagination={"style": "page", "size": 10}).fetch(since="2026-01-01T00:00:00Z")
    assert not result.complete and result.items == ITEMS
    assert all(s["query"]["since"] == "2026-01-01T00:00:00Z" for s in api.seen)  # every page: page 2 is of the same query
    api.seen.clear()

    def linked(path, q, h):
        page = int(q.get("p", 1))
        return 200, ITEMS[(page - 1) * 10 : page * 10], {"Link": f'</i?p={page + 1}&since=s>; rel="next"'} if page < 3 else {}

    api.handler = linked
    result = http_source(api, since_param="since", pagination={"style": "link_header"}).fetch(since="s")
    assert not result.complete and result.items == ITEMS
    assert [s["query"] for s in api.seen] == [{"since": "s"}, {"p": "2", "since": "s"}, {"p": "3", "since": "s"}]


# -- broken records keep the id the partner knows ------------------------------------------------


def _mapped(items, **mapping):
    from connector.config import MappingConfig
    from connector.mapping import Mapper

    return Mapper(MappingConfig(duration_minutes="minutes", end=None, **mapping)).map_all(items)


def test_ndjson_line_that_is_not_json_is_recorded_under_its_readable_id(tmp_path):
    path = tmp_path / "i.ndjson"
    lines = [
        '{"id": "INT-1", "title": "cut off',  # truncated: the id before the cut is still readable
        '{"id": 12, "title": "x",}',  # a trailing comma; a numeric id
        '{"organizer": {"id": 5}, "title": "top-level id lost", "id": "INT-9',  # only a nested id is complete
        '{"id": "A", "title": "t", "id": "B",',  # the key twice at the top: which one is meant cannot be told
        '{"title": "no id at all"',
        '{"key": "INT-7", "title": "other mapping" ',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = file_source(path).fetch().items
    assert all(isinstance(i, BrokenItem) for i in items) and len(items) == 6
    fetched = _mapped(items)
    assert [i.label for i in fetched.invalid] == ["INT-1", "12", "<item #2>", "<item #3>", "<item #4>", "<item #5>"]
    assert fetched.invalid[0].message.startswith("item: line 1: not valid JSON: ")
    assert fetched.unidentified == 4
    # the mapping's remote_id expression decides the key, and only a plain top-level key is used
    assert [i.label for i in _mapped(items, remote_id="key").invalid][5] == "INT-7"
    assert _mapped(items, remote_id="meta.id").unidentified == 6
    assert _mapped(items, remote_id="id || key").unidentified == 6


def test_csv_row_with_the_wrong_number_of_fields_is_recorded_under_its_id(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text(
        "id,title,location\n"
        "R1,Title, with an unquoted comma,Room 1\n"  # too many fields: the first column still holds the id
        "R2,too few\n"
        " ,blank id,Room,extra\n",
        encoding="utf-8",
    )
    items = file_source(path).fetch().items
    assert [type(i) for i in items] == [BrokenItem] * 3
    fetched = _mapped(items)
    assert [i.label for i in fetched.invalid] == ["R1", "R2", "<item #2>"]
    assert fetched.invalid[0].message == "item: row 2: 4 fields where the header has 3"


def test_csv_id_column_after_the_first_is_used_only_when_its_place_is_certain(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text(
        "title,id,location\n"
        "T1,R1,Room 1,extra\n"  # the extra field after the id: read from the left R1, from the right "Room 1"
        "T2,R2\n"  # one field missing, which one cannot be told
        "R3,R3,R3,R3\n",  # both readings agree
        encoding="utf-8",
    )
    fetched = _mapped(file_source(path).fetch().items)
    assert [i.label for i in fetched.invalid] == ["<item #0>", "<item #1>", "R3"]


def test_a_broken_row_with_a_readable_id_is_held_like_an_invalid_item_of_that_id(harness):
    """The failure is filed under the partner's id, the mapped event is left alone (no update, no
    delete), and a complete fetch can still delete what is truly absent."""
    from conftest import item as raw_item

    path = harness.folder / "interviews.ndjson"
    harness.data["source"] = {"kind": "file", "path": str(path), "format": "ndjson"}
    harness.data["sync"]["max_delete_fraction"] = 1
    path.write_text("\n".join(json.dumps(raw_item(i)) for i in ("A", "B", "C")) + "\n")
    harness.sync()
    assert len(harness.jobylon_events()) == 3
    harness.reset_engine()
    path.write_text(json.dumps(raw_item("A")) + "\n" + '{"id": "B", "title": "broken\n')
    result = harness.sync()
    failures = {f.remote_id: f for f in harness.store.failures()}
    assert list(failures) == ["B"] and "line 2: not valid JSON" in failures["B"].message
    assert result.counts["deleted"] == 1  # C is absent from a complete fetch; B is present, if broken
    assert sorted(e["title"] for e in harness.jobylon_events()) == ["Interview A", "Interview B"]
