"""The pure decisions about a calendar_event delivery: the payload read, each row of the matching
and drift tables in connector/webhooks/matching.py."""

from __future__ import annotations

import pytest

from connector.model import with_marker
from connector.webhooks import matching
from connector.webhooks.matching import Candidate, Item, Situation
from connector.webhooks.payload import PayloadError, parse_delivery, state_hash

BODY = {
    "title": "Interview R1",
    "description": "notes",
    "duration": 60,
    "start_time": "2030-01-02T10:00:00",
    "timezone": "Europe/Stockholm",
    "organizer": "recruiter@acme.example",
    "participants": [1001, 1002],
}


def event(event_id=7, body=BODY, **fields):
    calendar_event = {**body, "id": event_id, "status": "created", "participants": [{"id": p, "rsvp": "no_rsvp"} for p in body["participants"]]}
    calendar_event.update(fields)
    parsed = parse_delivery({"event_type": "calendar_event", "action": "updated", "calendar_event": calendar_event})
    assert parsed is not None
    return parsed


def test_the_payload_accepts_both_documented_spellings():
    e = event(vc_link="https://a/1", status="cancelled", participants=[{"id": 1, "rsvp": "no rsvp"}, {"id": 2, "rsvp": "Accepted"}])
    assert (e.video_link, e.status, e.rsvps) == ("https://a/1", "canceled", ((1, "no_rsvp"), (2, "accepted")))
    assert event(vc_link_url="https://b/2").video_link == "https://b/2"
    assert event(start_time="2030-01-02T09:00:00Z").start_time == "2030-01-02T10:00:00"  # an offset read as wall time in the zone
    assert parse_delivery({"event_type": "application", "application": {}}) is None
    for bad in ([], {"event_type": "calendar_event"}, {"calendar_event": {"id": "x"}}, {"calendar_event": {"id": 1, "participants": "1"}}):
        with pytest.raises(PayloadError):
            parse_delivery(bad)


def test_a_mapped_event_and_a_stale_one():
    assert matching.settle(Situation(event(), holder=Item("R1", "synced", 7, BODY))) == matching.Mapped("R1")
    assert isinstance(matching.settle(Situation(event(), seen=True)), matching.Stale)


def test_exactly_one_in_doubt_create_with_every_field_equal_is_linked():
    doubts = [Candidate("R1", BODY), Candidate("R2", {**BODY, "title": "other"})]
    decision = matching.settle(Situation(event(), in_doubt=doubts))
    assert isinstance(decision, matching.Link) and (decision.remote_id, decision.how) == ("R1", "exact")
    # participants in another order, an empty location, videoconferencing absent vs false: still equal
    same = {**BODY, "participants": [1002, 1001], "location": ""}
    assert isinstance(matching.settle(Situation(event(videoconferencing=False), in_doubt=[Candidate("R1", same)])), matching.Link)
    # one field different: nothing
    assert isinstance(matching.settle(Situation(event(duration=45), in_doubt=doubts)), matching.Unmatched)


def test_two_equal_in_doubt_creates_are_ambiguous_and_an_in_flight_create_waits():
    two = [Candidate("R1", BODY), Candidate("R2", BODY)]
    assert matching.settle(Situation(event(), in_doubt=two)) == matching.Ambiguous(("R1", "R2"))
    assert matching.settle(Situation(event(), in_flight=[Candidate("R3", BODY)], in_doubt=two)) == matching.Wait("R3")


def test_the_marker_decides_without_comparing_fields():
    marked = with_marker(BODY, "R1")
    e = event(body={**marked, "title": "edited inside Jobylon"})
    doubt = Candidate("R1", marked)
    decision = matching.settle(Situation(e, marker_item=Item("R1", "in_doubt", None), in_doubt=[doubt]))
    assert isinstance(decision, matching.Link) and decision.how == "marker"
    assert matching.settle(Situation(e, marker_item=Item("R1", "pending", None), in_flight=[doubt])) == matching.Wait("R1")
    assert matching.settle(Situation(e, marker_item=Item("R1", "synced", 3))) == matching.Duplicate("R1", 3, "marker")
    assert isinstance(matching.settle(Situation(e, marker_item=None)), matching.Unmatched)
    assert isinstance(matching.settle(Situation(e, marker_item=Item("R1", "detached", 3))), matching.Unmatched)


def test_a_look_alike_of_a_mapped_item_is_a_likely_duplicate():
    decision = matching.settle(Situation(event(), look_alikes=[Item("R1", "synced", 3, BODY)]))
    assert decision == matching.Duplicate("R1", 3, "exact")
    # the event itself, mapped while the state was being read: not a copy of itself
    assert matching.settle(Situation(event(7), look_alikes=[Item("R1", "synced", 7, BODY)])) == matching.Mapped("R1")
    marked = event(7, body=with_marker(BODY, "R1"))
    assert matching.settle(Situation(marked, marker_item=Item("R1", "synced", 7))) == matching.Mapped("R1")


def test_drift_rows():
    item = Item("R1", "synced", 7, BODY)
    assert matching.drift(event(), item) is None
    assert matching.drift(event(status="canceled"), item) == matching.Drift("cancelled")
    assert matching.drift(event(status="canceled"), item, deleting=True) is None
    assert matching.drift(event(status="canceled"), Item("R1", "detached", 7, BODY)) is None
    assert matching.drift(event(title="x"), item) == matching.Drift("changed", ("title",))
    assert matching.drift(event(title="x"), item, expected=[{"title": "x"}]) is None  # our own PUT, answer not yet recorded
    assert matching.drift(event(body={**BODY, "participants": [1001]}), item) == matching.Drift("fixed", ("participants",))
    assert matching.drift(event(title="x"), Item("R1", "synced", 7, None)) is None


def test_a_state_our_recent_calls_left_is_no_drift():
    """Jobylon may deliver an older state late (a lost delivery retried): one of ours is stale."""
    item = Item("R1", "synced", 7, {**BODY, "title": "v2"})
    older = {**BODY, "title": "v1", "participants": [1002, 1001], "location": ""}  # as create_fields compares it
    recent = [state_hash({**BODY, "title": "v2"}), state_hash(older)]
    assert matching.drift(event(title="v1"), item, recent=recent) is None
    assert matching.drift(event(title="v1"), item) == matching.Drift("changed", ("title",))
    assert matching.drift(event(title="v0"), item, recent=recent) == matching.Drift("changed", ("title",))  # never ours
    assert matching.drift(event(title="v1", status="canceled"), item, recent=recent) == matching.Drift("cancelled")
    assert state_hash(event(title="v1").fields()) == state_hash(older)


def test_a_late_redelivery_is_an_older_state_of_ours_never_the_current_one_or_a_cancellation():
    item = Item("R1", "synced", 7, {**BODY, "title": "v2"})
    recent = [state_hash({**BODY, "title": "v2"}), state_hash({**BODY, "title": "v1"})]
    assert matching.late_redelivery(event(title="v1"), item, recent)
    assert not matching.late_redelivery(event(title="v2"), item, recent)  # the current state: an RSVP may have changed
    assert not matching.late_redelivery(event(title="v0"), item, recent)  # never ours: drift, stored
    assert not matching.late_redelivery(event(title="v1", status="canceled"), item, recent)
    assert not matching.late_redelivery(event(title="v1"), Item("R1", "detached", 7, {**BODY, "title": "v2"}), recent)
    assert not matching.late_redelivery(event(title="v1"), Item("R1", "synced", 8, {**BODY, "title": "v2"}), recent)  # another event
    assert not matching.late_redelivery(event(title="v1"), None, recent)


@pytest.mark.parametrize(
    ("kind", "on_drift", "repair"),
    [
        ("changed", "report", None),
        ("changed", "update", "update"),
        ("changed", "recreate", "update"),
        ("cancelled", "report", None),
        ("cancelled", "update", None),
        ("cancelled", "recreate", "recreate"),
        ("fixed", "update", None),
        ("fixed", "recreate", "recreate"),
    ],
)
def test_what_on_drift_does(kind, on_drift, repair):
    assert matching.repair(matching.Drift(kind), on_drift) == repair
