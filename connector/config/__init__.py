"""The connector's configuration (models in `sections`, `sources`, `mapping`; value rules in `values`;
the file read and parsed in `file`; loading in `settings`): a TOML file plus
`CONNECTOR_<SECTION>__<KEY>` environment overrides.

Every section forbids unknown keys, so a typo is an error that names the key instead of a silently
ignored setting. Secrets are `SecretStr`: they print as `**********` everywhere.

Whatever the file or the environment holds, loading either succeeds or raises ConfigError naming the
file (and the byte, line or key): the file must be a regular file of at most 1 MiB in UTF-8; values that
go into HTTP headers are checked here, not at the first request; relative paths are resolved against
the config file's folder (see `resolve_paths`).
"""

from connector.config.mapping import CANONICAL_FIELDS, CUSTOM_FUNCTIONS, MERGE_ACCOUNT_HEADER, MappingConfig, function_problems
from connector.config.sections import (
    AlertsConfig,
    JobylonConfig,
    ObservabilityConfig,
    RetryConfig,
    StateConfig,
    SyncConfig,
    WebhookForwardConfig,
    WebhooksConfig,
)
from connector.config.settings import Settings, config_path, format_validation_error, load_settings, resolve_paths
from connector.config.sources import (
    SINCE_PLACEHOLDER,
    BasicAuth,
    BearerAuth,
    CsvLookupConfig,
    FileSourceConfig,
    HeaderAuth,
    HttpSourceConfig,
    LookupConfig,
    PaginationConfig,
    PythonSourceConfig,
    SourceConfig,
    SqlLookupConfig,
    SqlSourceConfig,
)
from connector.config.values import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, MAX_CONFIG_BYTES, Section, url_passwords

__all__ = [
    "CANONICAL_FIELDS",
    "CONFIG_ENV_VAR",
    "CUSTOM_FUNCTIONS",
    "DEFAULT_CONFIG_PATH",
    "MAX_CONFIG_BYTES",
    "MERGE_ACCOUNT_HEADER",
    "SINCE_PLACEHOLDER",
    "AlertsConfig",
    "BasicAuth",
    "BearerAuth",
    "CsvLookupConfig",
    "FileSourceConfig",
    "HeaderAuth",
    "HttpSourceConfig",
    "JobylonConfig",
    "LookupConfig",
    "MappingConfig",
    "ObservabilityConfig",
    "PaginationConfig",
    "PythonSourceConfig",
    "RetryConfig",
    "Section",
    "Settings",
    "SourceConfig",
    "SqlLookupConfig",
    "SqlSourceConfig",
    "StateConfig",
    "SyncConfig",
    "WebhookForwardConfig",
    "WebhooksConfig",
    "config_path",
    "format_validation_error",
    "function_problems",
    "load_settings",
    "resolve_paths",
    "url_passwords",
]
