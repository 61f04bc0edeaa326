"""Validation and payload building of the canonical Interview."""

from datetime import UTC, datetime

import pytest

from connector.model import Interview, InvalidItem, build_interview

VALID = {
    "remote_id": "R1",
    "title": "Interview",
    "description": "",
    "start": "2030-03-01T09:30:00",
    "duration_minutes": 45,
    "timezone": "Europe/Stockholm",
    "organizer_email": "recruiter@acme.example",
    "application_ids": [1002, 1001, 1002],
}


def build(**changes):
    values = {**VALID, **changes}
    return build_interview({k: v for k, v in values.items() if v is not ...})


def errors_of(result):
    assert isinstance(result, InvalidItem), result
    return {e.field: e.message for e in result.errors}


def test_payload_is_exactly_what_jobylon_wants():
    interview = build(location="Room 1", videoconferencing=True)
    assert isinstance(interview, Interview)
    assert interview.payload == {
        "title": "Interview",
        "description": "",
        "duration": 45,
        "start_time": "2030-03-01T09:30:00",
        "timezone": "Europe/Stockholm",
        "organizer": "recruiter@acme.example",
        "participants": [1001, 1002],
        "location": "Room 1",
        "videoconferencing": True,
    }
    assert interview.update_payload == {k: interview.payload[k] for k in ("title", "description", "duration", "start_time", "timezone")}


def test_offset_aware_start_becomes_local_wall_time():
    interview = build(start="2030-07-01T07:00:00+00:00")
    assert interview.start_time == "2030-07-01T09:00:00"  # CEST
    assert interview.starts_at_utc == datetime(2030, 7, 1, 7, tzinfo=UTC)


def test_end_gives_duration():
    interview = build(duration_minutes=..., end="2030-03-01T10:45:00")
    assert interview.duration_minutes == 75


@pytest.mark.parametrize(
    "changes, field, fragment",
    [
        ({"duration_minutes": 0}, "duration_minutes", "1..480"),
        ({"duration_minutes": 481}, "duration_minutes", "1..480"),
        ({"duration_minutes": True}, "duration_minutes", "boolean"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA"),
        ({"organizer_email": "not-an-email"}, "organizer_email", "well-formed"),
        ({"organizer_email": "a" * 65 + "@x.example"}, "organizer_email", "well-formed"),
        ({"application_ids": []}, "application_ids", "at least one"),
        ({"application_ids": [1, "x"]}, "application_ids", "integer"),
        ({"application_ids": [-4]}, "application_ids", "positive"),
        ({"title": 7}, "title", "string"),
        ({"title": "a\nb"}, "title", "line breaks"),
        ({"title": "x" * 1_000_000}, "title", "longer than"),
        ({"remote_id": None}, "remote_id", "missing"),
        ({"start": "tomorrow"}, "start", "ISO 8601"),
        ({"start": "9999-01-01T10:00:00"}, "start", "outside"),
        ({"duration_minutes": ..., "end": "2030-03-01T09:00:00"}, "end", "not after start"),
        ({"duration_minutes": ..., "end": ...}, "end", "missing"),
    ],
)
def test_each_rule_names_the_field(changes, field, fragment):
    errors = errors_of(build(**changes))
    assert field in errors and fragment in errors[field]


def test_every_failing_field_is_reported():
    errors = errors_of(build(duration_minutes=0, timezone="Nowhere/City", organizer_email="x"))
    assert set(errors) == {"duration_minutes", "timezone", "organizer_email"}


def test_spring_dst_gap_is_invalid_with_a_message_saying_so():
    errors = errors_of(build(start="2030-03-31T02:30:00"))
    assert "does not exist in Europe/Stockholm" in errors["start"]


def test_autumn_ambiguous_time_takes_the_first_occurrence():
    interview = build(start="2030-10-27T02:30:00")
    assert interview.start_time == "2030-10-27T02:30:00"
    assert interview.starts_at_utc == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)  # CEST, +02:00


def test_hashes_separate_updatable_from_fixed_fields():
    base = build()
    moved = build(start="2030-03-01T11:00:00")
    recast = build(application_ids=[1001, 1003])
    assert base.fixed_hash == moved.fixed_hash and base.mutable_hash != moved.mutable_hash
    assert base.mutable_hash == recast.mutable_hash and base.fixed_hash != recast.fixed_hash
