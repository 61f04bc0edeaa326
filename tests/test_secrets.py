"""Secrets never leave: not in logs (text, json, debug), not in CLI output, not in the state
database; files are owner-only; risky settings draw warnings."""

from __future__ import annotations

import json
import os
import stat

from conftest import Harness, JsonServer, item, run_cli

from connector.sandbox.directory import DEMO_APP_KEY, FOREIGN_ORGANIZER

SOURCE_TOKEN = "src-token-SECRET-7f3a9"


def token_api(items):
    """The partner's API: the items for the right bearer token, 401 otherwise."""

    def answer(query, headers):
        if headers.get("Authorization") == f"Bearer {SOURCE_TOKEN}":
            return 200, items
        return 401, {"detail": "no"}

    return JsonServer(answer)


def test_no_secret_in_logs_outputs_or_database(tmp_path, sandbox):
    items = [item("A"), item("B", organizer={"email": FOREIGN_ORGANIZER}), item("C"), item("D", timezone="Nope/Nope")]
    api = token_api(items)
    h = Harness(tmp_path, sandbox)
    h.data["source"] = {"kind": "http", "url": api.url, "auth": {"type": "bearer", "token": SOURCE_TOKEN}}
    try:
        config = h.config_file()
        sandbox.script({"method": "POST", "fault": "apply_then_500"})
        outputs = []
        for log_format in ("text", "json"):
            result = run_cli("--config", str(config), "-v", "--log-format", log_format, "sync")
            outputs += [result.stdout, result.stderr]
        for args in (["status", "--json"], ["plan", "--json"], ["failures", "list", "--all", "--json"], ["check"], ["status"], ["failures"]):
            result = run_cli("--config", str(config), *args)
            outputs += [result.stdout, result.stderr]
        failures = json.loads(run_cli("--config", str(config), "failures", "list", "--all", "--json").stdout)
        assert {f["kind"] for f in failures} == {"permanent", "in_doubt"}
        for failure in failures:
            for extra in ([], ["--json"]):
                result = run_cli("--config", str(config), "failures", "show", str(failure["id"]), *extra)
                outputs += [result.stdout, result.stderr]
        items.append(item("E"))  # a change, so the next pass makes a call with the refused key
        h.data["jobylon"]["app_key"] = "refused-key-SECRET-55"
        refused = run_cli("--config", str(h.config_file()), "-v", "sync")
        assert refused.returncode == 4
        outputs += [refused.stdout, refused.stderr]

        text = "\n".join(outputs)
        assert "created" in text and "in_doubt" in text  # the outputs are real
        for secret in (DEMO_APP_KEY, SOURCE_TOKEN, "refused-key-SECRET-55"):
            assert secret not in text, secret
        state_dir = h.settings.state.path.parent
        for path in state_dir.iterdir():
            data = path.read_bytes()
            for secret in (DEMO_APP_KEY, SOURCE_TOKEN, "refused-key-SECRET-55"):
                assert secret.encode() not in data, (path, secret)
    finally:
        h.close()
        api.stop()


def test_state_files_are_owner_only(harness):
    harness.write([item("A")])
    harness.sync()
    db = harness.settings.state.path
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for path in db.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_warnings_for_tls_off_and_a_readable_config_with_a_secret(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    try:
        h.write([item("A")])
        h.data["jobylon"]["verify_tls"] = False
        config = h.config_file()
        os.chmod(config, 0o644)
        result = run_cli("--config", str(config), "sync")
        assert result.returncode == 0, result.stderr
        assert "jobylon.verify_tls = false" in result.stderr
        assert "readable by other users (mode 0o644) and holds jobylon.app_key" in result.stderr
        os.chmod(config, 0o600)
        assert "readable by other users" not in run_cli("--config", str(config), "sync").stderr
    finally:
        h.close()
