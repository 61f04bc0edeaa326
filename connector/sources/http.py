"""The `http` source: a JSON REST endpoint with auth, pagination, a size cap and retries.

One pooled `requests.Session` per source. Pagination styles: `none`, `page`, `offset`,
`link_header` (RFC 8288 `Link: <url>; rel="next"`), `next_field` (a JMESPath over the body giving
the next page's URL) and `cursor` (a JMESPath giving a cursor token, sent back as
`pagination.cursor_param` on the next request to the configured URL). `params` go on every request
built from the configured URL (the first, and each one for page/offset/cursor; a server's next-page
link carries them on); so does the cursor, written with `since_format` when one is set.
Every fetch is guarded against pagination loops: at most `max_pages` pages, no URL twice, and for
`page`/`offset` no two identical full pages in a row (a server that ignores the page parameter).

Transient failures (connection errors, timeouts, 408, 429, 500, 502, 503, 504) are retried with
exponential backoff and jitter, honouring `Retry-After`; anything else fails the fetch at once.
`timeout_seconds` bounds each page as a whole (connect, headers, body, redirects): a page trickling
in is a timeout like any other.

Error messages name the URL without its query string or user info and never carry a credential.
Credentials (the auth header and the configured headers) are never sent to another host: not on a
redirect (they are dropped) and not to a next-page link (the fetch stops with an error).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import jmespath
import jmespath.exceptions
import requests
from requests.auth import HTTPBasicAuth
from tenacity import RetryCallState

from connector import httpread
from connector.config import BasicAuth, BearerAuth, HeaderAuth, HttpSourceConfig, RetryConfig
from connector.errors import SourceError
from connector.httpread import public_url
from connector.retry import call_with_retries, parse_retry_after
from connector.sources import FetchResult, format_since, json_problem, json_type

log = logging.getLogger("connector.sources")

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_PORTS = {"http": 80, "https": 443}


class _Transient(Exception):
    """One attempt failed in a way worth repeating; `retry_after` is the server's wish, if it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def with_params(url: str, params: dict[str, Any]) -> str:
    """`url` with `params` added to its own query string (a parameter of the same name is replaced)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _query_value(value: str | int | bool) -> str | int:
    return ("true" if value else "false") if isinstance(value, bool) else value


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


class _Session(requests.Session):
    """A Session that, on a redirect to another host, drops the configured headers and a custom auth
    header too (requests itself drops only `Authorization`)."""

    def __init__(self, private_headers: list[str]) -> None:
        super().__init__()
        self._private_headers = private_headers
        adapter = httpread.DeadlineAdapter(max_retries=0)  # each page within source.timeout_seconds in total
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        if self.should_strip_auth(response.request.url or "", prepared_request.url or ""):
            for name in self._private_headers:
                prepared_request.headers.pop(name, None)
        super().rebuild_auth(prepared_request, response)


class HttpSource:
    kind = "http"

    def __init__(self, config: HttpSourceConfig, retry: RetryConfig) -> None:
        self.config = config
        self.retry = retry
        self.items_expression = jmespath.compile(config.items)
        self.next_expression = jmespath.compile(config.pagination.next) if config.pagination.next else None
        private = list(config.headers)
        if isinstance(config.auth, HeaderAuth):
            private.append(config.auth.name)
        self.session = _Session(private)
        self.session.verify = config.verify_tls
        self.session.headers.update({"Accept": "application/json", **config.headers})
        auth = config.auth
        if isinstance(auth, BearerAuth):
            self.session.headers["Authorization"] = f"Bearer {auth.token.get_secret_value()}"
        elif isinstance(auth, BasicAuth):
            self.session.auth = HTTPBasicAuth(auth.username, auth.password.get_secret_value())
        elif isinstance(auth, HeaderAuth):
            self.session.headers[auth.name] = auth.value.get_secret_value()

    def close(self) -> None:
        self.session.close()

    # -- one fetch ---------------------------------------------------------------------------

    def fetch(self, since: str | None = None) -> FetchResult:
        self._check_config()
        config, pagination = self.config, self.config.pagination
        style = pagination.style
        incremental = since is not None and config.since_param is not None
        since_params: dict[str, Any] = {config.since_param: format_since(since, config.since_format)} if since is not None and config.since_param else {}
        base_params: dict[str, Any] = {name: _query_value(value) for name, value in config.params.items()} | since_params
        cursor: str | None = None
        items: list[Any] = []
        seen: set[str] = set()
        previous_digest: str | None = None
        url = config.url
        page = 0
        while True:
            page += 1
            if page > pagination.max_pages:
                raise SourceError(f"source {public_url(config.url)}: more than source.pagination.max_pages = {pagination.max_pages} pages; stopping")
            # page/offset/cursor build every request from the configured URL, so the cursor goes on each;
            # link_header/next_field follow the server's links, which carry it on from the first.
            params: dict[str, Any] = dict(base_params) if page == 1 or style in ("page", "offset", "cursor") else {}
            if style == "page":
                params.update({pagination.page_param: page, pagination.size_param: pagination.size})
            elif style == "offset":
                params.update({pagination.offset_param: (page - 1) * pagination.size, pagination.size_param: pagination.size})
            elif style == "cursor" and cursor is not None:
                params[pagination.cursor_param] = cursor
            request_url = with_params(url, params) if params else url
            if request_url in seen:
                raise SourceError(f"source {public_url(request_url)}: page {page} repeats an earlier page's URL; stopping (a pagination loop)")
            seen.add(request_url)

            response, raw, body = self._get(request_url, page)
            page_items = self._items(body, request_url, page)
            items.extend(page_items)
            log.debug("source %s page %d: %d item(s)", public_url(request_url), page, len(page_items))

            if style in ("page", "offset"):
                if not page_items or len(page_items) < pagination.size:
                    break
                digest = hashlib.sha256(raw).hexdigest()
                if digest == previous_digest:
                    param = pagination.page_param if style == "page" else pagination.offset_param
                    raise SourceError(
                        f"source {public_url(request_url)}: page {page} is the same as page {page - 1}; the source seems to ignore "
                        f"source.pagination.{style}_param = {param!r}; stopping (a pagination loop)"
                    )
                previous_digest = digest
                url = config.url
            elif style == "cursor":
                cursor = self._next_cursor(request_url, body, page)
                if cursor is None:
                    break
                url = config.url
            else:
                next_url = self._next_url(style, request_url, response, body, page)
                if next_url is None:
                    break
                url = next_url
        return FetchResult(items=items, complete=not incremental, pages=page)

    def _check_config(self) -> None:
        parts = urlsplit(self.config.url)
        if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
            raise SourceError(f"source.url = {public_url(self.config.url)!r} is not an http(s) URL such as https://partner.example/api/interviews")
        if self.config.pagination.style == "next_field" and self.next_expression is None:
            raise SourceError("source.pagination.style = 'next_field' needs source.pagination.next, a JMESPath to the next page's URL")
        if self.config.pagination.style == "cursor" and self.next_expression is None:
            raise SourceError("source.pagination.style = 'cursor' needs source.pagination.next, a JMESPath to the next page's cursor")

    def _next_cursor(self, current: str, body: Any, page: int) -> str | None:
        where = f"source {public_url(current)} page {page}"
        assert self.next_expression is not None
        token = self._search(self.next_expression, body, where, "source.pagination.next")
        if token is None or token == "":
            return None
        if isinstance(token, bool) or not isinstance(token, str | int):
            raise SourceError(f"{where}: source.pagination.next = {self.config.pagination.next!r} gives {json_type(token)}, not a cursor")
        return str(token)

    def _next_url(self, style: str, current: str, response: requests.Response, body: Any, page: int) -> str | None:
        where = f"source {public_url(current)} page {page}"
        if style == "link_header":
            link = response.links.get("next", {}).get("url")
            if not link:
                return None
        elif style == "next_field" and self.next_expression is not None:
            link = self._search(self.next_expression, body, where, "source.pagination.next")
            if link is None or link == "":
                return None
            if not isinstance(link, str):
                raise SourceError(f"{where}: source.pagination.next = {self.config.pagination.next!r} gives {json_type(link)}, not a URL")
        else:
            return None
        resolved = urljoin(current, link.strip())
        if origin(resolved) != origin(self.config.url):
            raise SourceError(
                f"{where}: the next page is on another host or scheme ({public_url(resolved)}); "
                f"the source's credentials are only sent to {public_url(self.config.url)}"
            )
        return resolved

    def _items(self, body: Any, url: str, page: int) -> list[Any]:
        where = f"source {public_url(url)} page {page}"
        found = self._search(self.items_expression, body, where, "source.items")
        if not isinstance(found, list):
            hint = ""
            if found is None and self.config.items != "@":
                hint = f' (if the source sends null or nothing for "no items", write items = "{self.config.items} || `[]`")'
            raise SourceError(f"{where}: source.items = {self.config.items!r} gives {json_type(found)}, not a list{hint}")
        return found

    @staticmethod
    def _search(expression: Any, body: Any, where: str, key: str) -> Any:
        try:
            return expression.search(body)
        except jmespath.exceptions.JMESPathError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"{where}: {key} cannot be evaluated over the body ({first})") from None

    # -- one page, with retries --------------------------------------------------------------

    def _get(self, url: str, page: int) -> tuple[requests.Response, bytes, Any]:
        where = f"source {public_url(url)} page {page}"

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info("%s: %s; retrying in %.1f s (attempt %d of %d)", where, exc, wait, state.attempt_number, self.retry.attempts)

        try:
            return call_with_retries(
                lambda: self._get_once(url, where),
                self.retry,
                retryable=lambda exc: isinstance(exc, _Transient),
                before_sleep=before_sleep,
            )
        except _Transient as exc:
            attempts = f"{self.retry.attempts} attempts" if self.retry.attempts > 1 else "1 attempt"
            raise SourceError(f"{where}: {exc} (after {attempts})") from None

    def _get_once(self, url: str, where: str) -> tuple[requests.Response, bytes, Any]:
        timeout = self.config.timeout_seconds
        try:
            response, deadline = httpread.send(self.session, "GET", url, timeout)
        except requests.exceptions.SSLError:
            raise SourceError(
                f"{where}: the TLS handshake failed (an untrusted certificate, or not a TLS server); "
                "source.verify_tls = false skips the check, for testing only"
            ) from None
        except requests.Timeout:
            raise _Transient(f"no answer within {timeout:g} s") from None
        except requests.ConnectionError:
            raise _Transient("could not connect") from None
        except requests.TooManyRedirects:
            raise SourceError(f"{where}: too many redirects") from None
        except requests.RequestException as exc:
            # Never str(exc): requests puts the whole URL, query string included, in its messages.
            raise SourceError(f"{where}: the request failed ({type(exc).__name__})") from None
        with response:
            status = response.status_code
            if status in TRANSIENT_STATUSES:
                raise _Transient(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
            if status in (401, 403):
                raise SourceError(f"{where}: HTTP {status}, the source refused the credentials (check source.auth)")
            if not 200 <= status < 300:
                raise SourceError(f"{where}: HTTP {status}")
            raw = self._read_capped(response, deadline, where)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            hint = f", Content-Type {content_type}" if content_type and "json" not in content_type else ""
            raise SourceError(f"{where}: the body is not JSON ({json_problem(exc)}{hint})") from None
        return response, raw, body

    def _read_capped(self, response: requests.Response, deadline: float, where: str) -> bytes:
        """The body, read in chunks; past `max_bytes` reading stops: memory stays bounded by the cap."""
        cap = self.config.max_bytes
        try:
            return httpread.read_body(response, deadline, cap)
        except httpread.BodyTooLarge as exc:
            if exc.declared is not None:
                raise SourceError(f"{where}: response of {exc.declared} bytes is larger than source.max_bytes = {cap} bytes") from None
            raise SourceError(f"{where}: response larger than source.max_bytes = {cap} bytes; stopped reading") from None
        except httpread.BodyTimeout:
            raise _Transient(f"no answer within {self.config.timeout_seconds:g} s") from None
        except httpread.BodyBroken:
            raise _Transient("the connection broke while reading the body") from None
