"""Rules for one config value: the section base, header-safe text, paths, URLs with a password,
JMESPath expressions, crontabs, time zones. Each check raises or returns a ValueError pydantic reports
under the key."""

from __future__ import annotations

import ipaddress
import logging
import re
import unicodedata
from typing import Any

import jmespath
import jmespath.exceptions
from pydantic import BaseModel, ConfigDict, SecretStr

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV_VAR = "CONNECTOR_CONFIG"
ENV_PREFIX = "CONNECTOR_"
MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few kB; anything bigger is the wrong file

log = logging.getLogger("connector.config")


class Section(BaseModel):
    # inf/nan pass `gt=0` checks and then break sleeps and timeouts: no float key means either.
    # defer_build: a section's validator is built when it is first used, not at import; Settings
    # builds the ones a config needs as part of its own (about 12 ms less CPU before the first call).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


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


def _basic_credential(value: Any, key: str) -> Any:
    """An HTTP Basic auth user name or password (`key` ends in the field's name): base64-encoded into
    the header as Latin-1 (what requests does), so more than visible ASCII fits; a user name holds no ':'."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    value = _stripped(raw, key)
    if isinstance(value, str):
        _refuse_characters(value, lambda char: char.isprintable() and ord(char) < 0x100, "HTTP Basic auth", len(raw) - len(raw.lstrip()))
        if key.endswith("username") and ":" in value:
            raise ValueError("cannot contain ':' (Basic auth separates the user name from the password with it)")
    return value


def _listen_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("expected an IP address to listen on: 127.0.0.1 (this host only, the default) or 0.0.0.0 (every interface)") from None


def _header_name(value: Any, key: str, *, required: bool) -> Any:
    """An HTTP header name (a token); empty allowed unless `required` (then the token rule refuses it)."""
    value = _stripped(value, key)
    if isinstance(value, str) and (value or required) and not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"not a valid HTTP header name ({_HEADER_NAME_RULE})")
    return value


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


def _shown_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "..."
