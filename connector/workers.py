"""What the workers of one pass share: the threads that take the calls in turn, the circuit breaker
counting their consecutive transient failures, and the answered call each of them carries.

A worker carries a successful call's outcome (`Answered`) into the transaction of its next intent
(`Store.write_intent(settle=...)`): one turn at the store lock and one commit per call instead of
two. Eight workers whose answers arrive together queued for that lock; halving the turns cut the
wait per call by 40% (docs/performance.md)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from connector.store import Answered


class CircuitBreaker:
    """Counts consecutive transient failures across the workers of one pass."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._count = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._count = 0

    def failed(self) -> int | None:
        """Count one transient failure; the run length when it opens the circuit, else None."""
        with self._lock:
            self._count += 1
            return self._count if self._count >= self.threshold else None


class Carried:
    """Each worker thread's answered call whose outcome is not written yet; outside a worker
    (`carrying` is False) outcomes are written as they come."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def carrying(self) -> bool:
        return bool(getattr(self._local, "carrying", False))

    def start(self) -> None:
        self._local.carrying, self._local.answered = True, None

    def stop(self) -> None:
        self._local.carrying = False

    def put(self, answered: Answered) -> None:
        self._local.answered = answered

    def take(self) -> Answered | None:
        answered: Answered | None = getattr(self._local, "answered", None)
        self._local.answered = None
        return answered


def run_in_threads(work: Callable[[], None], workers: int, *, interrupted: Callable[[], None]) -> None:
    """`work` on `workers` threads until each returns; on Ctrl-C, `interrupted()` (start no new call)
    and wait for the calls in flight."""
    # The workers mostly wait on Jobylon; hand the GIL to one whose answer arrived sooner than
    # the default 5 ms, or each call waits for a busy neighbour on top of its latency.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, 0.0005))
    threads = [threading.Thread(target=work, name=f"sync-{number}") for number in range(workers)]
    try:
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            interrupted()
            for thread in threads:
                thread.join()
            raise
    finally:
        sys.setswitchinterval(switch)
