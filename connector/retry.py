"""How hard to try: tenacity policies for Jobylon calls, Retry-After, the request rate limiter, and the
backoff schedule for items that keep failing across polls."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from connector.config import RetryConfig
from connector.errors import TransientError

if TYPE_CHECKING:
    from tenacity import RetryCallState


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(when.tzinfo)
    return max(0.0, (when - now).total_seconds())


class _WaitHonouringRetryAfter:
    """Exponential backoff with full jitter, unless the server said how long to wait."""

    def __init__(self, config: RetryConfig) -> None:
        from tenacity import wait_random_exponential

        self._backoff = wait_random_exponential(multiplier=config.backoff_initial_seconds, max=config.backoff_max_seconds)
        self._retry_after_max = config.retry_after_max_seconds

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self._retry_after_max)
        return float(self._backoff(state))


def call_with_retries(
    fn: Callable[[], Any],
    config: RetryConfig,
    *,
    retryable: Callable[[BaseException], bool] = lambda exc: isinstance(exc, TransientError),
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Any:
    """Run `fn`, retrying the exceptions `retryable` accepts; the last one is re-raised.

    The first attempt runs on its own: most calls succeed at once, and building tenacity's policy
    for every call cost more CPU than the call's records in the state database (tenacity is not
    even imported until something fails). A failure that may be retried is handed to tenacity as
    its attempt 1, so the waits, the stop and `before_sleep` are tenacity's, as before."""
    try:
        return fn()
    except BaseException as exc:
        if config.attempts <= 1 or not retryable(exc):
            raise
        first: BaseException = exc
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    pending = [first]

    def attempt() -> Any:
        if pending:
            raise pending.pop()  # attempt 1, already made
        return fn()

    retrying = Retrying(
        stop=stop_after_attempt(config.attempts),
        wait=_WaitHonouringRetryAfter(config),
        retry=retry_if_exception(retryable),
        reraise=True,
        sleep=sleep,
        before_sleep=before_sleep,
    )
    return retrying(attempt)


class RateLimiter:
    """At most `rate` calls in any one-second window, across threads, as Jobylon counts them.

    Calls are paced at 1/rate apart on average, but up to BURST_SECONDS worth of calls (at least
    one) may go at once: workers whose answers arrive together do not queue behind each other for
    a millisecond each when the limit is far away (R = 1000 with 8 workers). A thread that wakes
    late, or a request delayed on its way, could still bunch up with the next one at the receiving
    end, so the times calls actually went out are also kept for the last WINDOW seconds, a little
    over one second, and a call waits until it is at most the rate-th in that window. The margin
    absorbs a few milliseconds of scheduling jitter at a cost of about 3% of the peak rate."""

    WINDOW = 1.03
    BURST_SECONDS = 0.05

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate
        self._window = max(1, int(rate))
        self._tolerance = (max(1, int(rate * self.BURST_SECONDS)) - 1) * self._interval  # a burst's head start
        self._sent: deque[float] = deque()
        self._due = 0.0  # when the next call would go out if calls were spaced evenly
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            due = max(now, self._due)
            self._due = due + self._interval
        wait = due - self._tolerance - now
        if wait > 0:
            self._sleep(wait)
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.WINDOW:
                    self._sent.popleft()
                if len(self._sent) < self._window:
                    self._sent.append(now)
                    return
                wait = self.WINDOW - (now - self._sent[0])
                self._sleep(wait)  # holding the lock: everyone else waits behind this call anyway


def next_attempt_at(attempts: int, schedule: list[float], now: datetime) -> datetime:
    """When an item that failed transiently `attempts` times may be tried again: the schedule's
    n-th step, its last step repeating."""
    step = schedule[min(max(attempts, 1), len(schedule)) - 1]
    return now + timedelta(seconds=step)
