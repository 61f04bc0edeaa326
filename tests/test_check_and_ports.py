"""`connector check` refuses what the service would trip over (a bad cron, an unknown default zone, a
blank app key), and a port already in use is one line and exit 2, never a traceback (issue 13, 8-9)."""

from __future__ import annotations

import socket

import pytest
from conftest import Harness, item, run_cli

from connector.sandbox.directory import DEMO_APP_ID


def assert_config_error(result, *expected: str) -> None:
    """Exit 2, one `error: ...` message (a config's problems are listed under its heading), no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("error: ") == 1, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def assert_one_line_exit_2(result, line: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == line, result.stderr


@pytest.fixture
def listening():
    """A port on 127.0.0.1 that something else is listening on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


# 8. `connector check` says "config is valid" only for a config the service can run with.


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("sync", {"cron": "every five minutes"}, "sync.cron: not a valid crontab expression 'every five minutes'"),
        ("sync", {"cron": "0 0 30 2 *"}, "sync.cron: the crontab expression '0 0 30 2 *' never fires"),
        ("mapping", {"defaults": {"timezone": "Nowhere/Land"}}, "mapping.defaults.timezone: unknown IANA time zone 'Nowhere/Land'"),
        ("jobylon", {"app_key": ""}, "jobylon.app_key: is empty"),
    ],
    ids=["cron-words", "cron-never-fires", "default-zone", "blank-app-key"],
)
def test_check_refuses_what_the_service_would_trip_over(tmp_path, sandbox, section, values, expected):
    h = Harness(tmp_path, sandbox, **{section: values})
    try:
        h.write([item("A")])
        result = run_cli("--config", str(h.config_file()), "check")
        assert_config_error(result, expected)
        assert "config is valid" not in result.stdout
        assert sandbox.stats()["requests"] == 0, "nothing reaches Jobylon"
    finally:
        h.close()


def test_check_shows_the_schedule_and_that_cron_runs_in_utc(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox, sync={"cron": "0 * * * *"})
    try:
        h.write([item("A")])
        result = run_cli("--config", str(h.config_file()), "check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "schedule: cron '0 * * * *' in UTC; next runs at " in result.stdout
        assert result.stdout.count(":00 UTC") == 2, result.stdout
        h.data["sync"] = {"interval_seconds": 120, "jitter_seconds": 5}
        result = run_cli("--config", str(h.config_file()), "check")
        assert "schedule: every 120 s plus up to 5 s of jitter" in result.stdout, result.stdout
    finally:
        h.close()


# 9. A port in use: one line naming the address and where the port came from, exit 2 (systemd's
# RestartPreventExitStatus=2 keeps a service that cannot listen from a restart loop).


def test_sandbox_on_a_port_in_use_is_one_line_and_exit_2(listening):
    result = run_cli("sandbox", "--port", str(listening), timeout=30)
    assert_one_line_exit_2(result, f"error: 127.0.0.1:{listening} is already in use (--port); choose another port or stop what holds it")


def test_sandbox_port_out_of_range_is_a_usage_error():
    result = run_cli("sandbox", "--port", "70000", timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "port must be 0..65535, not 70000" in result.stderr


def test_sandbox_server_raises_a_plain_oserror_naming_the_address(listening):
    from connector.sandbox import SandboxServer
    from connector.sandbox.server import SandboxBindError

    with pytest.raises(SandboxBindError) as caught:
        SandboxServer(port=listening)
    assert isinstance(caught.value, OSError)
    assert str(caught.value) == f"127.0.0.1:{listening} is already in use; choose another port or stop what holds it"


def test_run_with_the_metrics_port_in_use_is_one_line_exit_2_and_sends_nothing(tmp_path, sandbox, listening):
    h = Harness(tmp_path, sandbox, observability={"metrics_port": listening})
    try:
        h.write([item("A")])
        result = run_cli("--config", str(h.config_file()), "run", timeout=60)
        assert_one_line_exit_2(
            result, f"error: 127.0.0.1:{listening} is already in use (observability.metrics_port); choose another port or stop what holds it"
        )
        assert sandbox.events(DEMO_APP_ID) == [], "no pass ran"
        # the service lock died with the process: a sync now works
        result = run_cli("--config", str(h.config_file()), "sync")
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        h.close()


def test_metrics_server_on_a_port_in_use_is_a_config_error(listening):
    from connector.errors import ConfigError, ExitCode
    from connector.metrics import Metrics, MetricsServer

    with pytest.raises(ConfigError) as caught:
        MetricsServer(Metrics(), listening, interval_seconds=10)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert str(caught.value) == f"127.0.0.1:{listening} is already in use (observability.metrics_port); choose another port or stop what holds it"
