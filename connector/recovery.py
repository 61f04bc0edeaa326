"""What becomes of the calls a stopped process left unfinished, and the crash points that test it.

A process killed mid-call leaves its intent behind (written before the request left, removed with
the outcome). The next pass, holding the process lock, settles each one before it plans:
`settle_orphaned_intents`. `CrashPoint` makes a process kill itself at a chosen point of the call
path, for the crash tests; it is unset in production.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from datetime import datetime

from connector.store import FailureRecord, Intent, Store

ORPHANED_CREATE = "the connector stopped after sending this create and before its answer was recorded; the event may or may not exist in Jobylon"


def settle_orphaned_intents(store: Store, now: datetime) -> list[tuple[Intent, str]]:
    """Intents left by a process that died mid-call (the caller holds the process lock, so no live
    process owns them). A create (POST) may have reached Jobylon: the item becomes `in_doubt`, never
    re-sent by itself, even if the kill came before the request left (that cannot be told apart
    safely). An update or delete is idempotent: the intent is closed and the next plan repeats it."""
    settled = []
    for intent in store.orphaned_intents():
        if intent.method == "POST":
            failure = FailureRecord(kind="in_doubt", message=ORPHANED_CREATE, request=intent.request, content_hash=intent.content_hash)
            store.record_failure(intent, failure=failure, event_status="in_doubt", now=now)
            settled.append((intent, "in_doubt"))
        else:
            store.close_intent(intent, outcome="interrupted", message="process stopped mid-call; the plan repeats it", now=now)
            settled.append((intent, "repeat"))
    return settled


@dataclass
class CrashPoint:
    """Fault injection for crash tests: `CONNECTOR_CRASH_AT=<when>:<METHOD>:<n>` makes the process
    SIGKILL itself at the n-th call of that method, `after_intent` (intent written, nothing sent)
    or `after_response` (Jobylon answered, outcome not yet written). Unset in production."""

    when: str
    method: str
    count: int
    seen: int = 0

    @classmethod
    def from_env(cls) -> CrashPoint | None:
        spec = os.environ.get("CONNECTOR_CRASH_AT")
        if not spec:
            return None
        when, method, count = spec.split(":")
        return cls(when, method.upper(), int(count))

    def reached(self, when: str, method: str) -> None:
        if method != self.method:
            return
        if when == "after_intent":
            self.seen += 1
        if when == self.when and self.seen == self.count:
            os.kill(os.getpid(), signal.SIGKILL)
