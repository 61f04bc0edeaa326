"""A broken world against the whole pass: a 403 on one event fails that item alone (the pass stops
only when Jobylon refuses the partner as a whole), and the alert says so."""

from __future__ import annotations

from datetime import UTC, datetime

import requests
from conftest import CREATE_BODY, invoke_cli, item, run_cli

from connector.alerts import Observation, conditions
from connector.config import AlertsConfig
from connector.sandbox.directory import OTHER_APP_ID, OTHER_APP_KEY


def _foreign_event(sandbox) -> int:
    """An event another partner made: this partner may not change it (Jobylon answers 403)."""
    body = {**CREATE_BODY, "title": "Theirs"}
    answer = requests.post(sandbox.url + "/p1/events/", json=body, headers={"X-App-Id": OTHER_APP_ID, "X-App-Key": OTHER_APP_KEY}, timeout=5)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_a_403_on_one_event_fails_that_item_alone_and_the_pass_goes_on(harness):
    harness.write([item("A")])
    config = harness.config_file()
    assert run_cli("--config", str(config), "sync").returncode == 0
    foreign = _foreign_event(harness.sandbox)
    harness.write([item("A"), item("C")])
    harness.sandbox.script({"method": "POST", "fault": "500"})  # C's create: in doubt
    assert run_cli("--config", str(config), "sync").returncode == 1
    # The operator maps C to the wrong event: one another partner made.
    assert invoke_cli("--config", str(config), "resolve", "C", "--event-id", str(foreign)).returncode == 0
    harness.write([item("A"), item("C"), item("D"), item("E")])

    result = run_cli("--config", str(config), "sync")
    assert result.returncode == 1, result.stderr  # failed items, not "credentials refused" (4)
    titles = sorted(e["title"] for e in harness.jobylon_events())
    assert titles == ["Interview A", "Interview D", "Interview E"], "the new interviews were created"
    [failure] = harness.store.failures(remote_id="C")
    assert failure.kind == "permanent" and failure.http_status == 403
    assert f"does not let this partner change event {foreign}" in failure.message
    assert harness.sandbox.events(OTHER_APP_ID)[0]["title"] == "Theirs"

    again = run_cli("--config", str(config), "sync")
    assert again.returncode == 0 and harness.store.failures(remote_id="C")[0].attempts == 1, "parked: no PUT per poll"


def test_a_refused_partner_still_stops_the_pass(harness):
    harness.write([item("A"), item("B")])
    assert run_cli("--config", str(harness.config_file()), "sync").returncode == 0
    harness.data["jobylon"]["app_key"] = "wrong-key-000000"
    harness.write([item("A", title="moved"), item("B", title="moved")])
    result = run_cli("--config", str(harness.config_file()), "sync")
    assert result.returncode == 4 and "wrong-key-000000" not in result.stderr


def test_events_refused_to_this_partner_raise_an_alert_once():
    now = datetime.now(UTC)
    config = AlertsConfig()
    found = conditions(Observation("failed_items", None, 1, now, now, forbidden=2), config)
    assert "Jobylon refuses this partner 2 event(s)" in found["forbidden_events"]
    assert "forbidden_events" not in conditions(Observation("ok", None, 0, now, now), config)


def test_lone_surrogates_make_their_item_invalid_and_every_other_item_syncs(harness):
    harness.write(
        [
            item("OK1"),
            item("T", title="Interview \ud83d"),
            item("SUR\ud83d"),
            item("Z", organizer={"email": "recruiter@acme.example\ude00"}),
            item("OK2", title="Party \U0001f389"),
        ]
    )
    result = run_cli("--config", str(harness.config_file()), "sync")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert sorted(e["title"] for e in harness.jobylon_events()) == ["Interview OK1", "Party \U0001f389"]
    failures = {f.remote_id: f.message for f in harness.store.failures()}
    assert set(failures) == {"T", "SUR\\ud83d", "Z"}
    assert failures["T"].startswith("title: holds half of a character (lone surrogate U+D83D")
    assert failures["SUR\\ud83d"].startswith("remote_id: holds half of a character")
    assert "organizer_email" in failures["Z"]


def test_start_and_end_with_the_same_fractional_seconds(harness):
    harness.data["mapping"]["end"] = "end_at"
    raw = item("F", start_at="2031-03-04T08:00:00.250Z", end_at="2031-03-04T09:00:00.250Z", minutes=None)
    harness.write([raw])
    assert run_cli("--config", str(harness.config_file()), "sync").returncode == 0
    [event] = harness.jobylon_events()
    assert (event["duration"], event["start_time"], event["timezone"]) == (60, "2031-03-04T09:00:00", "Europe/Stockholm")
