"""Hostile and careless configs: whatever the file or the environment holds, the connector stops with
exit 2 and one `error: ...` line naming the file or key; it never hangs, never reads without bound,
never prints a secret, and never quietly follows the current folder to a new, empty database."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Harness, item, run_cli

from connector.config import load_settings

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
