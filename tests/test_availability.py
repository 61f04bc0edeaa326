"""`connector availability`: the query checked before anything is sent, slots and periods computed by
the sandbox from its seeded busy calendars over real HTTP, and Jobylon's refusals shown plainly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Harness, invoke_cli, item, run_cli

from connector.availability import AnswerError, QueryError, Slot, build_query, explain_refusal, parse_answer, request_body
from connector.config import load_settings
from connector.errors import AuthError, AvailabilityRefusedError, PermanentError, TransientError
from connector.jobylon import JobylonClient
from connector.sandbox.directory import NO_CALENDAR_USER

RECRUITER, MANAGER = "recruiter@acme.example", "hiring.manager@acme.example"
BOTH = (RECRUITER, MANAGER)
# 2030-06-03 is a Monday. Seeded (UTC): recruiter busy 12:00-13:00 and 14:00-14:30, the hiring
# manager 11:30-12:30 (and 15:00-17:00 on Tuesdays and Thursdays).
DAY = ("--from", "2030-06-03T09:00:00Z", "--to", "2030-06-03T17:00:00Z")


@pytest.fixture
def config(harness):
    return str(harness.config_file())


def availability(config, *args):
    return invoke_cli("--config", config, "availability", *args)


def users(*emails):
    return [part for email in emails for part in ("--user", email)]


def spans(document):
    return [(slot["start"][11:16], slot["end"][11:16], slot["participants"]) for slot in document]


def test_slots_of_two_users_against_seeded_calendars(config, sandbox):
    result = availability(config, *users(*BOTH), *DAY, "--duration", "60", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document[0] == {"start": "2030-06-03T09:00:00+00:00", "end": "2030-06-03T10:00:00+00:00", "participants": [RECRUITER, MANAGER]}
    assert spans(document) == [
        (start, end, [RECRUITER, MANAGER])
        for start, end in (("09:00", "10:00"), ("10:00", "11:00"), ("13:00", "14:00"), ("14:30", "15:30"), ("15:30", "16:30"))
    ]
    [request] = [r for r in sandbox.requests_log() if r["path"] == "/p2/users/calendar-availability/"]
    assert request["method"] == "POST" and request["status"] == 200

    table = availability(config, *users(*BOTH), *DAY, "--duration", "60")
    assert table.returncode == 0
    assert "5 slots of 60 min where all 2 users are free, times UTC" in table.stdout
    rows = [line for line in table.stdout.splitlines() if "2030-06-03" in line]
    assert [row.split("│")[1].strip() for row in rows] == [f"Mon 2030-06-03 {hour}" for hour in ("09:00", "10:00", "13:00", "14:30", "15:30")]


def test_periods_and_the_zone_of_from(config):
    result = availability(config, *users(*BOTH), *DAY, "--duration", "60", "--periods", "--json")
    assert result.returncode == 0, result.stderr
    assert spans(json.loads(result.stdout)) == [
        ("09:00", "11:30", [RECRUITER, MANAGER]),
        ("13:00", "14:00", [RECRUITER, MANAGER]),
        ("14:30", "17:00", [RECRUITER, MANAGER]),
    ]
    table = availability(config, *users(*BOTH), "--from", "2030-06-03T11:00:00+02:00", "--to", "2030-06-03T19:00:00+02:00", "--duration", "60", "--periods")
    assert "3 periods for meetings of 60 min where all 2 users are free, times UTC+02:00" in table.stdout
    assert [line.split("│")[1:3] for line in table.stdout.splitlines() if "2030-06-03" in line] == [
        [" Mon 2030-06-03 11:00 ", " 13:30 "],
        [" Mon 2030-06-03 15:00 ", " 16:00 "],
        [" Mon 2030-06-03 16:30 ", " 19:00 "],
    ]


def test_required_one_of_two_users(config):
    result = availability(config, *users(*BOTH), "--required", "1", *DAY, "--duration", "60", "--json")
    assert result.returncode == 0, result.stderr
    assert spans(json.loads(result.stdout)) == [
        ("09:00", "10:00", [RECRUITER, MANAGER]),
        ("10:00", "11:00", [RECRUITER, MANAGER]),
        ("11:00", "12:00", [RECRUITER]),  # the manager is busy from 11:30
        ("12:30", "13:30", [MANAGER]),  # 12:00-12:30 both are busy
        ("13:30", "14:30", [MANAGER]),
        ("14:30", "15:30", [RECRUITER, MANAGER]),
        ("15:30", "16:30", [RECRUITER, MANAGER]),
    ]
    periods = availability(config, *users(*BOTH), "--required", "1", *DAY, "--duration", "60", "--periods", "--json")
    assert spans(json.loads(periods.stdout)) == [
        ("09:00", "11:30", [RECRUITER, MANAGER]),
        ("11:30", "12:00", [RECRUITER]),
        ("12:30", "13:00", [MANAGER]),
        ("13:00", "14:00", [RECRUITER, MANAGER]),
        ("14:00", "14:30", [MANAGER]),
        ("14:30", "17:00", [RECRUITER, MANAGER]),
    ]


def test_events_the_connector_made_are_busy_time_too(harness, config):
    harness.write([item("INT-1", start_at="2030-06-03T11:00:00", timezone="Europe/Stockholm")])  # 09:00-10:00 UTC
    assert harness.sync().counts["created"] == 1
    result = availability(config, *users(RECRUITER), *DAY, "--duration", "60", "--json")
    assert [start for start, _, _ in spans(json.loads(result.stdout))] == ["10:00", "11:00", "13:00", "14:30", "15:30"]


def test_an_unknown_user_is_named_without_a_traceback(sandbox, tmp_path):
    config = Harness(tmp_path, sandbox).config_file()
    result = run_cli("--config", str(config), "availability", *users(RECRUITER, "nobody@acme.example"), *DAY, "--duration", "30")
    assert result.returncode == 1 and result.stdout == ""
    assert "error: Jobylon refused the availability query for nobody@acme.example: participants: nobody@acme.example is not a Jobylon user." in result.stderr
    assert RECRUITER not in result.stderr and "Traceback" not in result.stderr


def test_a_user_without_a_calendar_connection_is_named(config):
    result = availability(config, *users(NO_CALENDAR_USER), *DAY, "--duration", "30", "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert f"for {NO_CALENDAR_USER}: participants: {NO_CALENDAR_USER} has no calendar connection" in result.stderr
    assert "Traceback" not in result.stderr
    foreign = availability(config, *users("outsider@umbrella.example"), *DAY, "--duration", "30")
    assert foreign.returncode == 1 and "outsider@umbrella.example is not a user in a customer account available to this partner" in foreign.stderr


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        ((*DAY, "--duration", "0"), "--duration", "0 is not in 1..480 minutes"),
        ((*DAY, "--duration", "481"), "--duration", "481 is not in 1..480 minutes"),
        (("--from", "2030-06-03T17:00:00Z", "--to", "2030-06-03T09:00:00Z", "--duration", "60"), "--to", "is not after --from"),
        (("--from", "2030-06-03T09:00:00Z", "--to", "2030-06-03T09:00:00Z", "--duration", "60"), "--to", "is not after --from"),
        (("--from", "2030-06-01T00:00:00Z", "--to", "2030-07-02T00:00:01Z", "--duration", "60"), "--to", "at most 31 days"),
        (("--from", "2030-06-03T09:00:00", "--to", "2030-06-03T17:00:00Z", "--duration", "60"), "--from", "has no UTC offset"),
        (("--from", "monday", "--to", "2030-06-03T17:00:00Z", "--duration", "60"), "--from", "is not an ISO 8601 date-time"),
        (("--from", "2030-06-03T09:00:00Z", "--to", "2030-06-03T09:30:00Z", "--duration", "60"), "--duration", "do not fit in the period"),
        ((*DAY, "--duration", "60", "--required", "3"), "--required", "a number from 1 to 2"),
        ((*DAY, "--duration", "60", "--required", "some"), "--required", "a number from 1 to 2"),
    ],
)
def test_bad_input_is_a_usage_error_naming_the_option(config, sandbox, args, option, says):
    result = availability(config, *users(*BOTH), *args)
    assert result.returncode == 2
    assert f"Invalid value for {option}: " in result.stderr and says in result.stderr
    assert sandbox.stats()["requests"] == 0  # nothing sent


def test_bad_users_are_usage_errors(config, sandbox):
    for emails, says in (((RECRUITER, "recruiter@ACME.example"), "given twice"), (("not-an-email",), "is not an email address")):
        result = availability(config, *users(*emails), *DAY, "--duration", "60")
        assert result.returncode == 2 and "Invalid value for --user: " in result.stderr and says in result.stderr
    assert availability(config, *DAY, "--duration", "60").returncode == 2  # --user is required
    assert sandbox.stats()["requests"] == 0


# -- the client: a query changes nothing, so nothing about it is ever in doubt ---------------------------


def client(url, key="demo-key-0123456789"):
    settings = load_settings(
        data={
            "jobylon": {"base_url": url, "app_id": "demo-app", "app_key": key, "max_requests_per_second": 1000, "timeout_seconds": 2},
            "source": {"kind": "file", "path": "x"},
            "retry": {"attempts": 3, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02},
        }
    )
    return JobylonClient(settings.jobylon, settings.retry)


QUERY = build_query(BOTH, "all", "2030-06-03T09:00:00Z", "2030-06-03T11:00:00Z", 60)


def test_client_answers_slots_and_maps_failures(sandbox):
    assert client(sandbox.url).availability(QUERY) == [
        Slot(datetime(2030, 6, 3, 9, tzinfo=UTC), datetime(2030, 6, 3, 10, tzinfo=UTC), BOTH),
        Slot(datetime(2030, 6, 3, 10, tzinfo=UTC), datetime(2030, 6, 3, 11, tzinfo=UTC), BOTH),
    ]
    sandbox.script({"method": "POST", "fault": "503", "retry_after": 0})
    assert len(client(sandbox.url).availability(QUERY)) == 2  # retried
    for fault in ("500", "drop"):
        sandbox.script({"method": "POST", "fault": fault})
        with pytest.raises(TransientError) as caught:
            client(sandbox.url).availability(QUERY)
        assert "event" not in caught.value.message and "ask again" in caught.value.message
    with pytest.raises(AuthError):
        client(sandbox.url, key="wrong-key-0123456789").availability(QUERY)
    refused = build_query((RECRUITER, "nobody@acme.example"), "1", "2030-06-03T09:00:00Z", "2030-06-03T11:00:00Z", 60)
    with pytest.raises(AvailabilityRefusedError) as caught:
        client(sandbox.url).availability(refused)
    assert caught.value.http_status == 400 and caught.value.kind == "permanent" and caught.value.exit_code == 1
    assert str(caught.value) == "Jobylon refused the availability query for nobody@acme.example: participants: nobody@acme.example is not a Jobylon user."


def test_client_at_a_wrong_path(sandbox):
    settings = load_settings(
        data={
            "jobylon": {"base_url": sandbox.url, "app_id": "demo-app", "app_key": "demo-key-0123456789", "availability_path": "/p9/free/"},
            "source": {"kind": "file", "path": "x"},
        }
    )
    with pytest.raises(PermanentError, match="404, Jobylon has no availability call there; check jobylon.availability_path"):
        JobylonClient(settings.jobylon, settings.retry).availability(QUERY)


# -- the pure parts -------------------------------------------------------------------------------------


def test_request_body():
    assert request_body(QUERY) == {
        "duration_min": 60,
        "participants": [{"members": [{"email": RECRUITER}, {"email": MANAGER}], "required": "all"}],
        "query_periods": [{"start": "2030-06-03T09:00:00+00:00", "end": "2030-06-03T11:00:00+00:00"}],
        "response_format": "slots",
    }
    one = build_query(BOTH, "1", "2030-06-03T11:00:00+02:00", "2030-06-03T13:00:00+02:00", 480 // 4, "periods")
    body = request_body(one)
    assert body["participants"][0]["required"] == 1 and body["response_format"] == "periods" and body["duration_min"] == 120
    assert body["query_periods"] == [{"start": "2030-06-03T11:00:00+02:00", "end": "2030-06-03T13:00:00+02:00"}]
    assert build_query((RECRUITER,), "ALL", "2030-06-01T00:00:00Z", "2030-07-02T00:00:00Z", 480).required is None  # 31 days and 480 min: the limits


def test_query_errors_name_their_option():
    with pytest.raises(QueryError) as caught:
        build_query(BOTH, "0", *DAY[1::2], 60)
    assert caught.value.option == "--required"
    with pytest.raises(QueryError) as caught:
        build_query((), "all", *DAY[1::2], 60)
    assert caught.value.option == "--user"


def test_answer_parsing():
    answer = [
        {"start": "2030-06-03T13:00:00+02:00", "end": "2030-06-03T14:00:00+02:00", "participants": [{"email": MANAGER}]},
        {"start": "2030-06-03T08:00:00Z", "end": "2030-06-03T09:00:00Z", "participants": [RECRUITER]},
    ]
    slots = parse_answer(answer)
    assert [(s.start.hour, s.participants, s.minutes) for s in slots] == [(8, (RECRUITER,), 60), (11, (MANAGER,), 60)]
    assert all(s.start.tzinfo == UTC for s in slots) and slots[1].end - slots[1].start == timedelta(hours=1)
    assert parse_answer([]) == []
    for bad in (
        {"start": "x"},
        [{"start": "2030-06-03T08:00:00", "end": "2030-06-03T09:00:00Z"}],
        [{"start": "2030-06-03T09:00:00Z", "end": "2030-06-03T08:00:00Z"}],
        [1],
        [{**answer[0], "participants": [3]}],
    ):
        with pytest.raises(AnswerError):
            parse_answer(bad)


def test_a_refusal_names_every_user_when_it_names_none():
    assert explain_refusal('{"detail": "Invalid data."}', BOTH) == f"Jobylon refused the availability query for {RECRUITER}, {MANAGER}: Invalid data."
    assert explain_refusal("<html>Bad Request</html>", (RECRUITER,)) == f"Jobylon refused the availability query for {RECRUITER}: <html>Bad Request</html>"
    assert explain_refusal(None, (RECRUITER,)).endswith(": no reason given")
    near = json.dumps({"participants": ["Item 0: BA@acme.example is not a Jobylon user."]})
    assert explain_refusal(near, ("a@acme.example", "ba@acme.example")).startswith(
        "Jobylon refused the availability query for ba@acme.example: "
    )  # whole addresses
    two = json.dumps({"participants": [f"Item 0: {MANAGER} has no calendar connection.", f"Item 0: {RECRUITER} is not a Jobylon user."]})
    assert explain_refusal(two, BOTH) == (
        f"Jobylon refused the availability query for {RECRUITER}, {MANAGER}: participants: {MANAGER} has no calendar connection.; participants: {RECRUITER} is not a Jobylon user."
    )
