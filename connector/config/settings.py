"""The whole configuration (`Settings`), and loading it: the file read and checked, the environment
applied, relative paths resolved, every problem one ConfigError naming the file and the key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from connector.config.file import parse_toml, read_config_file, warn_if_exposed
from connector.config.mapping import MERGE_ACCOUNT_HEADER, MappingConfig
from connector.config.sections import AlertsConfig, JobylonConfig, ObservabilityConfig, RetryConfig, StateConfig, SyncConfig, WebhooksConfig
from connector.config.sources import (
    BasicAuth,
    BearerAuth,
    CsvLookupConfig,
    HttpSourceConfig,
    PythonSourceConfig,
    SourceConfig,
    SqlLookupConfig,
    SqlSourceConfig,
    secret_options,
)
from connector.config.values import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, ENV_PREFIX, _shown_input, log, url_passwords
from connector.errors import ConfigError


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
        if isinstance(self.source, PythonSourceConfig):
            values += [value for _, value in secret_options(self.source.options)]
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


# -- loading -----------------------------------------------------------------------------------


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None, *, data: dict[str, Any] | None = None) -> Settings:
    """Read the TOML file at `path` (or use `data`), apply env overrides, validate, resolve relative paths.

    Raises ConfigError with one message per problem, each naming the key path and what was expected.
    """
    if data is None:
        file = config_path(path)
        raw, info = read_config_file(file)
        data = parse_toml(file, raw)
        origin = str(file)
        base = file.absolute().parent
        warn_if_exposed(file, info.st_mode, data)
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


def _environment_problem(exc: SettingsError, origin: str) -> str:
    """pydantic-settings could not parse an environment value (a list or table must be JSON there).
    The variable is named, its value is not shown."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else ""
    prefix = f"{ENV_PREFIX}{field}".upper()
    names = sorted(name for name in os.environ if field and (name.upper() == prefix or name.upper().startswith(prefix + "__")))
    where = ", ".join(names) or f"an environment variable {ENV_PREFIX}..."
    return f"{origin}: invalid configuration (1 problem):\n  {where}: not a valid value for '{field or '?'}' (a list or a table is written as JSON there, e.g. [60, 300])"


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
