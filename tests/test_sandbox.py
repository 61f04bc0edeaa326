"""The Jobylon emulator itself, over real HTTP on loopback: strict validation, auth, partner
isolation, every fault kind, the control routes, keep-alive and the loopback-only bind."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connector.sandbox import FAULT_KINDS, SandboxServer
from connector.sandbox.directory import (
    DEMO_APP_ID,
    DEMO_APP_KEY,
    FOREIGN_APPLICATION_IDS,
    FOREIGN_ORGANIZER,
    NO_CALENDAR_USER,
    OTHER_APP_ID,
    OTHER_APP_KEY,
    PARTNERS,
    has_calendar,
    seeded_busy,
)
from connector.sandbox.faults import check_faults, check_scripted, choose_fault, default_faults
from connector.sandbox.state import SandboxState, copy_event
from connector.sandbox.validation import validate_availability, validate_create, validate_update

GOOD = {
    "title": "Interview",
    "description": "",
    "duration": 60,
    "start_time": "2030-05-01T10:00:00",
    "timezone": "Europe/Stockholm",
    "organizer": "recruiter@acme.example",
    "participants": [1001],
}
UPDATE = {k: GOOD[k] for k in ("title", "description", "duration", "start_time", "timezone")}
OTHER = {"X-App-Id": OTHER_APP_ID, "X-App-Key": OTHER_APP_KEY}


@pytest.fixture
def api(sandbox):
    session = requests.Session()
    session.headers.update({"X-App-Id": DEMO_APP_ID, "X-App-Key": DEMO_APP_KEY})
    session.base = sandbox.url
    yield session
    session.close()


def post(api, body, path="/p1/events/"):
    return api.post(api.base + path, json=body, timeout=5)


def put(api, event_id, body):
    return api.put(f"{api.base}/p1/events/{event_id}/", json=body, timeout=5)


def delete(api, event_id):
    return api.delete(f"{api.base}/p1/events/{event_id}/", timeout=5)


# -- happy paths -------------------------------------------------------------------------------


def test_create_update_delete(api, sandbox):
    created = post(api, {**GOOD, "videoconferencing": True, "location": "Room 4"})
    assert created.status_code == 201 and created.json() == {"id": 1}
    assert post(api, GOOD).json() == {"id": 2}  # ids increase
    [first, second] = sandbox.events()
    assert first["app_id"] == DEMO_APP_ID and first["status"] == "created" and first["version"] == 1
    assert first["location"] == "Room 4" and first["participants"] == [1001] and first["vc_link_url"].startswith("https://")
    assert second["vc_link_url"] is None and second["videoconferencing"] is False and second["location"] is None
    assert first["created_at"] == first["updated_at"]

    answer = put(api, 1, UPDATE | {"title": "New", "start_time": "2030-05-02T09:30:00"})
    assert answer.status_code == 200
    shown = answer.json()
    assert shown["id"] == 1 and shown["title"] == "New" and shown["status"] == "rescheduled" and "app_id" not in shown
    stored = sandbox.events()[0]
    assert stored["title"] == "New" and stored["start_time"] == "2030-05-02T09:30:00" and stored["version"] == 2
    assert stored["location"] == "Room 4"  # untouched by PUT

    gone = delete(api, 1)
    assert gone.status_code == 204 and gone.content == b""
    assert delete(api, 1).status_code == 404
    assert [e["id"] for e in sandbox.events()] == [2]


def test_first_event_id_and_events_per_partner():
    with SandboxServer(first_event_id=5000) as sandbox:
        answer = requests.post(sandbox.url + "/p1/events/", json=GOOD, headers=OTHER, timeout=5)
        assert answer.json() == {"id": 5000}
        assert sandbox.events(DEMO_APP_ID) == [] and [e["id"] for e in sandbox.events(OTHER_APP_ID)] == [5000]


def test_snapshots_are_copies(api, sandbox):
    post(api, GOOD)
    sandbox.events()[0]["participants"].append(7)
    assert sandbox.events()[0]["participants"] == [1001]


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        ({"duration": 0}, "duration"),
        ({"duration": 481}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": 1.5}, "duration"),
        ({"duration": 60.0}, "duration"),
        ({"duration": "60"}, "duration"),
        ({"duration": None}, "duration"),
        ({"start_time": "2030-05-01T10:00:00+02:00"}, "start_time"),
        ({"start_time": "2030-05-01 10:00"}, "start_time"),
        ({"start_time": "2030-05-01T10:00:00.000"}, "start_time"),
        ({"start_time": "2030-5-1T10:00:00"}, "start_time"),
        ({"start_time": "2030-05-01T10:00:00Z"}, "start_time"),
        ({"start_time": 1893456000}, "start_time"),
        ({"start_time": "2030-03-31T02:30:00"}, "start_time"),  # Stockholm DST gap
        ({"start_time": "9999-12-31T23:00:00", "timezone": "America/New_York"}, "start_time"),  # overflows UTC
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "europe/stockholm"}, "timezone"),
        ({"timezone": 1}, "timezone"),
        ({"organizer": "nobody@acme.example"}, "organizer"),
        ({"organizer": FOREIGN_ORGANIZER}, "organizer"),
        ({"organizer": "x"}, "organizer"),
        ({"organizer": None}, "organizer"),
        ({"participants": []}, "participants"),
        ({"participants": [True]}, "participants"),
        ({"participants": [1001, 1001]}, "participants"),
        ({"participants": [FOREIGN_APPLICATION_IDS[0]]}, "participants"),
        ({"participants": [500_000]}, "participants"),
        ({"participants": 1001}, "participants"),
        ({"participants": ["1001"]}, "participants"),
        ({"participants": [1001.0]}, "participants"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": 5}, "title"),
        ({"title": None}, "title"),
        ({"description": None}, "description"),
        ({"description": 3}, "description"),
        ({"location": 12}, "location"),
        ({"location": None}, "location"),
        ({"videoconferencing": "yes"}, "videoconferencing"),
        ({"videoconferencing": 1}, "videoconferencing"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_rule_is_a_400_naming_the_field(api, sandbox, change, field):
    answer = post(api, {**GOOD, **change})
    assert answer.status_code == 400, answer.text
    errors = answer.json()
    assert list(errors) == [field] and all(isinstance(m, str) and m for m in errors[field]), errors
    assert sandbox.events() == []


def test_valid_edge_values_are_accepted(api):
    for change in (
        {"duration": 1},
        {"duration": 480},
        {"description": ""},
        {"location": ""},
        {"videoconferencing": False},
        {"timezone": "UTC"},
        {"start_time": "2030-10-27T02:30:00"},  # ambiguous (DST fold) exists: accepted
        {"participants": [1000, 199_999]},
        {"organizer": "ops@initech.example"},
    ):
        assert post(api, {**GOOD, **change}).status_code == 201, change


def test_every_failing_field_reported_and_required_fields(api):
    answer = post(api, {"duration": 0, "timezone": "Nope", "participants": [FOREIGN_APPLICATION_IDS[1]], "extra": 1})
    assert answer.status_code == 400
    errors = answer.json()
    assert set(errors) == {"duration", "timezone", "title", "description", "start_time", "organizer", "participants", "extra"}
    assert errors["title"] == ["This field is required."]


def test_body_must_be_a_json_object_with_json_content_type(api):
    url = api.base + "/p1/events/"
    no_type = api.post(url, data=b'{"title": "x"}', headers={"Content-Type": "text/plain"}, timeout=5)
    assert no_type.status_code == 400 and "application/json" in no_type.json()["detail"]
    broken = api.post(url, data=b'{"title": ', headers={"Content-Type": "application/json"}, timeout=5)
    assert broken.status_code == 400 and broken.json()["detail"].startswith("JSON parse error")
    assert api.post(url, json=[GOOD], timeout=5).status_code == 400
    assert api.post(url, timeout=5).status_code == 400  # no body at all
    with_charset = api.post(url, data=b"{}", headers={"Content-Type": "application/json; charset=utf-8"}, timeout=5)
    assert with_charset.status_code == 400 and "title" in with_charset.json()  # parsed, then validated


def test_put_cannot_change_fixed_fields(api, sandbox):
    event_id = post(api, GOOD).json()["id"]
    for field, value in (("participants", [1002]), ("organizer", "talent@globex.example"), ("location", "x"), ("videoconferencing", True), ("colour", "red")):
        answer = put(api, event_id, UPDATE | {field: value})
        assert answer.status_code == 400 and answer.json() == {field: ["This field cannot be updated."]}, field
    assert sandbox.events()[0]["version"] == 1


def test_put_requires_and_validates_all_five_fields(api):
    event_id = post(api, GOOD).json()["id"]
    missing = put(api, event_id, {"title": "Only"})
    assert missing.status_code == 400 and set(missing.json()) == {"description", "duration", "start_time", "timezone"}
    bad = put(api, event_id, UPDATE | {"duration": 500, "timezone": "Nope/Nope", "title": ""})
    assert bad.status_code == 400 and set(bad.json()) == {"duration", "timezone", "title"}


# -- auth, permissions, routes ----------------------------------------------------------------------


def test_auth_and_partner_isolation(api, sandbox):
    url = sandbox.url + "/p1/events/"
    for headers in ({}, {"X-App-Id": DEMO_APP_ID}, {"X-App-Key": DEMO_APP_KEY}):
        answer = requests.post(url, json=GOOD, headers=headers, timeout=5)
        assert answer.status_code == 403 and answer.json() == {"detail": "Authentication credentials were not provided."}
    for headers in (
        {"X-App-Id": DEMO_APP_ID, "X-App-Key": "nope"},
        {"X-App-Id": DEMO_APP_ID, "X-App-Key": OTHER_APP_KEY},
        {"X-App-Id": "ghost", "X-App-Key": DEMO_APP_KEY},
    ):
        answer = requests.post(url, json=GOOD, headers=headers, timeout=5)
        assert answer.status_code == 403 and answer.json() == {"detail": "Invalid app credentials."}
    event_id = post(api, GOOD).json()["id"]
    forbidden = {"detail": "You do not have permission to perform this action."}
    other_delete = requests.delete(f"{sandbox.url}/p1/events/{event_id}/", headers=OTHER, timeout=5)
    other_put = requests.put(f"{sandbox.url}/p1/events/{event_id}/", json=UPDATE, headers=OTHER, timeout=5)
    assert (other_delete.status_code, other_delete.json()) == (403, forbidden) and (other_put.status_code, other_put.json()) == (403, forbidden)
    assert len(sandbox.events()) == 1 and sandbox.events()[0]["version"] == 1


def test_404s(api, sandbox):
    assert api.post(api.base + "/p1/events", json=GOOD, timeout=5).status_code == 404  # trailing slash required
    assert put(api, 999, UPDATE).json() == {"detail": "Not found."}
    assert delete(api, 999).status_code == 404
    assert delete(api, "9" * 40).status_code == 404  # absurd ids are just unknown
    assert api.put(f"{api.base}/p1/events/1", json=UPDATE, timeout=5).status_code == 404
    event_id = post(api, GOOD).json()["id"]
    assert requests.delete(f"{sandbox.url}/_sandbox/events/{event_id}", timeout=5).status_code == 204  # behind the connector's back
    assert put(api, event_id, UPDATE).status_code == 404 and delete(api, event_id).status_code == 404
    post(api, GOOD)
    sandbox.delete_event(2)
    assert delete(api, 2).status_code == 404


def test_405_with_allow(api):
    for method, path, allow in (
        ("GET", "/p1/events/", "POST"),
        ("PATCH", "/p1/events/", "POST"),
        ("OPTIONS", "/p1/events/", "POST"),
        ("GET", "/p1/events/5/", "PUT, DELETE"),
        ("POST", "/p1/events/5/", "PUT, DELETE"),
        ("GET", "/p2/users/calendar-availability/", "POST"),
    ):
        answer = api.request(method, api.base + path, timeout=5)
        assert answer.status_code == 405 and answer.headers["Allow"] == allow, (method, path)
        assert answer.json() == {"detail": f'Method "{method}" not allowed.'}
    head = api.head(api.base + "/p1/events/", timeout=5)
    assert head.status_code == 405 and head.content == b""
    assert requests.get(api.base + "/p1/events/", timeout=5).status_code == 403  # credentials are checked first


def test_configurable_paths():
    with SandboxServer(events_path="/v9/calendar/", availability_path="/v9/free/") as sandbox:
        headers = {"X-App-Id": DEMO_APP_ID, "X-App-Key": DEMO_APP_KEY}
        assert requests.post(sandbox.url + "/v9/calendar/", json=GOOD, headers=headers, timeout=5).status_code == 201
        assert requests.post(sandbox.url + "/p1/events/", json=GOOD, headers=headers, timeout=5).status_code == 404
        assert requests.delete(sandbox.url + "/v9/calendar/1/", headers=headers, timeout=5).status_code == 204
    with pytest.raises(ValueError):
        SandboxServer(events_path="/p1/events")


# -- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, status, applied", [("429", 429, False), ("500", 500, False), ("503", 503, False), ("apply_then_500", 500, True), ("latency", 201, True)]
)
def test_scripted_fault_on_create(api, sandbox, fault, status, applied):
    sandbox.script({"method": "POST", "fault": fault, "retry_after": 3, "spike_ms": 50})
    started = time.monotonic()
    answer = post(api, GOOD)
    assert answer.status_code == status
    if fault in ("429", "503"):
        assert answer.headers["Retry-After"] == "3"
    if fault == "latency":
        assert time.monotonic() - started >= 0.05
    assert len(sandbox.events()) == (1 if applied else 0)
    assert sandbox.stats()["faults"] == {fault: 1}
    entry = sandbox.requests_log()[-1]
    assert entry["received_at"] <= entry["at"]
    assert entry | {"at": 0, "received_at": 0} == {
        "seq": 1,
        "method": "POST",
        "path": "/p1/events/",
        "status": status,
        "fault": fault,
        "at": 0,
        "received_at": 0,
    }


def test_apply_then_500_really_applies_put_and_delete(api, sandbox):
    event_id = post(api, GOOD).json()["id"]
    sandbox.script({"method": "PUT", "fault": "apply_then_500"}, {"method": "DELETE", "fault": "apply_then_500"})
    assert put(api, event_id, UPDATE | {"title": "Changed"}).status_code == 500
    assert sandbox.events()[0]["title"] == "Changed"
    assert delete(api, event_id).status_code == 500
    assert sandbox.events() == []


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_drop_closes_the_connection_without_applying(api, sandbox, method):
    event_id = post(api, GOOD).json()["id"]
    sandbox.script({"method": method, "fault": "drop"})
    with pytest.raises(requests.ConnectionError):
        post(api, GOOD) if method == "POST" else put(api, event_id, UPDATE | {"title": "Dropped"})
    assert [(e["id"], e["title"]) for e in sandbox.events()] == [(event_id, "Interview")]
    assert sandbox.requests_log()[-1]["status"] is None and sandbox.stats()["by_status"]["dropped"] == 1
    assert post(api, GOOD).status_code == 201  # the session reconnects


def test_retry_after_default_and_503_header(api, sandbox):
    sandbox.set_faults(retry_after_seconds=7)
    sandbox.script({"fault": "429"}, {"fault": "503"})
    assert post(api, GOOD).headers["Retry-After"] == "7"
    assert post(api, GOOD).headers["Retry-After"] == "7"
    assert post(api, GOOD).status_code == 201


def test_scripted_faults_consumed_in_order_by_matching_method(api, sandbox):
    sandbox.script({"method": "PUT", "fault": "503"}, {"method": "POST", "fault": "500"}, {"fault": "429"}, {"method": "post", "fault": "503"})
    assert post(api, GOOD).status_code == 500  # the PUT fault waits for a PUT
    assert post(api, GOOD).status_code == 429  # method-less: any method
    assert post(api, GOOD).status_code == 503  # method names are case-insensitive
    event_id = post(api, GOOD).json()["id"]
    assert put(api, event_id, UPDATE).status_code == 503
    assert put(api, event_id, UPDATE).status_code == 200
    assert sandbox.scripted() == []
    with pytest.raises(ValueError):
        sandbox.script({"fault": "explode"})


def test_auth_failures_and_unknown_paths_are_never_faulted(api, sandbox):
    sandbox.script({"fault": "503"})
    sandbox.set_faults(rate=1.0, kinds={"500": 1})
    assert requests.post(sandbox.url + "/p1/events/", json=GOOD, timeout=5).status_code == 403
    assert api.post(api.base + "/nope/", json=GOOD, timeout=5).status_code == 404
    assert len(sandbox.scripted()) == 1
    assert post(api, GOOD).status_code == 503  # scripted first
    assert post(api, GOOD).status_code == 500  # then random
    assert sandbox.stats()["faults"] == {"503": 1, "500": 1}


def test_random_faults_follow_the_rate_and_the_seed(api, sandbox):
    def run(seed: int) -> list[int]:
        sandbox.set_faults(rate=0.5, kinds={"503": 1, "429": 1}, seed=seed)
        return [post(api, GOOD).status_code for _ in range(150)]

    first = run(3)
    assert 40 < first.count(201) < 110 and first.count(503) > 10 and first.count(429) > 10
    assert run(3) == first  # same seed, same sequence
    assert len(sandbox.events()) == first.count(201) * 2


def test_every_fault_kind_at_random(api, sandbox):
    sandbox.set_faults(rate=1.0, kinds={k: 1 for k in FAULT_KINDS}, spike_ms=1, seed=11)
    for _ in range(60):
        try:
            post(api, GOOD)
        except requests.ConnectionError:
            pass
    assert set(sandbox.stats()["faults"]) == set(FAULT_KINDS)


def test_constant_latency(api, sandbox):
    sandbox.set_faults(latency_ms=60)
    started = time.monotonic()
    assert post(api, GOOD).status_code == 201
    assert time.monotonic() - started >= 0.06
    entry = sandbox.requests_log()[-1]
    # the answer leaves latency_ms after the request came in, its own work counted in that time
    assert 0.06 <= entry["at"] - entry["received_at"] < 0.06 + 0.015
    sandbox.set_faults(latency_ms=0)


def test_fault_settings_are_validated(sandbox):
    for bad in ({"rate": 2}, {"kinds": {"boom": 1}}, {"kinds": {"429": -1}}, {"retry_after_seconds": 1.5}):
        with pytest.raises(ValueError):
            sandbox.set_faults(**bad)
        assert requests.post(sandbox.url + "/_sandbox/faults", json=bad, timeout=5).status_code == 400


# -- control routes, keep-alive, lifecycle ------------------------------------------------------------


def test_control_routes_over_http(api, sandbox):
    control = sandbox.url + "/_sandbox/"
    post(api, GOOD)
    [event] = requests.get(control + "events", timeout=5).json()
    assert event["app_id"] == DEMO_APP_ID and event["version"] == 1
    config = {"rate": 0.0, "kinds": {"503": 2}, "retry_after_seconds": 4, "seed": 9}
    answer = requests.post(control + "faults", json=config, timeout=5).json()
    assert answer["kinds"] == {"503": 2.0} and answer["latency_ms"] == 0 and answer["spike_ms"] == 300  # replaced, defaults for the rest
    assert requests.get(control + "faults", timeout=5).json() == answer
    assert requests.post(control + "script", json={"faults": [{"fault": "503"}]}, timeout=5).json() == {"queued": 1}
    assert requests.get(control + "script", timeout=5).json() == {"faults": [{"method": None, "fault": "503"}]}
    assert requests.post(control + "script", json={"faults": [{"fault": "nope"}]}, timeout=5).status_code == 400
    failed = post(api, GOOD)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "4"
    log = requests.get(control + "requests", timeout=5).json()
    assert [(r["seq"], r["method"], r["status"], r["fault"]) for r in log] == [(1, "POST", 201, None), (2, "POST", 503, "503")]
    stats = requests.get(control + "stats", timeout=5).json()
    assert stats["requests"] == 2 and stats["by_method"] == {"POST": 2} and stats["by_status"] == {"201": 1, "503": 1} and stats["faults"] == {"503": 1}
    assert requests.get(control + "nothing", timeout=5).status_code == 404
    assert requests.get(control + "reset", timeout=5).status_code == 405
    assert requests.post(control + "reset", timeout=5).json() == {"reset": True}
    assert sandbox.events() == [] and sandbox.stats()["requests"] == 0 and sandbox.faults()["kinds"] == {k: 1.0 for k in FAULT_KINDS}
    assert post(api, GOOD).json() == {"id": 2}  # ids are never reused, even after a reset


def test_keep_alive_reuses_one_connection(api, sandbox):
    for _ in range(5):
        assert post(api, GOOD).status_code == 201
    assert api.post(api.base + "/p1/events/", data=b"[", headers={"Content-Type": "application/json"}, timeout=5).status_code == 400
    assert delete(api, 1).status_code == 204
    assert sandbox.stats()["connections"] == 1


def test_stop_cuts_open_connections(api):
    sandbox = SandboxServer().start()
    assert api.post(sandbox.url + "/p1/events/", json=GOOD, timeout=5).status_code == 201
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 1
    with pytest.raises(requests.ConnectionError):
        api.post(sandbox.url + "/p1/events/", json=GOOD, timeout=5)
    sandbox.stop()  # idempotent


def test_binds_only_to_loopback():
    for host in ("0.0.0.0", "", "192.0.2.1", "::"):
        with pytest.raises(ValueError, match="loopback"):
            SandboxServer(host, 0)
    with SandboxServer("localhost") as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert requests.get(sandbox.url + "/_sandbox/stats", timeout=5).status_code == 200


def test_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with SandboxServer("::1") as sandbox:
        assert sandbox.url.startswith("http://[::1]:")
        assert requests.get(sandbox.url + "/_sandbox/stats", timeout=5).status_code == 200


def test_serve_forever_prints_one_line_and_stops_on_sigterm():
    code = "from connector.sandbox import serve_forever; serve_forever(port=0)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Jobylon sandbox on http://127.0.0.1:") and line.rstrip().endswith("(app id demo-app)")
        url = line.split()[3]
        headers = {"X-App-Id": DEMO_APP_ID, "X-App-Key": DEMO_APP_KEY}
        assert requests.post(url + "/p1/events/", json=GOOD, headers=headers, timeout=5).status_code == 201
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=5)
    finally:
        process.kill()
    assert process.returncode == 0 and out == "" and DEMO_APP_KEY not in err


# -- availability -------------------------------------------------------------------------------------


def availability_body(**changes):
    body = {
        "duration_min": 60,
        "response_format": "periods",
        "participants": [{"members": [{"email": "recruiter@acme.example"}], "required": True}],
        "query_periods": [{"start": "2030-05-01T09:00:00+02:00", "end": "2030-05-01T13:00:00+02:00"}],
    }
    return body | changes


def test_availability_periods_and_slots(api):
    post(api, GOOD)  # recruiter busy 10:00-11:00 Stockholm (+02:00)
    post(api, {**GOOD, "organizer": "talent@globex.example", "start_time": "2030-05-01T12:00:00"})
    answer = post(api, availability_body(), "/p2/users/calendar-availability/")
    assert answer.status_code == 200
    assert [(p["start"], p["end"]) for p in answer.json()] == [
        ("2030-05-01T09:00:00+02:00", "2030-05-01T10:00:00+02:00"),
        ("2030-05-01T11:00:00+02:00", "2030-05-01T13:00:00+02:00"),
    ]
    groups = [{"members": [{"email": "recruiter@acme.example"}], "required": True}, {"members": [{"email": "talent@globex.example"}], "required": False}]
    slots = post(api, availability_body(response_format="slots", participants=groups), "/p2/users/calendar-availability/").json()
    assert [(s["start"][11:16], s["participants"]) for s in slots] == [
        ("09:00", ["recruiter@acme.example", "talent@globex.example"]),
        ("11:00", ["recruiter@acme.example", "talent@globex.example"]),
        ("12:00", ["recruiter@acme.example"]),
    ]


def test_availability_validation(api):
    url = "/p2/users/calendar-availability/"
    bad = availability_body(
        duration_min=True,
        response_format="list",
        query_periods=[{"start": "2030-05-01T09:00:00", "end": "x"}],
        participants=[{"members": [{"email": FOREIGN_ORGANIZER}], "required": True}],
    )
    answer = post(api, bad, url)
    assert answer.status_code == 400 and set(answer.json()) == {"duration_min", "response_format", "query_periods", "participants"}
    assert set(post(api, {}, url).json()) == {"duration_min", "response_format", "query_periods", "participants"}
    backwards = [{"start": "2030-05-02T09:00:00+00:00", "end": "2030-05-01T09:00:00+00:00"}]
    assert "query_periods" in post(api, availability_body(query_periods=backwards), url).json()


AVAILABILITY = "/p2/users/calendar-availability/"
MONDAY = [{"start": "2030-06-03T09:00:00+00:00", "end": "2030-06-03T17:00:00+00:00"}]  # seeded busy calendars that day (UTC):
# recruiter 12:00-13:00 and 14:00-14:30, hiring manager 11:30-12:30


def test_availability_duration_is_jobylons_1_to_480(api):
    for minutes in (1, 480):
        assert (
            post(
                api, availability_body(duration_min=minutes, query_periods=[{"start": "2030-06-03T00:00:00Z", "end": "2030-06-04T00:00:00Z"}]), AVAILABILITY
            ).status_code
            == 200
        )
    for minutes in (0, 481, 1440):
        answer = post(api, availability_body(duration_min=minutes), AVAILABILITY)
        assert answer.status_code == 400 and answer.json() == {"duration_min": ["Ensure this value is between 1 and 480."]}


def test_availability_from_seeded_busy_calendars_all_or_a_count(api):
    both = [{"email": "recruiter@acme.example"}, {"email": "hiring.manager@acme.example"}]

    def slots(required, response_format="slots"):
        body = availability_body(participants=[{"members": both, "required": required}], query_periods=MONDAY, response_format=response_format)
        answer = post(api, body, AVAILABILITY)
        assert answer.status_code == 200, answer.text
        return [(s["start"][11:16], s["end"][11:16], len(s["participants"])) for s in answer.json()]

    assert slots("all") == [("09:00", "10:00", 2), ("10:00", "11:00", 2), ("13:00", "14:00", 2), ("14:30", "15:30", 2), ("15:30", "16:30", 2)]
    assert slots(2) == slots("all") and slots(True) == slots("all")  # a count of every member; the old boolean form
    assert slots(1) == [
        ("09:00", "10:00", 2),
        ("10:00", "11:00", 2),
        ("11:00", "12:00", 1),
        ("12:30", "13:30", 1),
        ("13:30", "14:30", 1),
        ("14:30", "15:30", 2),
        ("15:30", "16:30", 2),
    ]
    assert slots("all", "periods") == [("09:00", "11:30", 2), ("13:00", "14:00", 2), ("14:30", "17:00", 2)]
    assert slots(1, "periods") == [
        ("09:00", "11:30", 2),
        ("11:30", "12:00", 1),
        ("12:30", "13:00", 1),
        ("13:00", "14:00", 2),
        ("14:00", "14:30", 1),
        ("14:30", "17:00", 2),
    ]
    for bad in (0, 3, "some", 1.5, None):
        answer = post(api, availability_body(participants=[{"members": both, "required": bad}]), AVAILABILITY)
        assert answer.status_code == 400 and answer.json() == {"participants": ['Item 0: required must be "all" or a number of members from 1 to 2.']}


def test_availability_a_slot_needs_its_members_free_throughout(api):
    """At least 1 of 2 for 90 minutes: 10:30-12:00 the recruiter alone, 12:30-14:00 the manager alone;
    never a slot that each is free for only a part of."""
    group = [{"members": [{"email": "recruiter@acme.example"}, {"email": "hiring.manager@acme.example"}], "required": 1}]
    period = [{"start": "2030-06-03T10:30:00+00:00", "end": "2030-06-03T14:00:00+00:00"}]
    answer = post(api, availability_body(duration_min=90, participants=group, query_periods=period, response_format="slots"), AVAILABILITY).json()
    assert [(s["start"][11:16], s["end"][11:16], s["participants"]) for s in answer] == [
        ("10:30", "12:00", ["recruiter@acme.example"]),
        ("12:30", "14:00", ["hiring.manager@acme.example"]),
    ]


def test_availability_refuses_unknown_users_and_users_without_a_calendar(api):
    def refusal(email):
        answer = post(api, availability_body(participants=[{"members": [{"email": email}], "required": "all"}]), AVAILABILITY)
        assert answer.status_code == 400
        return answer.json()

    assert refusal("nobody@acme.example") == {"participants": ["Item 0: nobody@acme.example is not a Jobylon user."]}
    assert refusal(NO_CALENDAR_USER) == {"participants": [f"Item 0: {NO_CALENDAR_USER} has no calendar connection."]}
    assert refusal(FOREIGN_ORGANIZER) == {"participants": [f"Item 0: {FOREIGN_ORGANIZER} is not a user in a customer account available to this partner."]}
    assert post(api, {**GOOD, "organizer": NO_CALENDAR_USER}).status_code == 201  # a user all the same: may organize events


def test_seeded_busy_calendars_directly():
    monday, saturday = datetime(2030, 6, 3, tzinfo=UTC), datetime(2030, 6, 8, tzinfo=UTC)
    assert seeded_busy("recruiter@acme.example", monday, monday + timedelta(days=1)) == [
        (monday + timedelta(hours=12), monday + timedelta(hours=13)),
        (monday + timedelta(hours=14), monday + timedelta(hours=14, minutes=30)),
    ]
    assert seeded_busy("recruiter@acme.example", saturday, saturday + timedelta(days=2)) == []  # weekends are free
    assert len(seeded_busy("hiring.manager@acme.example", monday, monday + timedelta(days=7))) == 5 + 2  # daily, and Tuesday and Thursday afternoons
    assert seeded_busy("recruiter@acme.example", monday + timedelta(hours=12, minutes=30), monday + timedelta(hours=12, minutes=40)) == [
        (monday + timedelta(hours=12), monday + timedelta(hours=13))
    ]  # overlapping, not only contained
    assert seeded_busy("ops@initech.example", monday, saturday) == [] and has_calendar("ops@initech.example") and not has_calendar(NO_CALENDAR_USER)


# -- the seams, called directly (no HTTP) ---------------------------------------------------------


def test_validation_functions_directly():
    partner = PARTNERS[DEMO_APP_ID]
    assert validate_create(GOOD, partner) == {}
    assert validate_update(UPDATE) == {}
    errors = validate_create({**GOOD, "duration": 0, "colour": "red", "participants": [FOREIGN_APPLICATION_IDS[0]]}, partner)
    assert list(errors) == ["colour", "duration", "participants"] and errors["colour"] == ["Unknown field."]
    required = ("title", "description", "duration", "start_time", "timezone", "organizer", "participants")
    assert validate_create({}, partner) == {name: ["This field is required."] for name in required}
    assert validate_update({**UPDATE, "organizer": "x@y.example"}) == {"organizer": ["This field cannot be updated."]}
    assert "start_time" in validate_update({**UPDATE, "start_time": "2030-03-31T02:30:00"})  # the spring-forward gap in Stockholm
    errors, query = validate_availability(availability_body(), partner)
    assert errors == {} and query["required"] == ["recruiter@acme.example"] and query["format"] == "periods" and len(query["periods"]) == 1
    errors, _ = validate_availability({}, partner)
    assert list(errors) == ["duration_min", "participants", "query_periods", "response_format"]


def test_fault_decision_directly():
    config = check_faults(default_faults())
    assert choose_fault("POST", [], config, random.Random(1)) is None  # rate 0: never
    script = [check_scripted({"method": "put", "fault": "503"}), check_scripted({"fault": "drop"})]
    assert choose_fault("POST", script, config, random.Random(1)) == {"method": None, "fault": "drop"}
    assert choose_fault("PUT", script, config, random.Random(1)) == {"method": "PUT", "fault": "503"} and script == []
    config = check_faults({**default_faults(), "rate": 0.5, "kinds": {"429": 1, "500": 0}})

    def draws(seed):
        rng = random.Random(seed)
        return [choose_fault("POST", [], config, rng) for _ in range(200)]

    assert draws(7) == draws(7) and {str(d) for d in draws(7)} == {"None", "{'fault': '429'}"}  # a weight of 0 is never drawn
    for bad in ({**config, "rate": True}, {**config, "spike_ms": -1}, {**config, "extra": 1}):
        with pytest.raises(ValueError):
            check_faults(bad)
    with pytest.raises(ValueError):
        check_scripted({"fault": "429", "retry_after": 1.5})


def test_state_directly():
    state = SandboxState(faults=default_faults(seed=5), first_event_id=40)
    partner, other = PARTNERS[DEMO_APP_ID], PARTNERS[OTHER_APP_ID]
    assert state.create(partner, GOOD) == (201, {"id": 40})
    assert state.update(other, 40, UPDATE)[0] == 403 and state.delete(partner, 41)[0] == 404
    status, shown = state.update(partner, 40, {**UPDATE, "duration": 30})
    assert status == 200 and "app_id" not in shown and "version" not in shown and shown["status"] == "rescheduled"
    stored = copy_event(state.events[40])
    assert stored["version"] == 2 and stored["participants"] is not state.events[40]["participants"]
    status, periods = state.availability(partner, availability_body())
    assert status == 200 and [(p["start"][11:16], p["end"][11:16]) for p in periods] == [("09:00", "10:00"), ("10:30", "13:00")]
    assert state.delete(partner, 40) == (204, None) and state.events == {} and state.by_organizer[GOOD["organizer"]] == set()
