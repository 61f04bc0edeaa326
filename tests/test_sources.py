"""Source kinds against real files and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.config import load_settings
from connector.errors import SourceError
from connector.model import BrokenItem
from connector.sources import open_source

RETRY = {"attempts": 3, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, "retry_after_max_seconds": 0.05}
SECRETS = {"bearer": "tok-SECRET-bearer-1", "basic": "pw-SECRET-basic-2", "header": "val-SECRET-header-3"}


def source_for(source: dict, retry: dict | None = None):
    settings = load_settings(data={"jobylon": {"app_id": "a", "app_key": "k" * 8}, "source": source, "retry": retry or RETRY})
    return open_source(settings.source, settings.retry)


# -- file ------------------------------------------------------------------------------------


def test_json_file(tmp_path):
    path = tmp_path / "i.json"
    path.write_text(json.dumps([{"id": 1}, {"id": 2}]))
    result = source_for({"kind": "file", "path": str(path)}).fetch()
    assert result.items == [{"id": 1}, {"id": 2}] and result.complete


def test_json_file_must_be_a_list(tmp_path):
    path = tmp_path / "i.json"
    path.write_text('{"items": []}')
    with pytest.raises(SourceError, match="expected a JSON list of interviews, found dict"):
        source_for({"kind": "file", "path": str(path)}).fetch()
    path.write_text("[{")
    with pytest.raises(SourceError, match="not valid JSON"):
        source_for({"kind": "file", "path": str(path)}).fetch()


def test_ndjson_broken_line_is_an_item_of_its_own(tmp_path):
    path = tmp_path / "i.ndjson"
    path.write_text('{"id": 1}\n\n{"id": \n{"id": 3}\n')
    items = source_for({"kind": "file", "path": str(path)}).fetch().items
    assert items[0] == {"id": 1} and items[2] == {"id": 3}
    assert isinstance(items[1], BrokenItem) and items[1].position == "line 3"


def test_csv_broken_row_and_empty_cells(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text('id,title,location\n1,First,\n2,"Second, with comma",Room 1\n3,too,many,fields\n')
    items = source_for({"kind": "file", "path": str(path)}).fetch().items
    assert items[0] == {"id": "1", "title": "First", "location": None}
    assert items[1]["title"] == "Second, with comma"
    assert isinstance(items[2], BrokenItem) and items[2].position == "row 4" and "4 fields where the header has 3" in items[2].message


def test_file_size_cap_and_missing_file(tmp_path):
    path = tmp_path / "i.json"
    path.write_text(json.dumps([{"id": i} for i in range(100)]))
    with pytest.raises(SourceError, match="above source.max_bytes = 100"):
        source_for({"kind": "file", "path": str(path), "max_bytes": 100}).fetch()
    with pytest.raises(SourceError, match="not found"):
        source_for({"kind": "file", "path": str(tmp_path / "nope.json")}).fetch()


# -- http ------------------------------------------------------------------------------------


class Api:
    """A scripted JSON API: `pages` maps a request to a body; records what it saw."""

    def __init__(self):
        self.seen: list[dict] = []
        self.failures: list[tuple[int, dict]] = []  # answered before anything else, in order
        self.handler = lambda path, query: (200, [], {})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                outer.seen.append({"path": parts.path, "query": query, "headers": dict(self.headers)})
                if outer.failures:
                    status, headers = outer.failures.pop(0)
                    body = b"{}"
                else:
                    status, body, headers = outer.handler(parts.path, query)
                    body = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that stops reading (size cap) is expected
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api():
    server = Api()
    yield server
    server.server.shutdown()
    server.server.server_close()


ITEMS = [{"id": i} for i in range(25)]


def test_plain_list_and_items_expression(api):
    api.handler = lambda path, q: (200, {"data": {"interviews": ITEMS[:3]}}, {})
    result = source_for({"kind": "http", "url": api.url + "/i", "items": "data.interviews"}).fetch()
    assert result.items == ITEMS[:3] and result.complete and result.pages == 1
    api.handler = lambda path, q: (200, {"data": 5}, {})
    with pytest.raises(SourceError, match="gives int, not a list"):
        source_for({"kind": "http", "url": api.url + "/i", "items": "data"}).fetch()


def test_page_pagination(api):
    api.handler = lambda path, q: (200, ITEMS[(int(q["page"]) - 1) * 10 : int(q["page"]) * 10], {})
    result = source_for({"kind": "http", "url": api.url + "/i?active=1", "pagination": {"style": "page", "size": 10}}).fetch()
    assert result.items == ITEMS and result.pages == 3
    assert [s["query"] for s in api.seen] == [{"active": "1", "page": str(p), "page_size": "10"} for p in (1, 2, 3)]


def test_offset_pagination_stops_on_an_empty_page(api):
    api.handler = lambda path, q: (200, ITEMS[int(q["offset"]) : int(q["offset"]) + int(q["limit"])], {})
    source = source_for({"kind": "http", "url": api.url + "/i", "pagination": {"style": "offset", "size": 5, "size_param": "limit"}})
    result = source.fetch()
    assert result.items == ITEMS and [s["query"]["offset"] for s in api.seen] == ["0", "5", "10", "15", "20", "25"]


def test_link_header_pagination_with_relative_urls(api):
    def handler(path, q):
        page = int(q.get("p", 1))
        headers = {"Link": f'</i?p={page + 1}>; rel="next", </i?p=1>; rel="first"'} if page < 3 else {}
        return 200, ITEMS[(page - 1) * 10 : page * 10], headers

    api.handler = handler
    result = source_for({"kind": "http", "url": api.url + "/i", "pagination": {"style": "link_header"}}).fetch()
    assert result.items == ITEMS and result.pages == 3


def test_next_field_pagination_and_loop_guard(api):
    def handler(path, q):
        page = int(q.get("p", 1))
        return 200, {"results": ITEMS[(page - 1) * 10 : page * 10], "links": {"next": f"{api.url}/i?p={page + 1}" if page < 3 else None}}, {}

    api.handler = handler
    source = source_for({"kind": "http", "url": api.url + "/i", "items": "results", "pagination": {"style": "next_field", "next": "links.next"}})
    assert source.fetch().items == ITEMS
    api.handler = lambda path, q: (200, {"results": [], "links": {"next": "/i?p=1"}}, {})
    with pytest.raises(SourceError, match="pagination loop"):
        source_for({"kind": "http", "url": api.url + "/i?p=1", "items": "results", "pagination": {"style": "next_field", "next": "links.next"}}).fetch()


@pytest.mark.parametrize("kind", ["bearer", "basic", "header"])
def test_auth_reaches_the_server_and_never_an_error(api, kind, caplog):
    auth = {
        "bearer": {"type": "bearer", "token": SECRETS["bearer"]},
        "basic": {"type": "basic", "username": "user", "password": SECRETS["basic"]},
        "header": {"type": "header", "name": "X-Api-Key", "value": SECRETS["header"]},
    }[kind]
    api.handler = lambda path, q: (200, [], {})
    source_for({"kind": "http", "url": api.url + "/i", "auth": auth}).fetch()
    headers = api.seen[0]["headers"]
    if kind == "bearer":
        assert headers["Authorization"] == f"Bearer {SECRETS['bearer']}"
    elif kind == "basic":
        assert headers["Authorization"] == "Basic " + base64.b64encode(f"user:{SECRETS['basic']}".encode()).decode()
    else:
        assert headers["X-Api-Key"] == SECRETS["header"]
    caplog.set_level(logging.DEBUG)
    api.handler = lambda path, q: (401, {"detail": "no"}, {})
    with pytest.raises(SourceError) as raised:
        source_for({"kind": "http", "url": api.url + "/i", "auth": auth}).fetch()
    assert "refused the credentials" in str(raised.value)
    text = str(raised.value) + repr(raised.value) + caplog.text
    assert SECRETS[kind] not in text
    with pytest.raises(SourceError) as raised:  # a token in the URL's query is not shown either
        source_for({"kind": "http", "url": api.url + "/i?token=" + SECRETS[kind]}).fetch()
    assert SECRETS[kind] not in str(raised.value) and "/i" in str(raised.value)


def test_transient_errors_are_retried_then_fail_clearly(api):
    api.handler = lambda path, q: (200, ITEMS[:2], {})
    api.failures = [(503, {"Retry-After": "0"}), (500, {})]
    assert source_for({"kind": "http", "url": api.url + "/i"}).fetch().items == ITEMS[:2]
    assert len(api.seen) == 3
    api.failures = [(503, {})] * 3
    with pytest.raises(SourceError, match="HTTP 503 \\(after 3 attempts\\)"):
        source_for({"kind": "http", "url": api.url + "/i"}).fetch()


def test_not_json_and_size_cap(api):
    api.handler = lambda path, q: (200, b"<html>oops</html>", {})
    with pytest.raises(SourceError, match="page 1: the body is not JSON"):
        source_for({"kind": "http", "url": api.url + "/i"}).fetch()
    big = json.dumps([{"id": i, "title": "x" * 100} for i in range(2000)]).encode()
    api.handler = lambda path, q: (200, big, {})
    with pytest.raises(SourceError, match="larger than source.max_bytes = 10000"):
        source_for({"kind": "http", "url": api.url + "/i", "max_bytes": 10_000}).fetch()


def test_since_param_makes_an_incremental_fetch(api):
    api.handler = lambda path, q: (200, ITEMS[:1], {})
    source = source_for({"kind": "http", "url": api.url + "/i", "since_param": "updated_since"})
    assert source.fetch(since=None).complete
    result = source.fetch(since="2026-01-01T00:00:00+00:00")
    assert not result.complete and api.seen[-1]["query"] == {"updated_since": "2026-01-01T00:00:00+00:00"}


def test_unreachable_source_fails_with_a_clear_message():
    with pytest.raises(SourceError, match="could not connect"):
        source_for({"kind": "http", "url": "http://127.0.0.1:9/i"}).fetch()
