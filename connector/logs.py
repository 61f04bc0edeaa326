"""Log set-up: one line per record as text or JSON, secrets masked, control characters escaped."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from connector.redact import RedactingFilter, Redactor

FIELDS = ("event", "remote_id", "event_id", "action", "outcome", "duration_ms", "run_id")


def _escape(text: str) -> str:
    """Keep one record on one line: a newline from a source field cannot forge a log line."""
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\x1b", "\\x1b")


class SchedulerWords(logging.Filter):
    """APScheduler's 'Execution of job "sync pass ..." skipped: maximum number of running instances
    reached (1)', which it logs whenever a poll comes due while the pass is still running, said
    in our words instead: one line per skipped poll, naming the cause and what follows."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("apscheduler") and "maximum number of running instances" in str(record.msg):
            record.name = "connector.daemon"
            record.msg = (
                "poll skipped: the previous pass is still running (passes never overlap; the next poll is on schedule). "
                "If this repeats, a pass takes longer than the schedule's interval"
            )
            record.args = ()
            record.event = "poll_skipped"
        return True


class TextFormatter(logging.Formatter):
    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one stamp per second: a pass logs hundreds of lines in each
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            self._second = second
        line = f"{self._stamp} {record.levelname:<7} {_escape(record.getMessage())}"
        if record.exc_info:
            line += " | " + _escape(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        data.setdefault("event", "log")
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(fmt: str = "text", level: str = "INFO", redactor: Redactor | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SchedulerWords())
    handler.addFilter(RedactingFilter(redactor or Redactor()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # No line shows the caller's file and line, its thread or its process: a pass logs a line per
    # call, so do not look them up for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # urllib3's debug lines print whole URLs, query strings included: never let them through.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
