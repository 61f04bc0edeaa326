"""Config errors exit 2 with one message naming the key; env overrides; secrets stay secret."""

import logging

import pytest
from conftest import invoke_cli, run_cli

from connector.config import load_settings
from connector.errors import ConfigError

GOOD = """
[jobylon]
app_id = "demo-app"
app_key = "supersecret-key-123"
[source]
kind = "file"
path = "x.json"
"""


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_unknown_key_wrong_type_and_missing_key_are_named(tmp_path):
    path = write(tmp_path, '[jobylon]\napp_id = "a"\napp_kye = "x"\ntimeout_seconds = "fast"\n[source]\nkind = "file"\npath = "x"\n[sync]\nconcurency = 2\n')
    result = run_cli("--config", str(path), "sync")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for expected in (
        "jobylon.app_kye: unknown key",
        "jobylon.app_key: required key is missing",
        "jobylon.timeout_seconds: Input should be a valid number",
        "sync.concurency: unknown key",
    ):
        assert expected in result.stderr, result.stderr


def test_wrong_choice_and_bad_jmespath_are_named(tmp_path):
    path = write(tmp_path, GOOD + '[sync]\non_fixed_field_change = "ignore"\n[mapping]\ntitle = "a[["\n')
    result = run_cli("--config", str(path), "plan")
    assert result.returncode == 2
    assert "sync.on_fixed_field_change: Input should be 'recreate' or 'report'" in result.stderr
    assert "mapping.title: not a valid JMESPath expression" in result.stderr


def test_missing_file_and_invalid_toml(tmp_path):
    assert run_cli("--config", str(tmp_path / "nope.toml"), "sync").returncode == 2
    result = run_cli("--config", str(write(tmp_path, "[jobylon\n")), "sync")
    assert result.returncode == 2 and "not valid TOML" in result.stderr


def test_env_overrides_file_and_unknown_env_key_is_an_error(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("CONNECTOR_JOBYLON__APP_KEY", "from-env-key")
    monkeypatch.setenv("CONNECTOR_SYNC__CONCURRENCY", "9")
    settings = load_settings(path)
    assert settings.jobylon.app_key.get_secret_value() == "from-env-key"
    assert settings.sync.concurrency == 9
    monkeypatch.setenv("CONNECTOR_SYNC__CONCURENCY", "9")
    result = run_cli("--config", str(path), "sync", env={"CONNECTOR_SYNC__CONCURENCY": "9"})
    assert result.returncode == 2 and "sync.concurency: unknown key" in result.stderr


def test_secret_never_printed_in_config_errors(tmp_path):
    path = write(tmp_path, GOOD.replace('app_id = "demo-app"', "app_id = 5") + "[alerts]\nwebhook_url = 7\n")
    result = run_cli("--config", str(path), "sync")
    assert result.returncode == 2
    assert "supersecret-key-123" not in result.stderr + result.stdout
    assert "supersecret-key-123" not in repr(
        load_settings(data={"jobylon": {"app_id": "a", "app_key": "supersecret-key-123"}, "source": {"kind": "file", "path": "x"}})
    )


# Issue 13, item 8: what the service would trip over is refused at load, by every command; an
# environment value's problem names its variable; a range error shows the limit and the value.


def private(path):
    path.chmod(0o600)  # no warning about a readable file holding the app key
    return path


def test_bad_cron_and_unknown_default_zone_are_refused_at_load_by_every_command(tmp_path):
    path = private(write(tmp_path, GOOD + '[sync]\ncron = "61 * * * *"\n[mapping.defaults]\ntimezone = "Europe/Stockholmm"\n'))
    for command in ("status", "plan", "check"):
        result = invoke_cli("--config", str(path), command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "sync.cron: not a valid crontab expression '61 * * * *'" in result.stderr
        assert "mapping.defaults.timezone: unknown IANA time zone 'Europe/Stockholmm'" in result.stderr
    result = run_cli("--config", str(path), "run")
    assert result.returncode == 2 and "sync.cron: not a valid crontab expression" in result.stderr


def test_an_environment_value_out_of_range_names_the_variable_and_the_value_not_the_file(tmp_path):
    path = private(write(tmp_path, GOOD))
    result = invoke_cli("--config", str(path), "check", env={"CONNECTOR_SYNC__CONCURRENCY": "100"})
    assert result.returncode == 2
    assert "sync.concurrency: Input should be less than or equal to 64 (got '100' from CONNECTOR_SYNC__CONCURRENCY)" in result.stderr
    assert result.stderr.startswith("error: the environment: invalid configuration")
    assert str(path) not in result.stderr, "the file is not where the problem is"
    result = invoke_cli("--config", str(path), "check", env={"CONNECTOR_JOBYLON__APP_KEY": " "})
    assert result.returncode == 2 and "jobylon.app_key: is empty (from CONNECTOR_JOBYLON__APP_KEY)" in result.stderr


def test_problems_in_the_file_and_the_environment_name_both(tmp_path, monkeypatch):
    path = private(write(tmp_path, GOOD + "[retry]\nattempts = 0\n"))
    monkeypatch.setenv("CONNECTOR_SYNC__MAX_DELETE_FRACTION", "1.5")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(f"{path} and the environment: invalid configuration (2 problems)"), message
    assert "retry.attempts: Input should be greater than or equal to 1 (got 0)" in message
    assert "sync.max_delete_fraction: Input should be less than or equal to 1 (got '1.5' from CONNECTOR_SYNC__MAX_DELETE_FRACTION)" in message


def test_values_are_shown_for_plain_keys_and_never_for_secrets():
    data = {
        "jobylon": {"app_id": "demo-app", "app_key": 987654321},
        "source": {"kind": "http", "url": "http://127.0.0.1:9/x", "auth": {"type": "bearer", "token": 123454321}},
        "sync": {"concurrency": 0, "past_events": "delete"},
        "alerts": {"webhook_url": 55566677},
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(data=data)
    message = str(caught.value)
    assert "sync.concurrency: Input should be greater than or equal to 1 (got 0)" in message
    assert "sync.past_events: Input should be 'ignore' (got 'delete')" in message
    for key in ("jobylon.app_key", "source.auth.token", "alerts.webhook_url"):
        assert f"{key}: Input should be a valid string (got int)" in message, message
    for secret in ("987654321", "123454321", "55566677"):
        assert secret not in message


def test_an_unknown_connector_variable_is_a_warning_naming_it(tmp_path, monkeypatch, caplog):
    path = private(write(tmp_path, GOOD))
    monkeypatch.setenv("CONNECTOR_SYNC_INTERVAL", "value-never-shown")
    monkeypatch.setenv("CONNECTOR_CRASH_AT", "after_intent:POST:99")
    monkeypatch.setenv("CONNECTOR_CONFIG", str(path))
    monkeypatch.setenv("CONNECTOR_SYNC__CONCURRENCY", "3")
    with caplog.at_level(logging.WARNING, logger="connector.config"):
        settings = load_settings()
    assert settings.sync.concurrency == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("CONNECTOR_SYNC_INTERVAL: unknown environment variable, ignored")
    assert "value-never-shown" not in caplog.text
