"""The state database as a file: owner-only modes, the process lock beside it, a backup copy.

The store owns the tables; this module owns what the operating system sees of them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from connector.clock import utcnow
from connector.errors import LockedError, StateError

DAMAGED = ("file is not a database", "malformed", "corrupt", "disk i/o error")
FULL = ("database or disk is full",)
READ_ONLY = ("readonly database", "read-only", "unable to open database file")


def explain(path: Path, exc: BaseException) -> StateError:
    """One line an operator can act on, for an error of the state file or of SQLite on it."""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or any(m in text for m in FULL):
        return StateError(f"state database {path}: the disk is full; free space on that file system and run again (the calls already made are on record)")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or any(m in text for m in READ_ONLY):
        return StateError(
            f"state database {path}: cannot be written (read-only file system or no permission); make it and {path.parent} writable for the connector's user"
        )
    if isinstance(exc, sqlite3.DatabaseError) and any(m in text for m in DAMAGED):
        return StateError(
            f"state database {path} is damaged ({exc}); stop the connector and restore the newest backup "
            f"({path.name}.bak-*) or a file-system backup. Do not delete it: a new, empty database would create every event again"
        )
    return StateError(f"state database {path}: {type(exc).__name__}: {exc}")


def secure_path(path: Path, *, create: bool = True) -> None:
    """Create the folder 0700 and the database file 0600 before SQLite touches them; SQLite gives
    its -wal and -shm files the database file's mode. Without `create`, a missing file is an error
    (read-only commands never make a new, empty database). Only a regular file's mode is changed."""
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise explain(path, exc) from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise StateError(f"state.path {path} is {what}; it must name the database file (e.g. {path / 'connector.db'})")
    if info is None and not create:
        raise StateError(
            f"no state database at {path}: check state.path (a relative path is relative to the config file's folder); `connector sync` creates it"
        )
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        if info is None:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if info is None or stat.S_IMODE(info.st_mode) != 0o600:
            os.chmod(path, 0o600)
    except NotADirectoryError:
        raise StateError(f"state.path {path}: a part of the folder path is a file, not a folder") from None
    except OSError as exc:
        raise explain(path, exc) from None


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


class HeldFor:
    """`with lock.held_for(wait=...):` for a lock with `acquire(**options)` and `release()`."""

    def acquire(self, *, wait: float = 0.0, on_wait: Callable[[str], None] | None = None, give_up: Callable[[], bool] | None = None, poll: float = 0.1) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    @contextmanager
    def held_for(self, **acquire: Any) -> Iterator[None]:
        self.acquire(**acquire)
        try:
            yield
        finally:
            self.release()


class ProcessLock(HeldFor):
    """One writer at a time per state database: an flock on `<db><suffix>`, holding the owner's pid.

    Two locks use it (docs/design.md §7): the *pass lock* (`.lock`), held by whoever runs a pass or
    repairs a mapping, only while it does; and the *service lock* (`.service.lock`), held by
    `connector run` for its lifetime so a second service on the same database refuses to start.
    """

    def __init__(self, db_path: Path, suffix: str = ".lock", *, what: str = "in use by connector process") -> None:
        self.db_path = db_path
        self.path = db_path.with_name(db_path.name + suffix)
        self.what = what
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def acquire(
        self,
        *,
        wait: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
        give_up: Callable[[], bool] | None = None,
        poll: float = 0.1,
    ) -> None:
        """Take the lock, waiting up to `wait` seconds for its holder (`on_wait` is told once who
        that is); `give_up` ends the wait early. A lock not had in time is a LockedError."""
        try:
            handle = os.fdopen(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600), "r+")
        except OSError as exc:
            raise explain(self.db_path, exc) from None
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline or (give_up is not None and give_up()):
                    handle.close()
                    raise LockedError(f"{self.db_path} is {self.what} {self.holder()}" + (f" (waited {wait:g} s)" if wait else "")) from None
                if on_wait is not None and not told:
                    on_wait(self.holder())
                    told = True
                time.sleep(poll)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
