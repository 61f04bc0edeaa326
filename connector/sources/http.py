"""The `http` source: a JSON REST endpoint with auth, pagination, a size cap and retries.

Error messages name the URL without its query string and never carry a credential.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import jmespath
import requests
from requests.auth import HTTPBasicAuth

from connector.config import BasicAuth, BearerAuth, HeaderAuth, HttpSourceConfig, RetryConfig
from connector.errors import SourceError
from connector.retry import call_with_retries, parse_retry_after
from connector.sources import FetchResult

log = logging.getLogger("connector.sources")
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
CHUNK = 64 * 1024


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _public(url: str) -> str:
    """The URL as it may be shown: no query string, no user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _with_params(url: str, params: dict[str, Any]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class HttpSource:
    kind = "http"

    def __init__(self, config: HttpSourceConfig, retry: RetryConfig) -> None:
        self.config = config
        self.retry = retry
        self.items_expression = jmespath.compile(config.items)
        self.next_expression = jmespath.compile(config.pagination.next) if config.pagination.next else None
        self.session = requests.Session()
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

    def fetch(self, since: str | None = None) -> FetchResult:
        pagination = self.config.pagination
        incremental = since is not None and self.config.since_param is not None
        first_params: dict[str, Any] = {self.config.since_param: since} if incremental and self.config.since_param else {}
        items: list[Any] = []
        page = 0
        seen_urls: set[str] = set()
        url: str | None = self.config.url
        while url is not None:
            page += 1
            if page > pagination.max_pages:
                raise SourceError(f"source {_public(self.config.url)}: more than source.pagination.max_pages = {pagination.max_pages} pages; stopping")
            params = dict(first_params)
            if pagination.style == "page":
                params.update({pagination.page_param: page, pagination.size_param: pagination.size})
            elif pagination.style == "offset":
                params.update({pagination.offset_param: (page - 1) * pagination.size, pagination.size_param: pagination.size})
            request_url = _with_params(url, params) if params else url
            if request_url in seen_urls:
                raise SourceError(f"source {_public(request_url)}: page {page} repeats an earlier page's URL; stopping (a pagination loop)")
            seen_urls.add(request_url)
            response, body = self._get_json(request_url, page)
            page_items = self._items(body, request_url, page)
            items.extend(page_items)
            log.debug("source page %d: %d item(s)", page, len(page_items))
            url = self._next_url(pagination.style, request_url, response, body, len(page_items))
            if pagination.style in ("link_header", "next_field"):
                first_params = {}
        return FetchResult(items=items, complete=not incremental, pages=page)

    def _next_url(self, style: str, current: str, response: requests.Response, body: Any, count: int) -> str | None:
        size = self.config.pagination.size
        if style in ("page", "offset"):
            return self.config.url if count >= size and count > 0 else None
        if style == "link_header":
            link = response.links.get("next", {}).get("url")
            return urljoin(current, link) if link else None
        if style == "next_field" and self.next_expression is not None:
            link = self.next_expression.search(body)
            return urljoin(current, link) if isinstance(link, str) and link else None
        return None

    def _items(self, body: Any, url: str, page: int) -> list[Any]:
        found = self.items_expression.search(body)
        if found is None and self.config.items != "@":
            found = []
        if not isinstance(found, list):
            raise SourceError(f"source {_public(url)} page {page}: source.items = {self.config.items!r} gives {type(found).__name__}, not a list")
        return found

    def _get_json(self, url: str, page: int) -> tuple[requests.Response, Any]:
        def attempt() -> tuple[requests.Response, Any]:
            return self._get_once(url, page)

        try:
            return call_with_retries(attempt, self.retry, retryable=lambda exc: isinstance(exc, _Transient))
        except _Transient as exc:
            raise SourceError(f"source {_public(url)} page {page}: {exc} (after {self.retry.attempts} attempts)") from None

    def _get_once(self, url: str, page: int) -> tuple[requests.Response, Any]:
        where = f"source {_public(url)} page {page}"
        try:
            response = self.session.get(url, timeout=self.config.timeout_seconds, stream=True)
        except requests.Timeout:
            raise _Transient(f"no answer within {self.config.timeout_seconds:g} s") from None
        except requests.ConnectionError:
            raise _Transient("could not connect") from None
        except requests.RequestException as exc:
            raise SourceError(f"{where}: request failed ({type(exc).__name__})") from None
        with response:
            status = response.status_code
            if status in TRANSIENT_STATUSES:
                raise _Transient(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
            if status in (401, 403):
                raise SourceError(f"{where}: HTTP {status}, the source refused the credentials (check source.auth)")
            if status >= 400:
                raise SourceError(f"{where}: HTTP {status}")
            raw = self._read_capped(response, where)
        try:
            return response, json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise SourceError(f"{where}: the body is not JSON ({problem})") from None

    def _read_capped(self, response: requests.Response, where: str) -> bytes:
        cap = self.config.max_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise SourceError(f"{where}: response of {declared} bytes is larger than source.max_bytes = {cap}")
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(CHUNK):
                total += len(chunk)
                if total > cap:
                    raise SourceError(f"{where}: response larger than source.max_bytes = {cap} bytes; stopped reading")
                chunks.append(chunk)
        except requests.RequestException:
            raise _Transient("connection lost while reading the body") from None
        return b"".join(chunks)
