"""`connector check` refuses what the service would trip over (a bad cron, an unknown default zone, a
blank app key), and a port already in use is one line and exit 2, never a traceback (issue 13, 8-9)."""

from __future__ import annotations

import socket

import pytest
from conftest import Harness, item, run_cli

from connector.sandbox.directory import DEMO_APP_ID


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
