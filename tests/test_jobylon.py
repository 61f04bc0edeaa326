"""JobylonClient: which failures are repeated, and the typed errors, over real HTTP."""

from __future__ import annotations

import time

import pytest
from conftest import CREATE_BODY, UPDATE_BODY

from connector.config import load_settings
from connector.errors import AuthError, InDoubtError, NotFoundError, PermanentError, TransientError
from connector.jobylon import JobylonClient
from connector.retry import RateLimiter, parse_retry_after
from connector.sandbox.directory import DEMO_APP_ID, DEMO_APP_KEY

BODY, UPDATE = CREATE_BODY, UPDATE_BODY


def client(url, key=DEMO_APP_KEY, **retry):
    settings = load_settings(
        data={
            "jobylon": {"base_url": url, "app_id": DEMO_APP_ID, "app_key": key, "max_requests_per_second": 1000, "timeout_seconds": 2},
            "source": {"kind": "file", "path": "x"},
            "retry": {"attempts": 3, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02, **retry},
        }
    )
    return JobylonClient(settings.jobylon, settings.retry)


def posts(sandbox):
    return sum(1 for r in sandbox.requests_log() if r["method"] == "POST")


@pytest.mark.parametrize("fault", ["500", "apply_then_500", "drop"])
def test_post_with_unknown_outcome_is_in_doubt_and_not_repeated(sandbox, fault):
    sandbox.script({"method": "POST", "fault": fault})
    with pytest.raises(InDoubtError):
        client(sandbox.url).create(BODY)
    assert posts(sandbox) == 1


@pytest.mark.parametrize("fault", ["429", "503"])
def test_post_is_repeated_when_surely_not_processed(sandbox, fault):
    sandbox.script({"method": "POST", "fault": fault, "retry_after": 0})
    assert client(sandbox.url).create(BODY) == 1
    assert posts(sandbox) == 2


def test_post_connect_error_is_retried_then_transient():
    started = time.monotonic()
    with pytest.raises(TransientError, match="could not connect"):
        client("http://127.0.0.1:9").create(BODY)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("fault", ["500", "drop", "apply_then_500", "503"])
def test_put_and_delete_are_retried_on_every_transient_error(sandbox, fault):
    c = client(sandbox.url)
    event_id = c.create(BODY)
    sandbox.script({"method": "PUT", "fault": fault, "retry_after": 0}, {"method": "DELETE", "fault": fault, "retry_after": 0})
    c.update(event_id, UPDATE | {"title": "new"})
    assert sandbox.events()[0]["title"] == "new"
    c.delete(event_id)  # after apply_then_500 the retry meets a 404: success too
    assert sandbox.events() == []


def test_retry_after_is_honoured_up_to_the_cap(sandbox):
    sandbox.script({"method": "PUT", "fault": "429", "retry_after": 30})
    c = client(sandbox.url, retry_after_max_seconds=0.5)
    event_id = c.create(BODY)
    started = time.monotonic()
    c.update(event_id, UPDATE)
    assert 0.5 <= time.monotonic() - started < 3


def test_typed_errors(sandbox):
    c = client(sandbox.url)
    with pytest.raises(NotFoundError):
        c.update(999, UPDATE)
    assert c.delete(999) is False
    with pytest.raises(PermanentError) as bad:
        c.create(BODY | {"duration": 0})
    assert bad.value.http_status == 400 and "duration" in bad.value.response
    with pytest.raises(AuthError) as refused:
        client(sandbox.url, key="not-the-key-000").create(BODY)
    assert refused.value.http_status == 403 and "not-the-key-000" not in str(refused.value)
    assert client(sandbox.url).probe() == "accepted"
    with pytest.raises(AuthError):
        client(sandbox.url, key="not-the-key-000").probe()
    assert sandbox.events() == []


def test_rate_limiter_spaces_calls_evenly():
    clock = [0.0]
    slept = []
    limiter = RateLimiter(10, clock=lambda: clock[0], sleep=slept.append)  # a burst of 50 ms is under one call
    for _ in range(5):
        limiter.acquire()
    assert slept == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_rate_limiter_lets_a_short_burst_through_then_paces():
    clock = [0.0]
    slept: list[float] = []
    limiter = RateLimiter(100, clock=lambda: clock[0], sleep=slept.append)  # 50 ms at 100/s: 5 at once
    for _ in range(7):
        limiter.acquire()
    assert slept == pytest.approx([0.01, 0.02])  # the 6th and 7th are paced, 10 ms apart from the 5th's slot


def test_rate_limiter_never_lets_more_than_the_rate_into_a_second():
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += max(seconds, 1e-6)  # as a real sleep, never less than a microsecond

    limiter = RateLimiter(100, clock=lambda: clock[0], sleep=sleep)
    sent = []
    for _ in range(450):
        limiter.acquire()
        sent.append(clock[0])
        clock[0] += 0.0005  # callers come back at once, far faster than the rate
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 1.0) <= 100
    assert sent[-1] - sent[0] == pytest.approx(450 / 100, abs=0.2)  # and the rate itself is kept


def test_parse_retry_after():
    assert parse_retry_after("3") == 3
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
