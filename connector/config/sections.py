"""The `[jobylon]`, `[sync]`, `[retry]`, `[state]`, `[observability]`, `[alerts]` and `[webhooks]` sections."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from connector.config.values import (
    _HEADER_NAME,
    _HEADER_NAME_RULE,
    Section,
    _basic_credential,
    _check_crontab,
    _header_name,
    _header_value,
    _listen_address,
    _usable_path,
)


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
        return _listen_address(value)

    @field_validator("username", "password", mode="before")
    @classmethod
    def _page_credential(cls, value: Any, info: ValidationInfo) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw == "":
            return value  # none set (also the default, checked as the module loads)
        return _basic_credential(raw, f"observability.{info.field_name}")

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
        return _listen_address(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
            raise ValueError("expected a URL path such as /jobylon/webhooks/")
        return value

    @field_validator("username", "password", mode="before")
    @classmethod
    def _basic_credential(cls, value: Any, info: ValidationInfo) -> Any:
        return _basic_credential(value, f"webhooks.{info.field_name}")

    @field_validator("header_name", mode="before")
    @classmethod
    def _header_name(cls, value: Any) -> Any:
        return _header_name(value, "webhooks.header_name", required=False)

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
