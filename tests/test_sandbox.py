"""The Jobylon emulator itself: strict validation, auth, partner isolation, faults."""

from __future__ import annotations

import pytest
import requests

from connector.sandbox import SandboxServer
from connector.sandbox.directory import DEMO_APP_ID, DEMO_APP_KEY, FOREIGN_APPLICATION_IDS, FOREIGN_ORGANIZER, OTHER_APP_ID, OTHER_APP_KEY

GOOD = {
    "title": "Interview", "description": "", "duration": 60, "start_time": "2030-05-01T10:00:00",
    "timezone": "Europe/Stockholm", "organizer": "recruiter@acme.example", "participants": [1001],
}


@pytest.fixture
def api(sandbox):
    session = requests.Session()
    session.headers.update({"X-App-Id": DEMO_APP_ID, "X-App-Key": DEMO_APP_KEY})
    session.base = sandbox.url
    yield session
    session.close()


def post(api, body, path="/p1/events/"):
    return api.post(api.base + path, json=body, timeout=5)


def test_create_update_delete(api, sandbox):
    created = post(api, {**GOOD, "videoconferencing": True, "location": "Room"})
    assert created.status_code == 201
    event_id = created.json()["id"]
    update = {k: GOOD[k] for k in ("title", "description", "duration", "start_time", "timezone")} | {"title": "New"}
    assert api.put(f"{api.base}/p1/events/{event_id}/", json=update, timeout=5).status_code == 200
    assert sandbox.events()[0]["title"] == "New" and sandbox.events()[0]["version"] == 2
    assert api.delete(f"{api.base}/p1/events/{event_id}/", timeout=5).status_code == 204
    assert api.delete(f"{api.base}/p1/events/{event_id}/", timeout=5).status_code == 404


@pytest.mark.parametrize(
    "change, field",
    [
        ({"duration": 0}, "duration"), ({"duration": 481}, "duration"), ({"duration": True}, "duration"), ({"duration": 1.5}, "duration"),
        ({"start_time": "2030-05-01T10:00:00+02:00"}, "start_time"), ({"start_time": "2030-05-01 10:00"}, "start_time"),
        ({"start_time": "2030-03-31T02:30:00"}, "start_time"),
        ({"timezone": "Mars/Base"}, "timezone"), ({"timezone": "../etc/passwd"}, "timezone"),
        ({"organizer": "nobody@acme.example"}, "organizer"), ({"organizer": FOREIGN_ORGANIZER}, "organizer"), ({"organizer": "x"}, "organizer"),
        ({"participants": []}, "participants"), ({"participants": [True]}, "participants"), ({"participants": [1001, 1001]}, "participants"),
        ({"participants": [FOREIGN_APPLICATION_IDS[0]]}, "participants"),
        ({"title": ""}, "title"), ({"title": 5}, "title"), ({"description": None}, "description"),
        ({"videoconferencing": "yes"}, "videoconferencing"), ({"colour": "red"}, "colour"),
    ],
)
def test_each_rule_is_a_400_naming_the_field(api, change, field):
    answer = post(api, {**GOOD, **change})
    assert answer.status_code == 400 and field in answer.json(), answer.text


def test_every_failing_field_reported_and_required_fields(api):
    answer = post(api, {"duration": 0, "timezone": "Nope"})
    assert answer.status_code == 400
    assert {"duration", "timezone", "title", "description", "start_time", "organizer", "participants"} <= set(answer.json())


def test_put_cannot_change_fixed_fields(api):
    event_id = post(api, GOOD).json()["id"]
    body = {k: GOOD[k] for k in ("title", "description", "duration", "start_time", "timezone")} | {"participants": [1002]}
    answer = api.put(f"{api.base}/p1/events/{event_id}/", json=body, timeout=5)
    assert answer.status_code == 400 and answer.json()["participants"] == ["This field cannot be updated."]


def test_auth_and_partner_isolation(api, sandbox):
    assert requests.post(sandbox.url + "/p1/events/", json=GOOD, timeout=5).status_code == 403
    wrong = requests.post(sandbox.url + "/p1/events/", json=GOOD, headers={"X-App-Id": DEMO_APP_ID, "X-App-Key": "nope"}, timeout=5)
    assert wrong.status_code == 403 and wrong.json()["detail"] == "Invalid app credentials."
    event_id = post(api, GOOD).json()["id"]
    other = {"X-App-Id": OTHER_APP_ID, "X-App-Key": OTHER_APP_KEY}
    assert requests.delete(f"{sandbox.url}/p1/events/{event_id}/", headers=other, timeout=5).status_code == 403


def test_405_404_and_trailing_slash(api):
    assert api.get(api.base + "/p1/events/", timeout=5).status_code == 405
    assert api.post(api.base + "/p1/events", json=GOOD, timeout=5).status_code == 404
    assert api.put(api.base + "/p1/events/999/", json={}, timeout=5).status_code == 404


@pytest.mark.parametrize("fault, status, applied", [("429", 429, False), ("500", 500, False), ("503", 503, False), ("apply_then_500", 500, True), ("latency", 201, True)])
def test_scripted_faults(api, sandbox, fault, status, applied):
    sandbox.script({"method": "POST", "fault": fault, "retry_after": 3})
    answer = post(api, GOOD)
    assert answer.status_code == status
    if fault in ("429", "503"):
        assert answer.headers["Retry-After"] == "3"
    assert len(sandbox.events()) == (1 if applied else 0)
    assert sandbox.stats()["faults"] == {fault: 1}


def test_drop_closes_the_connection_without_applying(api, sandbox):
    sandbox.script({"method": "POST", "fault": "drop"})
    with pytest.raises(requests.ConnectionError):
        post(api, GOOD)
    assert sandbox.events() == [] and sandbox.requests_log()[0]["status"] is None


def test_random_faults_follow_the_rate(api, sandbox):
    sandbox.set_faults(rate=0.5, kinds={"503": 1}, seed=3)
    statuses = [post(api, GOOD).status_code for _ in range(200)]
    assert 60 < statuses.count(503) < 140 and statuses.count(201) == 200 - statuses.count(503)


def test_control_routes_over_http(api, sandbox):
    post(api, GOOD)
    assert len(requests.get(sandbox.url + "/_sandbox/events", timeout=5).json()) == 1
    assert requests.post(sandbox.url + "/_sandbox/script", json={"faults": [{"fault": "503"}]}, timeout=5).json() == {"queued": 1}
    assert post(api, GOOD).status_code == 503
    requests.post(sandbox.url + "/_sandbox/reset", timeout=5)
    assert sandbox.events() == [] and sandbox.stats()["requests"] == 0


def test_availability(api):
    post(api, GOOD)
    body = {
        "duration_min": 60, "response_format": "periods",
        "participants": [{"members": [{"email": "recruiter@acme.example"}], "required": True}],
        "query_periods": [{"start": "2030-05-01T09:00:00+02:00", "end": "2030-05-01T13:00:00+02:00"}],
    }
    answer = post(api, body, "/p2/users/calendar-availability/")
    assert answer.status_code == 200
    assert [(p["start"][11:16], p["end"][11:16]) for p in answer.json()] == [("09:00", "10:00"), ("11:00", "13:00")]


def test_binds_only_to_loopback():
    with pytest.raises(ValueError, match="loopback"):
        SandboxServer("0.0.0.0", 0)
