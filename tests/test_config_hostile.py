"""Hostile and careless configs: whatever the file or the environment holds, the connector stops with
exit 2 and one `error: ...` line naming the file or key; it never hangs, never reads without bound,
never prints a secret, and never quietly follows the current folder to a new, empty database."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from conftest import Harness, invoke_cli, item, run_cli

from connector.config import MAX_CONFIG_BYTES, load_settings
from connector.errors import ConfigError
from connector.sandbox.directory import DEMO_APP_KEY

GOOD = '[jobylon]\napp_id = "demo-app"\napp_key = "supersecret-key-123"\n[source]\nkind = "file"\npath = "x.json"\n'


def write(folder: Path, text: str | bytes, name: str = "config.toml") -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    path.chmod(0o600)
    return path


def assert_config_error(result, *expected: str) -> None:
    """Exit 2, one `error:` message, no traceback, each expected text in it."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


# 9. Only a regular file of at most 1 MiB is read, and a FIFO is never opened for reading.


def test_dev_zero_as_config_is_refused_without_reading_it():
    result = run_cli("--config", "/dev/zero", "sync", timeout=30)
    assert_config_error(result, "/dev/zero: not a regular file (a character device)")


def test_fifo_as_config_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    result = run_cli("--config", str(fifo), "sync", timeout=20)  # nobody ever writes to it: open() would block
    assert_config_error(result, f"{fifo}: not a regular file (a FIFO)")


def test_fifo_named_by_the_environment_is_refused_too(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = run_cli("sync", env={"CONNECTOR_CONFIG": str(fifo)}, timeout=20)
    assert_config_error(result, f"{fifo}: not a regular file (a FIFO)")


def test_config_over_one_mib_is_refused_and_one_mib_exactly_loads(tmp_path):
    padded = GOOD + "#" * (MAX_CONFIG_BYTES - len(GOOD) - 1) + "\n"
    assert len(padded.encode()) == MAX_CONFIG_BYTES == 1024 * 1024
    assert load_settings(write(tmp_path, padded)).jobylon.app_id == "demo-app"
    big = write(tmp_path, padded + "#\n", "big.toml")
    result = run_cli("--config", str(big), "sync")
    assert_config_error(result, f"{big}: the config file is larger than 1 MiB")


def test_huge_sparse_config_is_refused_by_its_size_without_reading_it(tmp_path):
    huge = tmp_path / "config.toml"
    with open(huge, "wb") as handle:
        handle.truncate(8 * 1024**3)  # 8 GiB of holes: reading it would take the memory
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_settings(huge)


def test_folder_as_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").mkdir()  # the default name, so click's own --config check does not see it
    result = run_cli("sync", cwd=tmp_path)
    assert_config_error(result, "config.toml: is a folder, not a config file")


def test_missing_config_and_a_file_used_as_a_folder_are_named(tmp_path):
    result = run_cli("--config", str(tmp_path / "nope.toml"), "sync")
    assert_config_error(result, f"{tmp_path / 'nope.toml'}: config file not found")
    plain = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match="config.toml/x.toml: config file not found"):
        load_settings(plain / "x.toml")


def test_unreadable_config_is_a_config_error(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    path.chmod(0)
    if os.geteuid() != 0:
        result = run_cli("--config", str(path), "sync")
    else:  # root reads any file (CI runs as root): the refusal the kernel gives anyone else, in this process
        real_open = os.open

        def refusing_open(file, flags, *args, **kwargs):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
        result = invoke_cli("--config", str(path), "sync")
    assert_config_error(result, f"{path}: cannot read the config file (permission denied)")


# 11. Encoding and syntax: the file and the position are named.


def test_latin1_config_names_the_byte_and_line(tmp_path):
    text = GOOD.replace("[source]", "# Köln office\n[source]").encode("latin-1")
    offset = text.index("ö".encode("latin-1"))
    path = write(tmp_path, text)
    result = run_cli("--config", str(path), "sync")
    line = text[:offset].count(b"\n") + 1
    assert_config_error(result, f"{path}: not UTF-8 at byte {offset} (line {line}, column 4)")
    assert "supersecret" not in result.stderr


def test_utf8_with_a_byte_order_mark_loads(tmp_path):
    path = write(tmp_path, "\ufeff" + GOOD.replace("[source]", "# Köln office\n[source]"))
    assert load_settings(path).jobylon.app_id == "demo-app"


def test_toml_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path, GOOD + "[sync\nconcurrency = 2\n")
    result = run_cli("--config", str(path), "sync")
    assert_config_error(result, f"{path}: not valid TOML:", "(at line 7, column 6)")


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 5000,  # tomllib recurses per nesting level
        "x = " + "{a = " * 5000,
        "x = " + "9" * 5000,  # beyond Python's int string limit
    ],
    ids=["nested-arrays", "nested-tables", "huge-integer"],
)
def test_pathological_toml_is_a_config_error(tmp_path, text):
    path = write(tmp_path, text)
    result = run_cli("--config", str(path), "sync")
    assert_config_error(result, f"{path}: not valid TOML")


def test_unparsable_environment_value_is_named_without_its_value(tmp_path):
    path = write(tmp_path, GOOD)
    result = run_cli("--config", str(path), "sync", env={"CONNECTOR_RETRY__FAILED_ITEM_BACKOFF_SECONDS": "[1, secret-x"})
    assert_config_error(result, "CONNECTOR_RETRY__FAILED_ITEM_BACKOFF_SECONDS")
    assert "secret-x" not in result.stderr


def test_infinite_and_nan_numbers_are_refused(tmp_path):
    path = write(tmp_path, GOOD + "[sync]\ninterval_seconds = inf\n[retry]\nbackoff_max_seconds = nan\n")
    result = run_cli("--config", str(path), "sync")
    assert_config_error(result, "sync.interval_seconds: Input should be a finite number", "retry.backoff_max_seconds: Input should be a finite number")


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "expected a file path, got an empty string"), ("a\u0000b", "a path cannot contain a NUL character")],
    ids=["empty", "nul"],
)
def test_unusable_path_values_are_config_errors(tmp_path, value, message):
    path = write(tmp_path, GOOD + f"[state]\npath = {json.dumps(value)}\n")
    result = run_cli("--config", str(path), "status")
    assert_config_error(result, f"state.path: {message}")


# 12. Values that go into HTTP headers: surrounding whitespace is removed (with a warning naming the
# key, never the value), a character a header cannot carry is refused (naming the key, never the value).


def test_app_key_with_a_trailing_newline_is_stripped_with_a_warning(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A")])
        h.data["jobylon"]["app_key"] = DEMO_APP_KEY + "\n"
        result = run_cli("--config", str(h.config_file()), "sync")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "jobylon.app_key: surrounding whitespace removed" in result.stderr
        assert DEMO_APP_KEY not in result.stdout + result.stderr
        assert len(h.jobylon_events()) == 1
    finally:
        h.close()


def test_app_key_from_the_environment_is_stripped_too(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CONNECTOR_JOBYLON__APP_KEY", " from-env-key\r\n")
    with caplog.at_level(logging.WARNING, logger="connector.config"):
        settings = load_settings(write(tmp_path, GOOD))
    assert settings.jobylon.app_key.get_secret_value() == "from-env-key"
    assert "jobylon.app_key: surrounding whitespace removed" in caplog.text
    assert "from-env-key" not in caplog.text


def test_zero_width_space_in_app_key_is_refused_without_printing_it(tmp_path):
    key = "demo-key-01\u200b23456789"
    path = write(tmp_path, GOOD.replace("supersecret-key-123", key.replace("\u200b", "\\u200b")))
    result = run_cli("--config", str(path), "sync")
    assert_config_error(result, "jobylon.app_key: contains a character an HTTP header cannot carry (U+200B at position 12")
    output = result.stdout + result.stderr
    for part in (key, "demo-key", "23456789"):
        assert part not in output


HTTP_SOURCE = {"kind": "http", "url": "http://127.0.0.1:9/interviews"}


def config_with(**changes):
    data = {"jobylon": {"app_id": "demo-app", "app_key": "app-key-123456"}, "source": dict(HTTP_SOURCE)}
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    return data


@pytest.mark.parametrize(
    ("changes", "key", "secret", "problem"),
    [
        ({"jobylon__app_id": "demo\u0001app"}, "jobylon.app_id", "demo", "U+0001 at position 5"),
        ({"jobylon__app_key": "key-\u00e9-SECRET"}, "jobylon.app_key", "SECRET", "U+00E9 at position 5"),
        ({"source__auth": {"type": "bearer", "token": "tok\u200bSECRET"}}, "source.auth.token", "SECRET", "U+200B at position 4"),
        ({"source__auth": {"type": "header", "name": "X-Api-Key", "value": "val\nSECRET"}}, "source.auth.value", "SECRET", "U+000A at position 4"),
        ({"source__headers": {"X-Api-Key": "SECRET\u007fx"}}, "source.headers.X-Api-Key", "SECRET", "U+007F at position 7"),
        ({"source__auth": {"type": "basic", "username": "user", "password": "pw\u200bSECRET"}}, "source.auth.password", "SECRET", "U+200B at position 3"),
        ({"source__auth": {"type": "basic", "username": "us\u0000er", "password": "SECRET"}}, "source.auth.username", "SECRET", "U+0000 at position 3"),
    ],
    ids=["app_id", "app_key", "bearer", "header-auth", "headers", "basic-password", "basic-username"],
)
def test_characters_a_header_cannot_carry_are_refused_naming_the_key(changes, key, secret, problem):
    with pytest.raises(ConfigError) as caught:
        load_settings(data=config_with(**changes))
    message = str(caught.value)
    assert f"{key}: contains a character" in message and f"({problem}" in message, message
    assert secret not in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"source__auth": {"type": "header", "name": "X Api Key", "value": "v"}}, "source.auth.name: not a valid HTTP header name"),
        ({"source__headers": {"X-Api\u200bKey": "v"}}, "source.headers: 'X-Api\\u200bKey' is not a valid HTTP header name"),
        ({"source__auth": {"type": "basic", "username": "a:b", "password": "p"}}, "source.auth.username: cannot contain ':'"),
        ({"jobylon__app_key": " \n"}, "jobylon.app_key: is empty"),
        ({"source__auth": {"type": "bearer", "token": "\t"}}, "source.auth.token: is empty"),
    ],
    ids=["auth-header-name", "header-name", "basic-colon", "blank-app-key", "blank-token"],
)
def test_unusable_header_names_and_blank_credentials_are_refused(changes, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(data=config_with(**changes))
    assert expected in str(caught.value)


def test_source_credentials_are_stripped_with_a_warning_naming_the_key(caplog):
    with caplog.at_level(logging.WARNING, logger="connector.config"):
        bearer = load_settings(data=config_with(source__auth={"type": "bearer", "token": "tok-SECRET\n"}, source__headers={" X-Trace ": " on "}))
        basic = load_settings(data=config_with(source__auth={"type": "basic", "username": " user", "password": "pw-SECRET\n"}))
    assert bearer.source.auth.token.get_secret_value() == "tok-SECRET"
    assert bearer.source.headers == {"X-Trace": "on"}
    assert basic.source.auth.username == "user" and basic.source.auth.password.get_secret_value() == "pw-SECRET"
    for key in ("source.auth.token", "source.headers.X-Trace", "source.auth.username", "source.auth.password"):
        assert f"{key}: surrounding whitespace removed" in caplog.text
    assert "SECRET" not in caplog.text


def test_visible_ascii_with_inner_spaces_and_latin1_basic_passwords_are_kept():
    settings = load_settings(data=config_with(source__headers={"User-Agent": "acme\tconnector 1.0 (+ops)"}))
    assert settings.source.headers["User-Agent"] == "acme\tconnector 1.0 (+ops)"
    basic = load_settings(data=config_with(source__auth={"type": "basic", "username": "jörg", "password": "pässwörd !"}))
    assert basic.source.auth.password.get_secret_value() == "pässwörd !"


# 13.2 Relative paths follow the config file's folder, not the current one.


def test_relative_paths_follow_the_config_file_not_the_current_folder(tmp_path, sandbox):
    home, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    h = Harness(home, sandbox)
    try:
        h.write([item("A"), item("B")])
        h.data["source"]["path"] = "interviews.json"
        h.data["state"]["path"] = "state/connector.db"
        config = h.config_file()
        result = run_cli("--config", str(config), "sync", cwd=elsewhere)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (home / "state" / "connector.db").is_file()
        status = run_cli("--config", "../etc/config.toml", "status", "--json", cwd=elsewhere)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["events"] == {"synced": 2}
        assert list(elsewhere.iterdir()) == []  # no stray database, no stray anything
    finally:
        h.close()


def test_env_overrides_and_data_follow_the_same_rule(tmp_path, monkeypatch):
    home = tmp_path / "etc"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    config = write(home, GOOD + '[state]\npath = "db/connector.db"\n')
    settings = load_settings(config)
    assert settings.state.path == home / "db" / "connector.db" and settings.source.path == home / "x.json"
    assert load_settings(Path("etc/config.toml")).state.path == home / "db" / "connector.db"
    monkeypatch.setenv("CONNECTOR_STATE__PATH", "other.db")
    assert load_settings(config).state.path == home / "other.db"
    monkeypatch.setenv("CONNECTOR_STATE__PATH", str(tmp_path / "abs.db"))
    assert load_settings(config).state.path == tmp_path / "abs.db"
    monkeypatch.delenv("CONNECTOR_STATE__PATH")
    # No file: the current folder, made absolute at load time.
    from_data = load_settings(data={"jobylon": {"app_id": "a", "app_key": "k"}, "source": {"kind": "file", "path": "x.json"}})
    assert from_data.source.path == tmp_path / "x.json" and from_data.state.path == tmp_path / "state" / "connector.db"


def test_example_config_finds_its_sample_data_from_any_folder(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(tmp_path)
    settings = load_settings(repo / "config.example.toml")
    assert settings.source.path == repo / "examples" / "interviews.json" and settings.source.path.is_file()
    assert settings.state.path == repo / "state" / "connector.db"


def test_demo_kept_in_a_relative_folder_is_usable_from_anywhere(tmp_path):
    result = run_cli("demo", "--keep", "kept", cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = tmp_path / "kept"
    assert (kept / "state" / "connector.db").is_file() and not (kept / "kept").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = run_cli("--config", str(kept / "config.toml"), "status", "--json", cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    assert sum(json.loads(status.stdout)["events"].values()) > 0  # the demo's database, not a new one
    assert list(elsewhere.iterdir()) == []
