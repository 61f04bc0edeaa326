"""Shared set-up for the benchmarks: generated interviews, a config file, a sandbox subprocess on
127.0.0.1, and a measured `connector` subprocess. Nothing here reaches beyond loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
APP_ID, APP_KEY = "demo-app", "demo-key-0123456789"


def interview(number: int, *, title: str | None = None, updated_at: str | None = None) -> dict[str, Any]:
    """A realistic raw item in the default mapping's shape (nested organizer, candidates list)."""
    day = date(2030, 1, 1) + timedelta(days=number % 365)
    item = {
        "id": f"INT-{number}",
        "title": title or f"Interview {number}",
        "notes": "Video call with the team lead.",
        "start_at": f"{day.isoformat()}T{8 + number % 9:02d}:{15 * (number % 4):02d}:00",
        "minutes": 30 + 15 * (number % 4),
        "timezone": ("Europe/Stockholm", "Europe/London", "America/New_York")[number % 3],
        "organizer": {"email": ("recruiter@acme.example", "talent@globex.example")[number % 2]},
        "candidates": [{"name": "Candidate", "jobylon_application_id": 1000 + number % 5000}],
        "location": None,
        "video": True,
        "status": "scheduled",
    }
    if updated_at:
        item["updated_at"] = updated_at
    return item


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sandbox:
    """`connector sandbox` in its own process, so it does not share the connector's GIL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "sandbox", "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.get("/_sandbox/stats")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def requests(self) -> int:
        return int(self.get("/_sandbox/stats")["requests"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def write_config(folder: Path, sandbox_url: str, source: dict[str, Any], **sections: dict[str, Any]) -> Path:
    data: dict[str, dict[str, Any]] = {
        "jobylon": {"base_url": sandbox_url, "app_id": APP_ID, "app_key": APP_KEY, "max_requests_per_second": 100000, "timeout_seconds": 30},
        "source": source,
        "mapping": {"duration_minutes": "minutes", "end": ""},
        "sync": {"concurrency": 8, "max_deletes": 1000000, "max_delete_fraction": 1.0},
        "retry": {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 1, "circuit_breaker_failures": 1000},
        "state": {"path": str(folder / "state" / "connector.db")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    lines = []
    for name, values in data.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@dataclass
class Timed:
    """One measured process: wall seconds, peak RSS in MB and CPU seconds (user + system; -1 without
    GNU time), exit code, the epoch times (time.time()) just before it was started and just after it
    ended, its stdout. CPU time is blurred far less than wall time by other work on the machine."""

    wall: float
    rss_mb: int
    code: int
    started_at: float
    ended_at: float
    stdout: str = ""
    cpu_s: float = -1.0


def byte_compile(*checkouts: str | Path | None) -> None:
    """Write the .pyc files of the connector in each checkout (this one when none is given), as
    `pip install` does for an installed copy. An editable checkout run with PYTHONDONTWRITEBYTECODE
    set (as on this project's machines) would otherwise compile every module from source at each
    start, about 80 ms that no partner's installed connector spends."""
    import compileall

    for checkout in checkouts or (ROOT,):
        if checkout is not None:
            compileall.compile_dir(str(Path(checkout) / "connector"), quiet=1)


def run_process(command: list[str], *, capture_stdout: bool = False, pythonpath: str | None = None) -> Timed:
    """Run `command` to its end, timed from outside as a partner's cron would see it.

    The peak RSS comes from GNU time (`/usr/bin/time -f %M`) so that it is the process's own:
    the rusage of a child forked from this (large) benchmark process would count the parent's
    pages it started with. `pythonpath` runs another checkout of the connector (a baseline)."""
    env = measured_env(pythonpath)
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        command = [str(gnu_time), "-f", "MAXRSS_KB=%M CPU_S=%U %S", *command]
    started_at = time.time()
    started = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - started
    ended_at = time.time()
    marks = [line for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB=")]
    rss_mb, cpu_s = -1, -1.0
    if marks:
        rss, cpu = marks[-1].split(" CPU_S=")
        rss_mb = int(rss.split("=")[1]) // 1024
        cpu_s = sum(float(part) for part in cpu.split())
    return Timed(wall, rss_mb, proc.returncode, started_at, ended_at, proc.stdout or "", cpu_s)


def measured_env(pythonpath: str | None = None) -> dict[str, str]:
    """The environment of a measured process. PYTHONSAFEPATH: `python -m connector` would otherwise
    put the working directory first on sys.path, so that a bench started from the repository root
    ran this checkout's connector as the baseline too."""
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
    env["PYTHONSAFEPATH"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def check_checkouts(*checkouts: str | Path | None) -> None:
    """Stop unless each checkout's `python -m connector` imports that checkout's code."""
    for checkout in (ROOT, *checkouts):
        if checkout is None:
            continue
        env = measured_env(None if checkout == ROOT else str(checkout))
        found = subprocess.run([sys.executable, "-c", "import connector; print(connector.__file__)"], capture_output=True, text=True, env=env).stdout.strip()
        if not Path(found).resolve().is_relative_to(Path(checkout).resolve()):
            raise SystemExit(f"the connector measured for {checkout} would be {found}")


def run_connector(config: Path, *args: str) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB of that process alone, exit code) of one `connector` run."""
    timed = run_process([sys.executable, "-m", "connector", "--config", str(config), *args])
    return timed.wall, timed.rss_mb, timed.code


def median_spread(values: list[float]) -> tuple[float, float]:
    """The median and the spread (max - min) of repeated measurements."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return median, ordered[-1] - ordered[0]


def load() -> str:
    """The load average and core count, to say when other work on the machine may blur a figure."""
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1 / 5 min) on {os.cpu_count()} cores"


def last_run(config: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CONFIG"}
    out = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(config), "status", "--json", "--runs", "1"], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout)["runs"][0]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"


def report(name: str, columns: list[str], rows: list[list[Any]], summary: dict[str, Any]) -> None:
    """A table for people, then one JSON line for scripts."""
    table = Table(title=f"{name} ({machine()})")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=160).print(table)
    print(json.dumps({"bench": name, **summary}))
