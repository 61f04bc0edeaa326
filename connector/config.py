"""The connector's configuration: a TOML file plus `CONNECTOR_<SECTION>__<KEY>` environment overrides.

Every section forbids unknown keys, so a typo is an error that names the key instead of a silently
ignored setting. Secrets are `SecretStr`: they print as `**********` everywhere.

Whatever the file or the environment holds, loading either succeeds or raises ConfigError naming the
file (and the byte, line or key): the file must be a regular file of at most 1 MiB in UTF-8; values that
go into HTTP headers are checked here, not at the first request; relative paths are resolved against
the config file's folder (see `resolve_paths`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
import tomllib
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import jmespath
import jmespath.exceptions
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from connector.errors import ConfigError

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV_VAR = "CONNECTOR_CONFIG"
ENV_PREFIX = "CONNECTOR_"
MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few kB; anything bigger is the wrong file

log = logging.getLogger("connector.config")


class Section(BaseModel):
    # inf/nan pass `gt=0` checks and then break sleeps and timeouts: no float key means either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class JobylonConfig(Section):
    base_url: str = "https://staging.jobylon.com"
    events_path: str = "/p1/events/"
    availability_path: str = "/p2/users/calendar-availability/"
    app_id: str
    app_key: SecretStr
    timeout_seconds: float = Field(15, gt=0)
    max_requests_per_second: float = Field(5, gt=0)
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http(s) URL such as https://staging.jobylon.com")
        return value.rstrip("/")

    @field_validator("events_path", "availability_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not (value.startswith("/") and value.endswith("/")):
            raise ValueError("expected a path that starts and ends with '/', e.g. /p1/events/")
        return value

    @field_validator("app_id", "app_key", mode="before")
    @classmethod
    def _header_safe(cls, value: Any, info: ValidationInfo) -> Any:
        return _header_value(value, f"jobylon.{info.field_name}", required=True)


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
        # Base64-encoded into the header, as Latin-1 (what requests does): more than visible ASCII fits.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        value = _stripped(raw, f"source.auth.{info.field_name}")
        if isinstance(value, str):
            _refuse_characters(value, lambda char: char.isprintable() and ord(char) < 0x100, "HTTP Basic auth", len(raw) - len(raw.lstrip()))
            if info.field_name == "username" and ":" in value:
                raise ValueError("cannot contain ':' (Basic auth separates the user name from the password with it)")
        return value


class HeaderAuth(Section):
    type: Literal["header"]
    name: str
    value: SecretStr

    @field_validator("name", mode="before")
    @classmethod
    def _header_name(cls, value: Any) -> Any:
        value = _stripped(value, "source.auth.name")
        if isinstance(value, str) and not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"not a valid HTTP header name ({_HEADER_NAME_RULE})")
        return value

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
    options: dict[str, Any] = {}
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

CANONICAL_FIELDS = (
    "remote_id",
    "title",
    "description",
    "start",
    "end",
    "duration_minutes",
    "timezone",
    "organizer_email",
    "application_ids",
    "location",
    "videoconferencing",
    "cancelled",
    "updated_at",
)


# Functions the mapping adds to JMESPath's own (connector.mapping implements them):
#   lookup('NAME', key)  the value of `key` in the table [mapping.lookups.NAME]; a key not in it makes the item invalid
#   fail('reason')       makes the item invalid for that reason (e.g. `start.date_time || (start.date && fail('...'))`)
CUSTOM_FUNCTIONS = {"lookup": 2, "fail": 1}
MERGE_ACCOUNT_HEADER = "X-Account-Token"


def function_problems(expression: str, lookups: set[str]) -> list[str]:
    """What is wrong with the functions `expression` calls: unknown ones, a wrong number of
    arguments to ours, a lookup of a table not defined or not named by a literal string."""
    from jmespath.functions import Functions

    known = set(Functions.FUNCTION_TABLE) | set(CUSTOM_FUNCTIONS)
    problems: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        children = node.get("children") or []
        if node.get("type") == "function_expression":
            name = node.get("value")
            if name not in known:
                problems.append(f"unknown function {name}(); ours are lookup('NAME', key) and fail('reason'), besides JMESPath's own")
            elif name in CUSTOM_FUNCTIONS and len(children) != CUSTOM_FUNCTIONS[name]:
                problems.append(f"{name}() takes {CUSTOM_FUNCTIONS[name]} argument(s), got {len(children)}")
            elif name == "lookup":
                first = children[0]
                table = first.get("value") if isinstance(first, dict) and first.get("type") == "literal" else None
                if not isinstance(table, str):
                    problems.append("lookup() needs the table's name as a literal string first: lookup('NAME', key)")
                elif table not in lookups:
                    defined = ", ".join(sorted(lookups)) or "none"
                    problems.append(f"lookup '{table}' is not defined in [mapping.lookups] (defined: {defined})")
        for child in children:
            walk(child)

    walk(jmespath.compile(expression).parsed)
    return problems


class MappingConfig(Section):
    """JMESPath expression per canonical field, evaluated over one raw item; None means unmapped."""

    remote_id: str | None = "id"
    title: str | None = "title"
    description: str | None = "notes"
    start: str | None = "start_at"
    end: str | None = "end_at"
    duration_minutes: str | None = None
    timezone: str | None = "timezone"
    organizer_email: str | None = "organizer.email"
    application_ids: str | None = "candidates[].jobylon_application_id"
    location: str | None = "location"
    videoconferencing: str | None = "video"
    cancelled: str | None = "status == 'cancelled'"
    updated_at: str | None = "updated_at"
    deleted: str | None = None  # true: deleted at the source (e.g. Merge's remote_was_deleted); the event goes
    defaults: dict[str, Any] = {"timezone": "Europe/Stockholm", "description": ""}
    lookups: dict[str, LookupConfig] = {}  # key -> value tables for lookup('NAME', key) in the expressions

    @field_validator(*CANONICAL_FIELDS[:-1], "updated_at", "deleted")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return _check_jmespath(value or None)

    @field_validator("lookups")
    @classmethod
    def _lookup_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _LOOKUP_NAME.fullmatch(name):
                raise ValueError(f"lookup name {name!r}: letters, digits, '_' and '-' only, not starting with a digit")
        return value

    @model_validator(mode="after")
    def _known_functions(self) -> MappingConfig:
        """Every function an expression calls exists, and every lookup('NAME', ...) names a table of
        [mapping.lookups] by a literal name: a typo is refused at load instead of mapping to null."""
        for name in (*CANONICAL_FIELDS, "deleted"):
            expression = getattr(self, name)
            for problem in function_problems(expression, set(self.lookups)) if expression else ():
                raise PydanticCustomError("config_problem", "{problem}", {"key": name, "problem": problem})
        return self

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected one of {', '.join(CANONICAL_FIELDS)}")
        if "timezone" in value:
            problem = _zone_problem(value["timezone"])
            if problem:  # every item without a zone of its own would be invalid: refuse it at load
                raise PydanticCustomError("config_problem", "{problem}", {"key": "timezone", "problem": problem})
        return value


class SyncConfig(Section):
    interval_seconds: float = Field(300, gt=0)
    cron: str | None = None
    jitter_seconds: float = Field(0, ge=0)
    full_every: int = Field(12, ge=1)
    concurrency: int = Field(4, ge=1, le=64)
    past_events: Literal["ignore"] = "ignore"
    on_fixed_field_change: Literal["recreate", "report"] = "recreate"
    on_missing_in_jobylon: Literal["recreate", "forget"] = "recreate"
    max_deletes: int = Field(50, ge=0)
    max_delete_fraction: float = Field(0.2, ge=0, le=1)
    first_pass_max_creates: int | None = Field(None, ge=0)  # None: no limit on a new database's first pass
    on_drift: Literal["report", "update", "recreate"] = "report"  # an event changed or cancelled inside Jobylon (webhooks)
    reference_marker: bool = False  # end each event description with a line naming its remote id

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        return _check_crontab(value)


class RetryConfig(Section):
    attempts: int = Field(5, ge=1)
    backoff_initial_seconds: float = Field(1, ge=0)
    backoff_max_seconds: float = Field(60, ge=0)
    retry_after_max_seconds: float = Field(300, ge=0)
    failed_item_backoff_seconds: list[float] = Field([60, 300, 1800, 7200], min_length=1)
    circuit_breaker_failures: int = Field(10, ge=1)


class StateConfig(Section):
    path: Path = Path("state/connector.db")
    # PostgreSQL instead of the SQLite file: postgresql+psycopg://user@host:5432/db (the `postgresql` extra)
    url: SecretStr | None = None
    password: SecretStr | None = None  # or in the URL; better: env CONNECTOR_STATE__PASSWORD
    lease_seconds: float = Field(15, ge=3, le=600)  # with a url: a leader's lease, renewed every third of it

    @field_validator("url", mode="after")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        text = value.get_secret_value() if value is not None else None
        if text is None:
            return None
        if not text.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a PostgreSQL URL, postgresql+psycopg://user@host:5432/database")
        return SecretStr("postgresql+psycopg://" + text.removeprefix("postgresql://")) if text.startswith("postgresql://") else value

    @field_validator("path", mode="before")
    @classmethod
    def _usable_path(cls, value: Any) -> Any:
        return _usable_path(value)


class ObservabilityConfig(Section):
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # the address /metrics and /healthz listen on; any but loopback is warned about
    # The status pages' basic auth (/metrics and /healthz never ask): needed for the pages on any
    # metrics_host but loopback; set both or neither.
    username: str = ""
    password: SecretStr = Field(SecretStr(""), validate_default=True)

    @field_validator("metrics_host")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("expected an IP address to listen on: 127.0.0.1 (this host only, the default) or 0.0.0.0 (every interface)") from None

    @field_validator("username", "password", mode="before")
    @classmethod
    def _page_credential(cls, value: Any, info: ValidationInfo) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw == "":
            return value  # none set (also the default, checked as the module loads)
        value = _stripped(raw, f"observability.{info.field_name}")
        if isinstance(value, str):
            _refuse_characters(value, lambda char: char.isprintable() and ord(char) < 0x100, "HTTP Basic auth", len(raw) - len(raw.lstrip()))
            if info.field_name == "username" and ":" in value:
                raise ValueError("cannot contain ':' (Basic auth separates the user name from the password with it)")
        return value

    @field_validator("password")
    @classmethod
    def _page_credentials_together(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if bool(info.data.get("username")) != bool(value.get_secret_value()):
            raise ValueError("observability.username and observability.password go together: set both or neither")
        return value


class AlertsConfig(Section):
    webhook_url: SecretStr = SecretStr("")
    failures_threshold: int = Field(10, ge=0)
    stale_after_seconds: float = Field(3600, gt=0)


class WebhookForwardConfig(Section):
    """`[webhooks.forward]`: post a normalised record of each event Jobylon tells us about to the
    partner (remote id, event id, status, RSVPs, video link). Off while `url` is empty."""

    url: SecretStr = SecretStr("")  # may carry a token
    headers: dict[str, str] = {}  # e.g. Authorization; values are secrets
    timeout_seconds: float = Field(10, gt=0)

    @field_validator("url", mode="after")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if text and not re.match(r"^https?://[^/\s]+", text):
            raise ValueError("expected an http(s) URL")
        return SecretStr(text)

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!a} is not a valid HTTP header name ({_HEADER_NAME_RULE})")
            _header_value(text, f"webhooks.forward.headers.{name}", required=False)
        return value


class WebhooksConfig(Section):
    """`[webhooks]`: the receiver of Jobylon's calendar_event deliveries (`connector webhooks serve`,
    or inside `connector run` with `enabled`). Jobylon has no signature: protect it with basic auth,
    a required header and/or a client-IP allow-list; any address but loopback needs one of them."""

    enabled: bool = False  # start the receiver inside `connector run`
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)  # 0: any free port (tests)
    path: str = "/jobylon/webhooks/"
    username: str = ""
    password: SecretStr = SecretStr("")
    header_name: str = ""  # a header every delivery must carry (Jobylon's custom headers)
    header_value: SecretStr = SecretStr("")
    allowed_ips: list[str] = []  # addresses or networks (203.0.113.0/24); empty: any
    max_body_bytes: int = Field(1_000_000, ge=1, le=50_000_000)
    threads: int = Field(4, ge=1, le=64)
    settle_interval_seconds: float = Field(30, gt=0)  # how often deliveries still unmatched are looked at again
    forward: WebhookForwardConfig = WebhookForwardConfig()

    @field_validator("host")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("expected an IP address to listen on: 127.0.0.1 (this host only, the default) or 0.0.0.0 (every interface)") from None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
            raise ValueError("expected a URL path such as /jobylon/webhooks/")
        return value

    @field_validator("username", "password", mode="before")
    @classmethod
    def _basic_credential(cls, value: Any, info: ValidationInfo) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        value = _stripped(raw, f"webhooks.{info.field_name}")
        if isinstance(value, str):
            _refuse_characters(value, lambda char: char.isprintable() and ord(char) < 0x100, "HTTP Basic auth", len(raw) - len(raw.lstrip()))
            if info.field_name == "username" and ":" in value:
                raise ValueError("cannot contain ':' (Basic auth separates the user name from the password with it)")
        return value

    @field_validator("header_name", mode="before")
    @classmethod
    def _header_name(cls, value: Any) -> Any:
        value = _stripped(value, "webhooks.header_name")
        if isinstance(value, str) and value and not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"not a valid HTTP header name ({_HEADER_NAME_RULE})")
        return value

    @field_validator("header_value", mode="before")
    @classmethod
    def _header_safe(cls, value: Any) -> Any:
        return _header_value(value, "webhooks.header_value", required=False)

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 203.0.113.7 or 203.0.113.0/24)") from None
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _protected(self) -> WebhooksConfig:
        if bool(self.username) != bool(self.password.get_secret_value()):
            raise ValueError("webhooks.username and webhooks.password go together: set both or neither")
        if bool(self.header_name) != bool(self.header_value.get_secret_value()):
            raise ValueError("webhooks.header_name and webhooks.header_value go together: set both or neither")
        if not ipaddress.ip_address(self.host).is_loopback and not (self.username or self.header_name or self.allowed_ips):
            raise ValueError(
                f"webhooks.host = {self.host} accepts deliveries from other machines, and Jobylon signs none: "
                "set webhooks.username/password, webhooks.header_name/header_value or webhooks.allowed_ips"
            )
        return self

    def secrets(self) -> list[str]:
        values = [self.password.get_secret_value(), self.header_value.get_secret_value(), self.forward.url.get_secret_value()]
        return values + list(self.forward.headers.values())


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, which turns errors into ConfigError."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    jobylon: JobylonConfig
    source: SourceConfig
    mapping: MappingConfig = MappingConfig()
    sync: SyncConfig = SyncConfig()
    retry: RetryConfig = RetryConfig()
    state: StateConfig = StateConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    alerts: AlertsConfig = AlertsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        """`source.preset` fills the source and mapping keys of a known ATS API; every key set in the
        config (or the environment) wins over the preset's."""
        if isinstance(data, dict) and isinstance(data.get("source"), dict) and "preset" in data["source"]:
            from connector.presets import expand  # plain data; loaded only when a preset is used

            return expand(data)
        return data

    @model_validator(mode="after")
    def _sql_lookups_have_a_database(self) -> Settings:
        for name, lookup in self.mapping.lookups.items():
            if isinstance(lookup, SqlLookupConfig) and lookup.url is None and not isinstance(self.source, SqlSourceConfig):
                raise PydanticCustomError(
                    "config_problem",
                    "{problem}",
                    {"key": f"mapping.lookups.{name}.url", "problem": "required key is missing (only a sql source lends its database)"},
                )
        return self

    def secrets(self) -> list[str]:
        """Every secret value in this config, for redaction of anything that might echo one."""
        values = [self.jobylon.app_key.get_secret_value(), self.alerts.webhook_url.get_secret_value()]
        if isinstance(self.source, HttpSourceConfig) and self.source.auth is not None:
            auth = self.source.auth
            values.append(
                auth.token.get_secret_value()
                if isinstance(auth, BearerAuth)
                else auth.password.get_secret_value()
                if isinstance(auth, BasicAuth)
                else auth.value.get_secret_value()
            )
            if isinstance(auth, BasicAuth) and not auth.password.get_secret_value():
                values.append(auth.username)  # an API key sent as the user name (Greenhouse): a secret
        if isinstance(self.source, HttpSourceConfig) and self.source.preset == "merge":
            values.append(self.source.headers.get(MERGE_ACCOUNT_HEADER, ""))  # identifies the customer's account
        databases: list[tuple[str | None, SecretStr | None]] = [
            (lookup.url, lookup.password) for lookup in self.mapping.lookups.values() if isinstance(lookup, SqlLookupConfig)
        ]
        if isinstance(self.source, SqlSourceConfig):
            databases.append((self.source.url, self.source.password))
        if self.state.url is not None:
            values.append(self.state.url.get_secret_value())
            databases.append((self.state.url.get_secret_value(), self.state.password))
        for url, password in databases:
            values += url_passwords(url)
            if password is not None:
                values.append(password.get_secret_value())
        values += self.webhooks.secrets()
        values.append(self.observability.password.get_secret_value())  # the status pages' basic auth
        return [v for v in values if v]


_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+_.-]*://([^/?#@]*)@")


def url_passwords(url: str | None) -> list[str]:
    """The password inside a URL's user info, as written and percent-decoded (both can be echoed)."""
    from urllib.parse import unquote

    match = _URL_USERINFO.match(url or "")
    if not match or ":" not in match.group(1):
        return []
    written = match.group(1).split(":", 1)[1]
    return [p for p in {written, unquote(written)} if p]


def _check_since_format(pattern: str | None) -> str | None:
    """A strftime pattern that writes a date and a time (the cursor is a moment, not a day)."""
    if pattern is None:
        return None
    from datetime import UTC, datetime

    sample = datetime(2026, 11, 30, 21, 45, 59, tzinfo=UTC)
    try:
        text = sample.strftime(pattern)
    except ValueError as exc:
        raise ValueError(f"not a strftime pattern ({_first_line(exc)})") from None
    if "30" not in text or "21" not in text:
        raise ValueError("the pattern must write the date and the time, e.g. %Y-%m-%dT%H:%M:%SZ")
    return pattern


def _check_jmespath(expression: str | None) -> str | None:
    if expression is None:
        return None
    try:
        jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"not a valid JMESPath expression ({_first_line(exc)})") from None
    return expression


def _check_crontab(expression: str | None) -> str | None:
    """A crontab expression (five fields, evaluated in UTC) as the daemon's scheduler reads it; one
    that never fires (e.g. 30 February) is refused too, it would silently stop the service."""
    if expression is None or not expression.strip():
        return None
    from datetime import UTC, datetime

    from apscheduler.triggers.cron import CronTrigger  # only when a cron is configured

    shown = repr(expression) if len(expression) <= 64 else repr(expression[:64]) + "..."
    try:
        trigger = CronTrigger.from_crontab(expression, timezone=UTC)
    except Exception as exc:  # ValueError mostly; whatever apscheduler raises, it is not a crontab
        raise ValueError(
            f"not a valid crontab expression {shown} ({_first_line(exc)}); expected five fields: minute hour day month weekday, e.g. '*/5 * * * *'"
        ) from None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError(f"the crontab expression {shown} never fires")
    return expression


def _zone_problem(value: Any) -> str | None:
    """Why `value` is not an IANA time zone name, or None when it is one (the rule of item validation)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not value:
        return f"expected an IANA time zone name such as Europe/Stockholm (got {_shown_input(value)})"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown IANA time zone {_shown_input(value)}; expected a name such as Europe/Stockholm"
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- values that go into HTTP headers ----------------------------------------------------------
# A key copied with its trailing newline, or with a zero-width space from a chat message, would
# otherwise fail every single request (or raise deep inside http.client). Messages name the key and
# the position, never the value.

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_NAME_RULE = "letters, digits and !#$%&'*+-.^_`|~ only"


def _stripped(value: Any, key: str) -> Any:
    """`value` without surrounding whitespace (logged, naming the key only); non-strings as they are."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str) and value.strip() != value:
        log.warning("%s: surrounding whitespace removed (a trailing newline or space is never part of the value)", key)
        return value.strip()
    return value


def _refuse_characters(value: str, allowed: Any, what: str, offset: int = 0) -> None:
    for index, char in enumerate(value):
        if not allowed(char):
            name = "a control character" if unicodedata.category(char) == "Cc" else unicodedata.name(char, "unnamed")
            raise ValueError(f"contains a character {what} cannot carry (U+{ord(char):04X} at position {offset + index + 1}: {name})")


def _header_value(value: Any, key: str, *, required: bool) -> Any:
    """Visible ASCII, with spaces and tabs inside: what every HTTP stack carries in a header value."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    value = _stripped(raw, key)
    if not isinstance(value, str):
        return value
    if required and not value:
        raise ValueError("is empty")
    _refuse_characters(value, lambda char: " " <= char <= "~" or char == "\t", "an HTTP header", len(raw) - len(raw.lstrip()))
    return value


def _usable_path(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise ValueError("expected a file path, got an empty string")
        if "\0" in value:
            raise ValueError("a path cannot contain a NUL character")
    return value


# -- loading -----------------------------------------------------------------------------------


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None, *, data: dict[str, Any] | None = None) -> Settings:
    """Read the TOML file at `path` (or use `data`), apply env overrides, validate, resolve relative paths.

    Raises ConfigError with one message per problem, each naming the key path and what was expected.
    """
    if data is None:
        file = config_path(path)
        raw, info = _read_config_file(file)
        data = _parse_toml(file, raw)
        origin = str(file)
        base = file.absolute().parent
        _warn_if_exposed(file, info.st_mode, data)
    else:
        origin = "config"
        base = Path.cwd()
    _warn_unknown_environment()
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
    except SettingsError as exc:
        raise ConfigError(_environment_problem(exc, origin)) from None
    return resolve_paths(settings, base)


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """Every relative path-valued key (`state.path`, `source.path`, a CSV lookup's `path`, the file of a
    relative `sqlite:///` URL) made absolute against `base`: the config file's folder, also for a value
    from the environment (one rule, so a config means the same files whatever the current folder); the
    current folder when there is no file."""
    changes: dict[str, Any] = {}
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        if isinstance(section, BaseModel):
            fixed: dict[str, Any] = {key: base / value for key, value in section if isinstance(value, Path) and not value.is_absolute()}
            url = getattr(section, "url", None) if isinstance(section, SqlSourceConfig) else None
            if url is not None and (absolute := _absolute_sqlite_url(url, base)) != url:
                fixed["url"] = absolute
            if isinstance(section, MappingConfig) and section.lookups:
                lookups = {key: _resolve_lookup(lookup, base) for key, lookup in section.lookups.items()}
                if lookups != section.lookups:
                    fixed["lookups"] = lookups
            if fixed:
                changes[name] = section.model_copy(update=fixed)
    return settings.model_copy(update=changes) if changes else settings


def _resolve_lookup(lookup: Any, base: Path) -> Any:
    if isinstance(lookup, CsvLookupConfig) and not lookup.path.is_absolute():
        return lookup.model_copy(update={"path": base / lookup.path})
    if isinstance(lookup, SqlLookupConfig) and lookup.url is not None and (absolute := _absolute_sqlite_url(lookup.url, base)) != lookup.url:
        return lookup.model_copy(update={"url": absolute})
    return lookup


_RELATIVE_SQLITE = re.compile(r"^(sqlite(?:\+[A-Za-z0-9_]+)?):///(?!/)([^?]+)(\?.*)?$")


def _absolute_sqlite_url(url: str, base: Path) -> str:
    """`sqlite:///rel.db` names a file relative to the current folder: make it the config folder's
    (SQLAlchemy's URL rules: three slashes and a relative path, four for an absolute one)."""
    match = _RELATIVE_SQLITE.match(url)
    if not match or match.group(2) == ":memory:" or match.group(2).startswith("file:"):
        return url
    return f"{match.group(1)}:///{base / match.group(2)}{match.group(3) or ''}"


def _read_config_file(file: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES. A FIFO or a device is refused from
    its stat, before any open (an open of a FIFO blocks until someone writes to it)."""
    try:
        _check_regular(file, os.stat(file))
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(file, flags), "rb") as handle:
            info = os.fstat(handle.fileno())
            _check_regular(file, info)  # replaced by something else between the stat and the open
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{file}: config file not found (set --config or {CONFIG_ENV_VAR})") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise ConfigError(f"{file}: cannot read the config file ({reason.lower()})") from None
    if len(raw) > MAX_CONFIG_BYTES:  # grew after the stat
        raise ConfigError(f"{file}: the config file is larger than 1 MiB; is it the right file?")
    return raw, info


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_regular(file: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{file}: is a folder, not a config file")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a file")
        raise ConfigError(f"{file}: not a regular file ({kind}); give the path of the TOML config file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: the config file is larger than 1 MiB ({info.st_size} bytes); is it the right file?")


def _parse_toml(file: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Everything before exc.start is valid UTF-8, so the column can be counted in characters.
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8")) + 1
        raise ConfigError(f"{file}: not UTF-8 at byte {exc.start} (line {line}, column {column}); save the file as UTF-8") from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a byte order mark, as some editors write
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{file}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise ConfigError(f"{file}: not valid TOML: {_first_line(exc).split(';')[0]}") from None


def _environment_problem(exc: SettingsError, origin: str) -> str:
    """pydantic-settings could not parse an environment value (a list or table must be JSON there).
    The variable is named, its value is not shown."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else ""
    prefix = f"{ENV_PREFIX}{field}".upper()
    names = sorted(name for name in os.environ if field and (name.upper() == prefix or name.upper().startswith(prefix + "__")))
    where = ", ".join(names) or f"an environment variable {ENV_PREFIX}..."
    return f"{origin}: invalid configuration (1 problem):\n  {where}: not a valid value for '{field or '?'}' (a list or a table is written as JSON there, e.g. [60, 300])"


SECRET_KEYS = {
    ("jobylon", "app_key"),
    ("alerts", "webhook_url"),
    ("auth", "token"),
    ("auth", "password"),
    ("auth", "value"),
    ("source", "password"),
    ("source", "api_key"),
    ("source", "account_token"),
    ("webhooks", "password"),
    ("webhooks", "header_value"),
    ("forward", "url"),
    ("forward", "headers"),
    ("observability", "password"),
}


def _secret_paths(data: Any, path: tuple[str, ...] = ()) -> list[str]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*path, str(key))
            lookup_password = len(here) == 4 and here[:2] == ("mapping", "lookups") and here[-1] == "password"
            url_password = here[-1] == "url" and isinstance(value, str) and bool(url_passwords(value))
            if value and ((len(here) >= 2 and here[-2:] in SECRET_KEYS) or lookup_password or url_password):
                found.append(".".join(here))
            found += _secret_paths(value, here)
    return found


def _warn_if_exposed(file: Path, mode: int, data: dict[str, Any]) -> None:
    """A config file that others may read should not hold a secret."""
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return
    secrets = _secret_paths(data)
    if secrets:
        log.warning(
            "%s is readable by other users (mode %s) and holds %s: run `chmod 600 %s` or move the secret to the environment (e.g. CONNECTOR_JOBYLON__APP_KEY)",
            file,
            oct(stat.S_IMODE(mode)),
            ", ".join(secrets),
            file,
        )


def format_validation_error(exc: ValidationError, origin: str) -> str:
    """One line per problem: `key.path: what was expected (got <value>)`. The value is shown only for
    keys that cannot hold a secret (`_may_hold_secret`; for those only its type), and never for an
    unknown key (a misspelt `app_kye` holds the key). A value from the environment names its
    variable (`from CONNECTOR_SYNC__CONCURRENCY`); the heading then names the environment, not the file."""
    lines = []
    sources = set()
    environment = _environment_names()
    for error in exc.errors(include_url=False, include_input=True):
        loc = [str(part) for part in error["loc"]]
        # Discriminated unions add the tag to the location (`source.http.url`): drop it.
        if len(loc) > 1 and loc[0] == "source" and loc[1] in ("file", "http", "sql", "python"):
            loc.pop(1)
        if len(loc) > 3 and loc[:2] == ["mapping", "lookups"] and loc[3] in ("csv", "sql"):
            loc.pop(3)
        if len(loc) > 2 and loc[:2] == ["source", "auth"] and loc[2] in ("bearer", "basic", "header"):
            loc.pop(2)
        kind = error["type"]
        got: str | None = None
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            message = _tag_message(error)
        elif kind == "config_problem":  # a problem inside a table, e.g. one header of source.headers
            ctx = error.get("ctx") or {}
            loc.append(str(ctx.get("key", "?")))
            message = str(ctx.get("problem", ""))
        else:
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            if _may_hold_secret(loc):
                got = type(value).__name__ if value is not None and kind != "value_error" else None
            elif isinstance(value, str | int | float) and not (kind == "value_error" and ("got " in message or _shown_input(value) in message)):
                got = _shown_input(value)
            elif value is not None and kind != "value_error":
                got = type(value).__name__
        variable = _environment_variable(loc, environment)
        sources.add("environment" if variable else "file")
        detail = " ".join(part for part in (f"got {got}" if got else "", f"from {variable}" if variable else "") if part)
        key = ".".join(loc) or "(top level)"
        lines.append(f"{key}: {message}" + (f" ({detail})" if detail else ""))
    plural = "s" if len(lines) > 1 else ""
    where = "the environment" if sources == {"environment"} else f"{origin} and the environment" if len(sources) > 1 else origin
    return f"{where}: invalid configuration ({len(lines)} problem{plural}):\n  " + "\n  ".join(lines)


# Keys whose values are never shown in a message, nor those of the tables holding them: the
# credentials, the values of source.headers (often an API key), the source URL (may carry a token).
NEVER_SHOWN = (
    ("jobylon", "app_key"),
    ("jobylon", "app_id"),
    ("alerts", "webhook_url"),
    ("source", "url"),
    ("source", "auth"),
    ("source", "headers"),
    ("webhooks", "password"),
    ("webhooks", "header_value"),
    ("webhooks", "forward"),
    ("observability", "password"),
)


def _may_hold_secret(loc: list[str]) -> bool:
    here = tuple(loc)
    return any(here[: len(path)] == path or path[: len(here)] == here for path in NEVER_SHOWN)


def _shown_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "..."


# -- the environment ---------------------------------------------------------------------------

KNOWN_VARIABLES = {CONFIG_ENV_VAR, "CONNECTOR_CRASH_AT"}  # the config file; the crash tests' hook


def _environment_names() -> dict[str, str]:
    """The CONNECTOR_* variables set, upper-cased (pydantic-settings matches them case-insensitively)
    -> their names as set."""
    return {name.upper(): name for name in os.environ if name.upper().startswith(ENV_PREFIX)}


def _environment_variable(loc: list[str], names: dict[str, str]) -> str | None:
    """The variable that set the value at `loc` (or a table holding it, as JSON), if one did: the
    environment overrides the file."""
    for length in range(len(loc), 0, -1):
        name = names.get((ENV_PREFIX + "__".join(loc[:length])).upper())
        if name is not None and name.upper() not in KNOWN_VARIABLES:
            return name
    return None


def _warn_unknown_environment() -> None:
    """A CONNECTOR_* variable that names no section is ignored by pydantic-settings: say so, naming it
    (never its value), since it is almost always a misspelt override (`CONNECTOR_SYNC_INTERVAL`)."""
    sections = {(ENV_PREFIX + name).upper() for name in Settings.model_fields}
    for upper, name in sorted(_environment_names().items()):
        if upper in KNOWN_VARIABLES or upper.split("__")[0] in sections:
            continue
        log.warning(
            "%s: unknown environment variable, ignored; a config override is named %s<SECTION>__<KEY> with a section of %s",
            name,
            ENV_PREFIX,
            ", ".join(Settings.model_fields),
        )


def _tag_message(error: Any) -> str:
    ctx = error.get("ctx") or {}
    expected = ctx.get("expected_tags", "")
    tag = ctx.get("discriminator", "kind").strip("'")
    if error["type"] == "union_tag_not_found":
        return f"required key '{tag}' is missing; expected one of {expected}"
    return f"'{tag}' must be one of {expected}"
