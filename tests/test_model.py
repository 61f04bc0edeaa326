"""The canonical Interview: validation into it, its payloads, and its hashes (part of the state format)."""

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.model import (
    FieldError,
    Interview,
    InvalidItem,
    _digest,
    fixed_hash,
    mutable_hash,
    payload_hash,
    read_marker,
    reference_marker,
    with_marker,
    without_marker,
)
from connector.validation import build_interview

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


# -- the hashes: part of the state format ----------------------------------------------------


def test_hash_values_are_the_ones_stored_in_users_databases():
    """Computed before the two hash definitions were merged into one (and by every release before):
    a change here makes every stored mapping look changed, see docs/design.md section 7."""
    interview = build(location="Room 1", videoconferencing=True)
    assert interview.mutable_hash == "34324e78a3138449c894c153cb58b9f4"
    assert interview.fixed_hash == "5738dd9e49e87fd6e3acfb37874cee5a"
    assert interview.content_hash == "0ddbb8b006a8704406f0de5c43b16eb3"
    assert build(location="Room 1", videoconferencing=True, cancelled=True).content_hash == "2649e81af75b4aa17204cecb5226cade"
    plain = build()
    assert plain.mutable_hash == "34324e78a3138449c894c153cb58b9f4"
    assert plain.fixed_hash == "439f50108fc2f3dcb8185d5cc75af57b"
    assert plain.content_hash == "b7af18636e09c43f240b27c0801ad743"
    assert mutable_hash(interview.payload) == "34324e78a3138449c894c153cb58b9f4"
    assert fixed_hash(interview.payload) == "5738dd9e49e87fd6e3acfb37874cee5a"
    # A missing field counts as None: an update body has none of the fixed fields.
    assert fixed_hash(interview.update_payload) == "026ede774cd5d5456bd642ded9cec11c"
    assert mutable_hash({}) == "534f70c72c0e95311efe30626dcd82cd"
    assert payload_hash({"b": 1, "a": [1, "é"]}) == "707cb3f912e0644a69b038aaf21c41a4" == payload_hash({"a": [1, "é"], "b": 1})


ZONES = ["Europe/Stockholm", "America/New_York", "Asia/Kolkata", "UTC"]
interviews = st.builds(
    Interview,
    remote_id=st.text(min_size=1, max_size=10),
    title=st.text(max_size=20),
    description=st.text(max_size=40),
    start=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2100, 12, 30),
        timezones=st.sampled_from([UTC, ZoneInfo("Europe/Stockholm"), ZoneInfo("Pacific/Chatham")]),
    ),
    duration_minutes=st.integers(1, 480),
    timezone=st.sampled_from(ZONES),
    organizer_email=st.text(max_size=20),
    application_ids=st.lists(st.integers(1, 10**12), min_size=1, max_size=4).map(lambda ids: tuple(sorted(set(ids)))),
    location=st.one_of(st.none(), st.text(max_size=20)),
    videoconferencing=st.one_of(st.none(), st.booleans()),
    cancelled=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(interview=interviews)
def test_interview_hashes_agree_with_the_payload_hash_functions(interview):
    """`connector resolve` and the stored payloads hash with the functions, the plan with the
    attributes: the two must agree for every interview."""
    assert interview.fixed_hash == fixed_hash(interview.payload)
    assert interview.mutable_hash == mutable_hash(interview.payload) == mutable_hash(interview.update_payload)


@settings(max_examples=300, deadline=None)
@given(interview=interviews)
def test_interview_fingerprints_are_the_reference_formulas(interview):
    """They are computed the fast way (the constructor, a copied hash); these are their definitions,
    which the stored hashes of every user's database were made with."""
    local = interview.start.astimezone(ZoneInfo(interview.timezone))
    assert interview.start_time == local.replace(tzinfo=None).isoformat(timespec="seconds")
    assert interview.ends_at_utc == interview.start.astimezone(UTC) + timedelta(minutes=interview.duration_minutes)


@given(text=st.text(alphabet=st.characters(blacklist_categories=()), max_size=40))
def test_digest_is_blake2b_of_the_text_with_surrogates_passed(text):
    assert _digest(text) == hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def test_invalid_item_label_and_message():
    errors = (FieldError("title", "missing"), FieldError("timezone", "unknown IANA time zone 'X'"))
    assert InvalidItem("R7", 3, errors).label == "R7"
    assert InvalidItem(None, 3, errors).label == "<item #3>"
    assert InvalidItem(None, 3, errors).message == "title: missing; timezone: unknown IANA time zone 'X'"


# -- the reference marker (sync.reference_marker) ---------------------------------------------


def test_reference_marker_is_one_json_quoted_line():
    assert reference_marker("INT-1002") == '[connector ref: "INT-1002"]'
    assert reference_marker('a"b\nc é') == '[connector ref: "a\\"b\\nc \\u00e9"]'


def test_with_marker_appends_the_marker_line_and_leaves_the_rest():
    body = {"title": "T", "description": "Notes", "duration": 30}
    marked = with_marker(body, "R1")
    assert marked == {"title": "T", "description": 'Notes\n\n[connector ref: "R1"]', "duration": 30}
    assert body["description"] == "Notes"  # the body given is not changed
    for empty in ({"description": ""}, {"description": None}, {}):
        assert with_marker(empty, "R1")["description"] == '[connector ref: "R1"]'


def test_without_marker_takes_off_only_a_trailing_marker_line():
    assert without_marker({"title": "T", "description": 'Notes\n\n[connector ref: "R1"]'}) == {"title": "T", "description": "Notes"}
    assert without_marker({"description": '[connector ref: "R1"]'}) == {"description": ""}
    assert without_marker({"description": 'Notes\n[connector ref: "R1"]  \n'}) == {"description": "Notes"}
    for unmarked in ({"description": "Notes"}, {"description": "a\nb"}, {"description": ""}, {"description": None}, {"title": "T"}):
        assert without_marker(unmarked) == unmarked
    assert without_marker({"description": '[connector ref: "R1"]\n\nNotes'}) == {"description": '[connector ref: "R1"]\n\nNotes'}


@settings(max_examples=300, deadline=None)
@given(description=st.text(max_size=30), remote_id=st.text(min_size=1, max_size=10))
def test_without_marker_undoes_with_marker_and_read_marker_names_the_id(description, remote_id):
    body = {"title": "T", "description": description}
    marked = with_marker(body, remote_id)
    assert read_marker(marked["description"]) == remote_id
    assert without_marker(marked) == body
    assert mutable_hash(without_marker(marked)) == mutable_hash(body)


@pytest.mark.parametrize(
    "description",
    [
        None,
        "",
        "Notes",
        '[connector ref: "R1"]\nNotes',  # not on the last line
        '[connector ref: "R1"',  # no closing bracket
        '[connector ref: "R1"x',  # the prefix without the suffix, JSON inside
        'connector-ref:--"R1"]',  # the suffix without the prefix
        '[connector ref: "R1]',  # not JSON
        "[connector ref: 5]",  # not a string
        '[connector ref: ""]',  # an empty id
        "[connector ref: null]",
    ],
)
def test_read_marker_finds_no_id(description):
    assert read_marker(description) is None


def test_read_marker_reads_the_last_line_whitespace_aside():
    assert read_marker('Notes\n\n  [connector ref: "R1"]  \n\n') == "R1"
    assert read_marker('[connector ref: "a\\"b\\nc"]') == 'a"b\nc'
