"""The `[source]` kinds (file, http, sql, python) with their auth and pagination, and the lookup tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from connector.config.values import (
    _HEADER_NAME,
    _HEADER_NAME_RULE,
    Section,
    _basic_credential,
    _check_jmespath,
    _check_since_format,
    _header_name,
    _header_value,
    _stripped,
    _usable_path,
    log,
)


class BearerAuth(Section):
    type: Literal["bearer"]
    token: SecretStr

    @field_validator("token", mode="before")
    @classmethod
    def _header_safe(cls, value: Any) -> Any:
        return _header_value(value, "source.auth.token", required=True)


class BasicAuth(Section):
    type: Literal["basic"]
    username: str
    password: SecretStr

    @field_validator("username", "password", mode="before")
    @classmethod
    def _basic_credential(cls, value: Any, info: ValidationInfo) -> Any:
        return _basic_credential(value, f"source.auth.{info.field_name}")


class HeaderAuth(Section):
    type: Literal["header"]
    name: str
    value: SecretStr

    @field_validator("name", mode="before")
    @classmethod
    def _header_name(cls, value: Any) -> Any:
        return _header_name(value, "source.auth.name", required=True)

    @field_validator("value", mode="before")
    @classmethod
    def _header_safe(cls, value: Any) -> Any:
        return _header_value(value, "source.auth.value", required=True)


SourceAuth = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]


class PaginationConfig(Section):
    style: Literal["none", "page", "offset", "link_header", "next_field", "cursor"] = "none"
    page_param: str = "page"
    size_param: str = "page_size"
    size: int = Field(100, ge=1)
    offset_param: str = "offset"
    next: str | None = None  # next_field: JMESPath to the next page's URL; cursor: to the next page's cursor
    cursor_param: str = "cursor"  # cursor: the query parameter that carries it
    max_pages: int = Field(10_000, ge=1)

    @field_validator("next")
    @classmethod
    def _next_expression(cls, value: str | None) -> str | None:
        return _check_jmespath(value)


class FileSourceConfig(Section):
    kind: Literal["file"]
    path: Path
    format: Literal["json", "ndjson", "csv"] | None = None
    max_bytes: int = Field(200_000_000, ge=1)

    @field_validator("path", mode="before")
    @classmethod
    def _usable_path(cls, value: Any) -> Any:
        return _usable_path(value)

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        suffix = self.path.suffix.lower().lstrip(".")
        return {"jsonl": "ndjson", "ndjson": "ndjson", "csv": "csv"}.get(suffix, "json")

    @property
    def incremental_capable(self) -> bool:
        return False  # a file is read whole every time


class HttpSourceConfig(Section):
    kind: Literal["http"]
    url: str
    headers: dict[str, str] = {}
    auth: SourceAuth | None = None
    items: str = "@"
    timeout_seconds: float = Field(30, gt=0)
    pagination: PaginationConfig = PaginationConfig()
    params: dict[str, str | int | bool] = {}  # query parameters of every request (next-page links carry them on)
    since_param: str | None = None
    since_format: str | None = None  # strftime pattern (UTC) of the cursor; None: ISO 8601 as stored
    since_overlap_seconds: float = Field(300, ge=0)
    max_bytes: int = Field(50_000_000, ge=1)
    verify_tls: bool = True
    preset: Literal["greenhouse", "merge"] | None = None  # set by the preset that filled these keys

    @property
    def incremental_capable(self) -> bool:
        return self.since_param is not None

    @field_validator("items")
    @classmethod
    def _items_expression(cls, value: str) -> str:
        return _check_jmespath(value) or "@"

    @field_validator("since_format")
    @classmethod
    def _since_format(cls, value: str | None) -> str | None:
        return _check_since_format(value)

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        if any(not name.strip() for name in value):
            raise ValueError("a query parameter needs a name")
        return value

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, value: dict[str, str]) -> dict[str, str]:
        """Names must be HTTP tokens; values go through the same check as the credentials (they often
        hold an API key, so they are never shown either)."""
        cleaned = {}
        for raw_name, raw_value in value.items():
            name = raw_name.strip()
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{raw_name!a} is not a valid HTTP header name ({_HEADER_NAME_RULE})")
            key = f"source.headers.{name}"
            if name != raw_name:
                log.warning("%s: surrounding whitespace removed from the header name", key)
            try:
                cleaned[name] = _header_value(raw_value, key, required=False)
            except ValueError as exc:
                raise PydanticCustomError("config_problem", "{problem}", {"key": name, "problem": str(exc)}) from None
        return cleaned


_SQL_URL = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*(\+[A-Za-z0-9_.]+)?://")
# A plugin's own options: a value under a key named like a credential is a secret (masked wherever it
# could be echoed): token, password, passwd, secret, api_key, access_key, private_key, secret_key (with or
# without the underscore), or a name ending in "_" and one of them (client_secret, refresh_token). Not any
# "_key": a sort_key's value would then be masked in every log line and stored request that holds it.
SECRET_OPTION = re.compile(r"^(?:.*_)?(?:token|password|passwd|secret|api_?key|access_?key|private_?key|secret_?key)$", re.IGNORECASE)


def secret_options(options: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(path, value) of every string under a secret-looking key of `options`, nested tables and lists included."""
    found: list[tuple[tuple[str, ...], str]] = []
    if isinstance(options, dict):
        for key, value in options.items():
            here = (*path, str(key))
            if isinstance(value, str) and SECRET_OPTION.match(str(key)):
                found.append((here, value))
            else:
                found += secret_options(value, here)
    elif isinstance(options, list):
        for index, value in enumerate(options):
            found += secret_options(value, (*path, str(index)))
    return found


_PLUGIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class SqlSourceConfig(Section):
    """A query over the partner's database (any SQLAlchemy URL; the driver is the user's to install).
    `{since}` in the query is bound as a parameter: the cursor minus the overlap, or NULL for a
    complete fetch. The password may sit in the URL or, better, in `password` (from the environment)."""

    kind: Literal["sql"]
    url: str
    password: SecretStr | None = None
    query: str
    json_columns: list[str] = []  # text columns holding JSON (SQLite, MySQL TEXT): decoded for the mapping
    batch_size: int = Field(1000, ge=1)  # rows fetched from the server at a time
    since_overlap_seconds: float = Field(300, ge=0)
    timeout_seconds: float = Field(300, gt=0)  # the query (and its rows) take at most this long, else it is cancelled

    @property
    def incremental_capable(self) -> bool:
        return SINCE_PLACEHOLDER in self.query

    @field_validator("url")
    @classmethod
    def _sql_url(cls, value: str) -> str:
        if not _SQL_URL.match(value.strip()):
            # never echoes the value: it may hold a password
            raise ValueError("expected an SQLAlchemy database URL such as postgresql+psycopg://user@host/db or sqlite:///interviews.db (got something else)")
        return value.strip()

    @field_validator("query")
    @classmethod
    def _sql_query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Any:
        return _stripped(value, "source.password")


class PythonSourceConfig(Section):
    """`callable = "package.module:function"`, called as function(config, cursor) -> iterable of dicts.
    `cursor` is None for a complete fetch; `options` is the plugin's own table."""

    kind: Literal["python"]
    callable: str
    options: dict[str, Any] = {}  # values under credential-like keys are secrets (SECRET_OPTION)
    incremental: bool = True  # the function honours the cursor (false: it is always called with None)
    since_overlap_seconds: float = Field(300, ge=0)

    @property
    def incremental_capable(self) -> bool:
        return self.incremental

    @field_validator("callable")
    @classmethod
    def _plugin(cls, value: str) -> str:
        value = value.strip()
        if not _PLUGIN.match(value):
            raise ValueError("expected 'package.module:function' (a module path, a colon, a function name)")
        return value


SINCE_PLACEHOLDER = "{since}"

SourceConfig = Annotated[FileSourceConfig | HttpSourceConfig | SqlSourceConfig | PythonSourceConfig, Field(discriminator="kind")]


class CsvLookupConfig(Section):
    """A key -> value table from a CSV file with a header row: `key` and `value` name its columns
    (default: the first and the second)."""

    kind: Literal["csv"]
    path: Path
    key: str | None = None
    value: str | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _usable_path(cls, value: Any) -> Any:
        return _usable_path(value)


class SqlLookupConfig(Section):
    """A key -> value table from a query's first two columns. Without `url`, the sql source's database."""

    kind: Literal["sql"]
    url: str | None = None
    password: SecretStr | None = None
    query: str
    timeout_seconds: float = Field(60, gt=0)

    @field_validator("url")
    @classmethod
    def _sql_url(cls, value: str | None) -> str | None:
        return None if value is None else SqlSourceConfig._sql_url(value)

    @field_validator("query")
    @classmethod
    def _sql_query(cls, value: str) -> str:
        return SqlSourceConfig._sql_query(value)


LookupConfig = Annotated[CsvLookupConfig | SqlLookupConfig, Field(discriminator="kind")]
_LOOKUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
