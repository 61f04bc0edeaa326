"""The calendar_event receiver over real HTTP: what is stored, what is refused, and how."""

from __future__ import annotations

import base64
import json
import logging

import pytest
import requests
from conftest import Harness, invoke_cli, item

from connector.store.webhooks import WebhookStore
from connector.webhooks.service import WebhookService

USER, PASSWORD = "jobylon", "hook-pass-7f3a9c2e"
WEBHOOKS = {"port": 0, "username": USER, "password": PASSWORD, "settle_interval_seconds": 3600}


def delivery(event_id: int, **fields) -> dict:
    event = {
        "id": event_id,
        "title": "Interview",
        "description": "",
        "duration": 60,
        "location": None,
        "organizer": "recruiter@acme.example",
        "participants": [{"id": 1001, "rsvp": "no_rsvp"}],
        "start_time": "2030-01-02T10:00:00",
        "timezone": "Europe/Stockholm",
        "status": "created",
        "videoconferencing": False,
    }
    event.update(fields)
    return {"event_type": "calendar_event", "action": "updated", "calendar_event": event}


@pytest.fixture
def receiver(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox, webhooks=dict(WEBHOOKS))
    service = WebhookService(h.settings, h.store).start()
    try:
        yield h, service
    finally:
        service.stop()
        h.close()


def post(service, body, *, auth=(USER, PASSWORD), **kwargs):
    return requests.post(service.url, json=body, auth=auth, timeout=10, **kwargs)


def stored(h) -> int:
    return WebhookStore(h.store).counts()["events"]


def test_a_delivery_is_stored_with_its_rsvps_and_video_link(receiver):
    h, service = receiver
    body = delivery(
        41,
        status="invited",
        videoconferencing=True,
        vc_link_url="https://meet.example/41",
        participants=[{"id": 1001, "rsvp": "accepted"}, {"id": 1002, "rsvp": "no rsvp"}, {"id": 1003, "rsvp": "declined"}],
    )
    answer = post(service, body)
    assert answer.status_code == 200 and answer.json() == {"stored": True, "duplicate": False, "stale": False}
    tables = WebhookStore(h.store)
    row = tables.event(41)
    assert (row.status, row.video_link, row.participant_ids) == ("invited", "https://meet.example/41", [1001, 1002, 1003])
    assert [(r.application_id, r.rsvp) for r in tables.rsvps(41)] == [(1001, "accepted"), (1002, "no_rsvp"), (1003, "declined")]
    assert row.received_at and row.settled_as == "unmatched"  # no mapping holds event 41


def test_the_video_link_is_read_from_either_documented_key(receiver):
    h, service = receiver
    assert post(service, delivery(1, vc_link="https://a.example/1")).status_code == 200
    assert post(service, delivery(2, vc_link_url="https://b.example/2")).status_code == 200
    tables = WebhookStore(h.store)
    assert (tables.event(1).video_link, tables.event(2).video_link) == ("https://a.example/1", "https://b.example/2")


def test_a_duplicate_delivery_changes_nothing(receiver):
    h, service = receiver
    body = delivery(7, participants=[{"id": 1001, "rsvp": "awaiting"}])
    assert post(service, body).json()["stored"] is True
    before = WebhookStore(h.store).event(7)
    answer = post(service, body)
    assert answer.status_code == 200 and answer.json() == {"stored": False, "duplicate": True, "stale": False}
    assert WebhookStore(h.store).event(7) == before
    body["calendar_event"]["participants"][0]["rsvp"] = "accepted"
    assert post(service, body).json()["stored"] is True
    assert WebhookStore(h.store).rsvps(7)[0].rsvp == "accepted"


@pytest.mark.parametrize(
    "auth",
    [None, (USER, "wrong-password"), ("someone", PASSWORD), (USER, PASSWORD + "x")],
    ids=["none", "wrong password", "wrong user", "longer password"],
)
def test_bad_credentials_get_401_and_nothing_is_stored(receiver, auth):
    h, service = receiver
    answer = post(service, delivery(5), auth=auth)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    assert stored(h) == 0


def test_a_garbled_authorization_header_gets_401(receiver):
    h, service = receiver
    for header in ("Basic !!!", "Bearer x", "Basic " + base64.b64encode(b"no-colon").decode()):
        answer = requests.post(service.url, json=delivery(5), headers={"Authorization": header}, timeout=10)
        assert answer.status_code == 401, header
    assert stored(h) == 0


def test_oversized_and_malformed_bodies_get_413_and_400_with_nothing_stored(receiver):
    h, service = receiver
    big = delivery(9, description="x" * 1_100_000)
    assert post(service, big).status_code == 413
    auth = (USER, PASSWORD)
    headers = {"Content-Type": "application/json"}
    for raw in (b"{", b"not json", b"[1, 2]", json.dumps({"event_type": "calendar_event", "calendar_event": {"id": "x"}}).encode()):
        answer = requests.post(service.url, data=raw, auth=auth, headers=headers, timeout=10)
        assert answer.status_code == 400, raw
        assert "nothing stored" in answer.json()["detail"]
    assert requests.post(service.url, data=b"{}", auth=auth, headers={"Content-Type": "text/plain"}, timeout=10).status_code == 415
    assert stored(h) == 0


def test_only_post_on_the_configured_path(receiver):
    h, service = receiver
    answer = requests.get(service.url, auth=(USER, PASSWORD), timeout=10)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert requests.put(service.url, json=delivery(1), auth=(USER, PASSWORD), timeout=10).status_code == 405
    assert requests.post(service.url + "other/", json=delivery(1), auth=(USER, PASSWORD), timeout=10).status_code == 404
    assert stored(h) == 0


def test_another_event_type_is_acknowledged_and_not_stored(receiver):
    h, service = receiver
    answer = post(service, {"event_type": "application", "application": {"id": 3}})
    assert answer.status_code == 202 and stored(h) == 0


def test_a_required_header_and_an_ip_allow_list(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox, webhooks={**WEBHOOKS, "header_name": "X-Jobylon-Token", "header_value": "tok-123456789"})
    service = WebhookService(h.settings, h.store).start()
    try:
        assert post(service, delivery(1)).status_code == 401
        assert post(service, delivery(1), headers={"X-Jobylon-Token": "tok-wrong"}).status_code == 401
        assert post(service, delivery(1), headers={"X-Jobylon-Token": "tok-123456789"}).status_code == 200
    finally:
        service.stop()
        h.close()
    (tmp_path / "b").mkdir()
    h = Harness(tmp_path / "b", sandbox, webhooks={**WEBHOOKS, "allowed_ips": ["203.0.113.0/24"]})
    service = WebhookService(h.settings, h.store).start()
    try:
        assert post(service, delivery(1)).status_code == 403 and stored(h) == 0
    finally:
        service.stop()
        h.close()


def test_it_logs_its_url_and_never_the_password(tmp_path, sandbox, caplog):
    caplog.set_level(logging.INFO)
    h = Harness(tmp_path, sandbox, webhooks=dict(WEBHOOKS))
    service = WebhookService(h.settings, h.store).start()
    try:
        post(service, delivery(1), auth=(USER, "wrong-password"))
        post(service, delivery(1))
    finally:
        service.stop()
        h.close()
    assert f"webhooks: receiving calendar_event deliveries on {service.url} (basic auth)" in caplog.text
    assert PASSWORD not in caplog.text and "wrong-password" not in caplog.text
    assert PASSWORD in h.settings.secrets()


def test_a_port_in_use_is_a_config_error(receiver):
    from connector.errors import ConfigError

    h, service = receiver
    data = {**h.data, "webhooks": {**WEBHOOKS, "port": service.receiver.port}}
    h.data = data
    with pytest.raises(ConfigError, match=r"already in use \(webhooks.host / webhooks.port\)"):
        WebhookService(h.settings, h.store)


def test_a_receiver_open_to_other_machines_needs_a_protection(tmp_path, sandbox):
    from connector.errors import ConfigError

    h = Harness(tmp_path, sandbox, webhooks={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="Jobylon signs none"):
        h.settings  # noqa: B018
    h.data["webhooks"] = {"host": "0.0.0.0", "allowed_ips": ["203.0.113.7"]}
    assert h.settings.webhooks.host == "0.0.0.0"


def test_status_counts_and_events_show(receiver):
    h, service = receiver
    h.write([item("R1")])
    h.sync()
    event_id = h.store.event("R1").event_id
    payload = h.store.event("R1").payload_data
    body = delivery(event_id, **{k: payload[k] for k in ("title", "description", "duration", "start_time", "timezone", "organizer")})
    body["calendar_event"].update(status="invited", vc_link_url="https://meet.example/x", participants=[{"id": 1001, "rsvp": "accepted"}])
    assert post(service, body).status_code == 200
    config = h.config_file()
    status = invoke_cli("--config", str(config), "status", "--json")
    document = json.loads(status.stdout)["webhooks"]
    assert document["events"] == 1 and document["by_status"] == {"invited": 1} and document["rsvps"] == {"accepted": 1}
    assert document["settled_as"] == {"mapped": 1}
    shown = invoke_cli("--config", str(config), "events", "show", "R1", "--json")
    assert shown.returncode == 0, shown.stderr
    event = json.loads(shown.stdout)
    assert event["event_id"] == event_id and event["event"]["status"] == "invited"
    assert event["event"]["rsvps"] == [{"application_id": 1001, "rsvp": "accepted"}] and event["event"]["video_link"] == "https://meet.example/x"
    text = invoke_cli("--config", str(config), "events", "show", "R1")
    assert "https://meet.example/x" in text.stdout and "1001: accepted" in text.stdout
    assert "webhooks: 1 events (invited 1)" in invoke_cli("--config", str(config), "status").stdout
    assert invoke_cli("--config", str(config), "events", "show", "NOPE").returncode == 1


def test_forward_posts_the_normalised_record_with_retries(tmp_path, sandbox):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got, answers = [], [503, 200]

    class Partner(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((self.headers.get("Authorization"), json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    partner = ThreadingHTTPServer(("127.0.0.1", 0), Partner)
    threading.Thread(target=partner.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{partner.server_address[1]}/events"
    h = Harness(tmp_path, sandbox, webhooks={**WEBHOOKS, "forward": {"url": url, "headers": {"Authorization": "Bearer fwd-token-123"}}})
    service = WebhookService(h.settings, h.store).start()
    try:
        h.write([item("R1")])
        h.sync()
        row = h.store.event("R1")
        fields = {k: row.payload_data[k] for k in ("title", "description", "duration", "start_time", "timezone", "organizer")}
        body = delivery(row.event_id, **fields, status="invited", vc_link="https://meet.example/1", participants=[{"id": 1001, "rsvp": "accepted"}])
        assert post(service, body).status_code == 200
        assert service.forwarder.send_due() == 1  # a 503 first: retried at once
        record = {"remote_id": "R1", "event_id": row.event_id, "status": "invited", "rsvps": [{"application_id": 1001, "rsvp": "accepted"}]}
        assert [g[1] | {"received_at": None} for g in got] == [record | {"video_link": "https://meet.example/1", "received_at": None}] * 2
        assert got[0][0] == "Bearer fwd-token-123"
        assert WebhookStore(h.store).forwards() == []  # sent
    finally:
        service.stop()
        h.close()
        partner.shutdown()
