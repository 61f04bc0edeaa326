"""The config file itself: read (a regular file of at most 1 MiB, never a FIFO or a device), parsed
(UTF-8 TOML, a byte order mark allowed), and a warning when users other than its owner may read the
secrets it holds. Every problem is a ConfigError naming the file."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from connector.config.sources import secret_options
from connector.config.values import CONFIG_ENV_VAR, MAX_CONFIG_BYTES, _first_line, log, url_passwords
from connector.errors import ConfigError


def read_config_file(file: Path) -> tuple[bytes, os.stat_result]:
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


def parse_toml(file: Path, raw: bytes) -> dict[str, Any]:
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
            if here == ("source", "options"):  # a plugin's own table: the names of credentials (secret_options)
                found += [".".join(where) for where, secret in secret_options(value, here) if secret]
            found += _secret_paths(value, here)
    return found


def warn_if_exposed(file: Path, mode: int, data: dict[str, Any]) -> None:
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
