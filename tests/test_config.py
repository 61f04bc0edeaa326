"""Config errors exit 2 with one message naming the key; env overrides; secrets stay secret."""

from conftest import run_cli

from connector.config import load_settings

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
