"""The state database as a file: owner-only modes, the process lock beside it, a backup copy.

The store owns the tables; this module owns what the operating system sees of them.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

from connector.clock import utcnow
from connector.errors import LockedError


def secure_path(path: Path) -> None:
    """Create the folder 0700 and the database file 0600 before SQLite touches them; SQLite gives
    its -wal and -shm files the database file's mode."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


def backup(conn: sqlite3.Connection, path: Path) -> Path:
    """A consistent copy of the open database beside it, `<name>.bak-<UTC stamp>` (0600)."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.bak-{stamp}")
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
    copy = sqlite3.connect(str(target))
    try:
        conn.backup(copy)
    finally:
        copy.close()
    return target


class ProcessLock:
    """One connector process per state database: an flock on `<db>.lock`, holding the owner's pid."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = db_path.with_name(db_path.name + ".lock")
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        handle = os.fdopen(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600), "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LockedError(
                f"{self.db_path} is in use by connector process {holder}; stop it first (two processes would send the same calls twice)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
