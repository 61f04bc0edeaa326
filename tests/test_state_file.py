"""A broken state file gets one clear line, exit 5 and no call to Jobylon: garbage, a truncated
file, a read-only file system, a full disk, a folder; read-only commands never create a database.
The file-system cases mount a small tmpfs (root only; under CI a missing mount is a failure)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Harness, item, run_cli

from connector.store import Store

STATE_EXIT = 5


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)]).returncode == 0
    if not mounted:
        if os.environ.get("CI") == "true":
            pytest.fail("cannot mount a tmpfs: these tests need root in CI")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == STATE_EXIT, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def installation(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    h.write([item("A"), item("B")])
    yield h
    h.close()


def test_garbage_bytes_are_a_damaged_database_and_nothing_is_sent(installation):
    h = installation
    db = Path(h.settings.state.path)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite\x00" * 400)
    result = run_cli("--config", str(h.config_file()), "sync")
    one_clear_line(result, str(db), "damaged", "restore the newest backup", "Do not delete it")
    assert h.api_requests() == 0
    assert db.read_bytes().startswith(b"this is not sqlite"), "the damaged file is left as it was, for recovery"


def test_a_truncated_database_is_damaged_and_nothing_is_sent(installation):
    h = installation
    config = h.config_file()
    assert run_cli("--config", str(config), "sync").returncode == 0
    db = Path(h.settings.state.path)
    with db.open("r+b") as handle:
        handle.truncate(db.stat().st_size // 2)
    before = h.api_requests()
    h.write([item("A"), item("B"), item("C")])
    one_clear_line(run_cli("--config", str(config), "sync"), str(db), "damaged")
    assert h.api_requests() == before


def test_a_folder_as_state_path_is_refused_and_keeps_its_mode(installation):
    h = installation
    folder = h.folder / "statedir"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    h.data["state"]["path"] = str(folder)
    one_clear_line(run_cli("--config", str(h.config_file()), "sync"), str(folder), "is a folder")
    assert folder.stat().st_mode & 0o777 == 0o755
    assert h.api_requests() == 0


@pytest.mark.parametrize("command", [["status"], ["failures", "list"], ["plan"], ["status", "--json"]])
def test_read_only_commands_never_create_a_database(installation, command):
    h = installation
    db = Path(h.settings.state.path)
    one_clear_line(run_cli("--config", str(h.config_file()), *command), "no state database at", str(db))
    assert not db.exists() and not db.parent.exists()
    assert h.api_requests() == 0


def test_a_read_only_file_system_is_named_and_nothing_is_sent(installation):
    h = installation
    with tmpfs(h.folder / "ro", "2m") as mount:
        h.data["state"]["path"] = str(mount / "connector.db")
        config = h.config_file()
        assert run_cli("--config", str(config), "sync").returncode == 0
        before = h.api_requests()
        h.write([item("A", title="changed"), item("B"), item("C")])
        remount(mount, "ro")
        one_clear_line(run_cli("--config", str(config), "sync"), "cannot be written", "read-only")
        assert h.api_requests() == before


def test_a_full_disk_mid_pass_keeps_every_call_made_on_record(installation):
    h = installation
    items = [item(f"I{n:04d}", notes="x" * 2000) for n in range(400)]
    h.write(items)
    with tmpfs(h.folder / "small", "400k") as mount:
        db = mount / "connector.db"
        h.data["state"]["path"] = str(db)
        config = h.config_file()
        first = run_cli("--config", str(config), "sync", timeout=120)
        one_clear_line(first, "the disk is full", "free space")
        made = len(h.jobylon_events())
        assert 0 < made < len(items), "the pass stopped part-way when the disk filled"
        remount(mount, "size=64m")
        assert run_cli("--config", str(config), "sync", timeout=120).returncode in (0, 1)
        store = Store(db)
        try:
            mapped = {e.event_id for e in store.events() if e.event_id is not None}
            in_doubt = {f.remote_id for f in store.failures(kind="in_doubt")}
        finally:
            store.close()
        events = h.jobylon_events()
        assert len(events) <= len(items) + len(in_doubt)
        unmapped = [e for e in events if e["id"] not in mapped]
        assert len(unmapped) <= len(in_doubt), "every event in Jobylon is mapped, or the target of an in-doubt create"
        titles = [e["title"] for e in events]
        assert len(titles) - len(set(titles)) <= len(in_doubt), "no interview was created twice, except what is in doubt"
        assert len(mapped) + len(in_doubt) >= len(items), "nothing is lost: every interview is mapped or in doubt"
