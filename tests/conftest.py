"""Shared fixtures: a real sandbox on 127.0.0.1, a real SQLite file, a file source to edit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pg import pg_database, server_url, state_section  # noqa: F401  (fixtures for every test module)

from connector.config import Settings, load_settings
from connector.engine import Engine, PassOptions, build_redactor
from connector.results import PassResult
from connector.sandbox import SandboxServer
from connector.sandbox.directory import DEMO_APP_ID, DEMO_APP_KEY
from connector.store import Store, open_store

FAST_RETRY = {
    "attempts": 4,
    "backoff_initial_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "retry_after_max_seconds": 2,
    "failed_item_backoff_seconds": [60, 300],
}


# A valid create body and its update body, as the Jobylon client sends them.
CREATE_BODY: dict[str, Any] = {
    "title": "t",
    "description": "",
    "duration": 30,
    "start_time": "2030-01-01T10:00:00",
    "timezone": "Europe/Stockholm",
    "organizer": "recruiter@acme.example",
    "participants": [1001],
}
UPDATE_BODY = {k: CREATE_BODY[k] for k in ("title", "description", "duration", "start_time", "timezone")}


def item(remote_id: str, *, days: int = 3, hour: int = 10, minutes: int = 60, apps=(1001,), **changes: Any) -> dict[str, Any]:
    """A valid raw source item in the default mapping's shape."""
    day = date.today() + timedelta(days=days)
    raw = {
        "id": remote_id,
        "title": f"Interview {remote_id}",
        "notes": "",
        "start_at": f"{day.isoformat()}T{hour:02d}:00:00",
        "minutes": minutes,
        "timezone": "Europe/Stockholm",
        "organizer": {"email": "recruiter@acme.example"},
        "candidates": [{"jobylon_application_id": a} for a in apps],
        "status": "scheduled",
    }
    raw.update(changes)
    return raw


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


class Harness:
    """One connector installation: config, source file, state database, engine — against a sandbox."""

    def __init__(self, folder: Path, sandbox: SandboxServer, **sections: dict[str, Any]) -> None:
        self.folder = folder
        self.sandbox = sandbox
        self.source_path = folder / "interviews.json"
        self.write([])
        self.data: dict[str, Any] = {
            "jobylon": {"base_url": sandbox.url, "app_id": DEMO_APP_ID, "app_key": DEMO_APP_KEY, "max_requests_per_second": 1000, "timeout_seconds": 5},
            "source": {"kind": "file", "path": str(self.source_path), "format": "json"},
            "mapping": {"duration_minutes": "minutes", "end": ""},
            "sync": {"concurrency": 2},
            "retry": dict(FAST_RETRY),
            "state": {"path": str(folder / "state" / "connector.db")},
        }
        for name, values in sections.items():
            self.data.setdefault(name, {}).update(values)
        self._engine: Engine | None = None
        self._store: Store | None = None

    def write(self, items: list[Any]) -> None:
        self.source_path.write_text(json.dumps(items))

    @property
    def settings(self) -> Settings:
        return load_settings(data=self.data)

    def config_file(self) -> Path:
        """The same config as a TOML file, for subprocess runs of the CLI."""
        lines = []
        for section, values in self.data.items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {toml_value(value)}")
        path = self.folder / "config.toml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    @property
    def store(self) -> Store:
        if self._store is None:
            settings = self.settings
            self._store = open_store(settings.state, redactor=build_redactor(settings))
        return self._store

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.settings, self.store)
        return self._engine

    def sync(self, **options: Any) -> PassResult:
        options.setdefault("full", True)
        return self.engine.run_pass(PassOptions(**options))

    def reset_engine(self) -> None:
        """Drop the engine so the next one reads the current `data`."""
        if self._engine is not None:
            self._engine.close()
        self._engine = None

    def close(self) -> None:
        self.reset_engine()
        if self._store is not None:
            self._store.close()
            self._store = None

    def jobylon_events(self) -> list[dict[str, Any]]:
        return self.sandbox.events(DEMO_APP_ID)

    def api_requests(self) -> int:
        return self.sandbox.stats()["requests"]


@pytest.fixture
def sandbox():
    with SandboxServer(port=0, retry_after_seconds=1, seed=1).start() as server:
        yield server


@pytest.fixture
def harness(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    yield h
    h.close()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real CLI in a real process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CONNECTOR_CONFIG", None) if env is None or "CONNECTOR_CONFIG" not in env else None
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


@dataclass
class CliOutcome:
    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str, env: dict[str, str] | None = None) -> CliOutcome:
    """The CLI in this process through click's CliRunner, for commands that need no process of
    their own; the root logger's handlers (pytest's capture among them) are put back after."""
    from click.testing import CliRunner

    from connector.cli import cli

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(cli, list(args), env={"CONNECTOR_CONFIG": None, **(env or {})}, catch_exceptions=False)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    return CliOutcome(result.exit_code, result.stdout, result.stderr)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class VendorServer:
    """A partner's API on 127.0.0.1: `answer(path, query, headers, base_url)` -> (status, JSON body,
    extra headers). Every request is kept in `requests` (path, query, headers)."""

    def __init__(self, answer: Any) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        outer = self
        self.requests: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                outer.requests.append({"path": parts.path, "query": query, "headers": dict(self.headers)})
                status, document, headers = answer(parts.path, query, self.headers, outer.base)
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class JsonServer(VendorServer):
    """A partner API on 127.0.0.1 for source tests: `answer(query, headers)` -> (status, JSON body),
    at `url` (`/interviews`)."""

    def __init__(self, answer: Any) -> None:
        super().__init__(lambda path, query, headers, base: (*answer(query, headers), {}))
        self.url = f"{self.base}/interviews"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL server's SQLAlchemy URL (`tests/pg.py`: skipped without one, a failure under CI)."""
    return server_url()
