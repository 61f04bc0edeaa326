"""Field validation (connector.validation): every rule at its boundary, every message naming its field."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.model import Interview, InvalidItem, payload_hash
from connector.validation import MAX_REMOTE_ID, MAX_TEXT, MAX_TITLE, build_interview, localize, zone

VALID = {
    "remote_id": "R1",
    "title": "Interview",
    "description": "",
    "start": "2030-03-01T09:30:00",
    "duration_minutes": 45,
    "timezone": "Europe/Stockholm",
    "organizer_email": "recruiter@acme.example",
    "application_ids": [1001],
}


def build(**changes):
    values = {**VALID, **changes}
    return build_interview({k: v for k, v in values.items() if v is not ...})


def valid(**changes) -> Interview:
    result = build(**changes)
    assert isinstance(result, Interview), result
    return result


def errors_of(result) -> dict[str, str]:
    assert isinstance(result, InvalidItem), result
    return {e.field: e.message for e in result.errors}


def error(**changes) -> str:
    """The one error these changes cause, as "field: message"."""
    result = build(**changes)
    assert isinstance(result, InvalidItem), result
    assert len(result.errors) == 1, result.errors
    return str(result.errors[0])


def email_of_length(total: int, local: int = 64) -> str:
    """A well-formed address of exactly `total` characters with a `local`-character local part."""
    labels = ("d" * 50 + ".") * 3  # 153 characters
    rest = total - local - 1 - len(labels) - len(".se")
    assert 1 <= rest <= 63
    return "l" * local + "@" + labels + "e" * rest + ".se"


# -- the invalid item ------------------------------------------------------------------------


def test_invalid_item_keeps_the_remote_id_index_and_a_hash_of_the_values():
    values = {**VALID, "timezone": "Mars/Olympus", "title": None}
    result = build_interview(values, index=7)
    assert isinstance(result, InvalidItem)
    assert (result.remote_id, result.index, result.content_hash) == ("R1", 7, payload_hash(values))
    assert result.message == "title: missing; timezone: unknown IANA time zone 'Mars/Olympus'"


def test_the_built_interview_holds_the_values():
    interview = valid(remote_id=42, location="Room 1", videoconferencing="yes", cancelled="0", updated_at="2030-01-01T10:00:00")
    assert interview.remote_id == "42"
    assert interview.location == "Room 1" and interview.videoconferencing is True and interview.cancelled is False
    assert interview.updated_at == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert interview.start == datetime(2030, 3, 1, 9, 30, tzinfo=zone("Europe/Stockholm"))
    plain = valid()
    assert plain.location is None and plain.videoconferencing is None and plain.cancelled is False and plain.updated_at is None


# -- remote id -------------------------------------------------------------------------------


def test_remote_id_rules():
    assert valid(remote_id="  R1 ").remote_id == "R1"
    assert valid(remote_id=0).remote_id == "0"
    assert error(remote_id=None) == "remote_id: missing"
    assert error(remote_id=True) == "remote_id: expected a string or integer, got boolean"
    assert error(remote_id=1.5) == "remote_id: expected a string or integer, got float"
    assert error(remote_id="   ") == "remote_id: must not be empty"
    assert error(remote_id="R\x001") == "remote_id: contains control characters"


def test_remote_id_length_boundary():
    assert valid(remote_id="r" * (MAX_REMOTE_ID - 1)).remote_id == "r" * 254
    assert valid(remote_id="r" * MAX_REMOTE_ID).remote_id == "r" * 255
    assert error(remote_id="r" * (MAX_REMOTE_ID + 1)) == "remote_id: longer than 255 characters"


# -- text ------------------------------------------------------------------------------------


def test_title_rules():
    assert error(title=...) == "title: missing"
    assert error(title=None) == "title: missing"
    assert error(title=7) == "title: expected a string, got int"
    assert error(title=" \t ") == "title: must not be empty"
    assert error(title="a\nb") == "title: contains control characters or line breaks"
    assert error(title="a\x7fb") == "title: contains control characters or line breaks"
    assert valid(title="  padded  ").title == "  padded  "


def test_description_rules():
    assert error(description=None) == "description: missing"
    assert error(description=["x"]) == "description: expected a string, got list"
    assert valid(description="   ").description == "   "  # only a title must not be blank
    assert valid(description="line 1\r\nline 2\ttabbed").description == "line 1\r\nline 2\ttabbed"
    assert error(description="a\x00b") == "description: contains control characters"
    assert error(description="a\x1bb") == "description: contains control characters"


def test_location_rules():
    assert valid(location=None).location is None
    assert error(location=3) == "location: expected a string, got int"
    assert error(location="Room\n2") == "location: contains control characters or line breaks"
    assert valid(location="").location == ""


@pytest.mark.parametrize("name, limit", [("title", MAX_TITLE), ("location", MAX_TITLE), ("description", MAX_TEXT)])
def test_text_length_boundary(name, limit):
    assert getattr(valid(**{name: "x" * (limit - 1)}), name) == "x" * (limit - 1)
    assert getattr(valid(**{name: "x" * limit}), name) == "x" * limit
    assert error(**{name: "x" * (limit + 1)}) == f"{name}: longer than {limit} characters ({limit + 1})"


# -- time zone -------------------------------------------------------------------------------


def test_timezone_rules():
    assert valid(timezone="America/New_York").timezone == "America/New_York"
    assert error(timezone=None) == "timezone: missing"
    assert error(timezone="") == "timezone: expected an IANA zone name, got str"
    assert error(timezone=5) == "timezone: expected an IANA zone name, got int"
    assert error(timezone="Mars/Olympus") == "timezone: unknown IANA time zone 'Mars/Olympus'"
    assert error(timezone="../../etc/passwd") == "timezone: unknown IANA time zone '../../etc/passwd'"


def test_an_unknown_timezone_is_shown_whole_up_to_64_characters_then_cut_and_escaped():
    for length in (63, 64):
        assert error(timezone="Z" * length) == f"timezone: unknown IANA time zone '{'Z' * length}'"
    assert error(timezone="Z" * 65) == f"timezone: unknown IANA time zone '{'Z' * 64}...'"
    assert error(timezone="Bad\nZone") == "timezone: unknown IANA time zone 'Bad\\\\nZone...'"


# -- start, end, duration --------------------------------------------------------------------


def test_start_rules():
    assert error(start=...) == "start: missing"
    assert error(start=None) == "start: missing"
    assert error(start=True) == "start: expected an ISO 8601 date-time, got boolean"
    assert error(start=[2030]) == "start: expected an ISO 8601 date-time, got list"
    assert error(start="tomorrow") == "start: not an ISO 8601 date-time (e.g. 2026-03-01T09:30:00+01:00)"
    assert error(start=10**20) == "start: timestamp out of range"
    assert valid(start=1_900_000_000).start == datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC)
    assert valid(start=1_900_000_000.0).start == datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC)
    assert valid(start=" 2030-03-01T09:30:00 ").start_time == "2030-03-01T09:30:00"
    moment = datetime(2030, 3, 1, 8, 30, tzinfo=UTC)
    assert valid(start=moment).start_time == "2030-03-01T09:30:00"


def test_start_drops_microseconds():
    interview = valid(start="2030-03-01T09:30:00.999999")
    assert interview.start.microsecond == 0 and interview.start_time == "2030-03-01T09:30:00"
    assert valid(start="2030-03-01T09:30:00.000001+00:00").start == datetime(2030, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "year, ok",
    [(1969, False), (1970, True), (1971, True), (2099, True), (2100, True), (2101, False)],
)
def test_start_year_boundaries(year, ok):
    result = build(start=f"{year}-06-01T10:00:00")
    if ok:
        assert isinstance(result, Interview) and result.start.year == year
    else:
        assert errors_of(result) == {"start": f"year {year} is outside 1970..2100"}


def test_local_start_in_the_spring_gap_is_invalid_and_names_the_field():
    assert error(start="2030-03-31T02:30:00") == (
        "start: local time 2030-03-31T02:30:00 does not exist in Europe/Stockholm (skipped by a daylight-saving change)"
    )
    end = build(duration_minutes=..., start="2030-03-31T01:30:00", end="2030-03-31T02:15:00")
    assert errors_of(end) == {"end": "local time 2030-03-31T02:15:00 does not exist in Europe/Stockholm (skipped by a daylight-saving change)"}


def test_a_bad_timezone_is_the_only_error_of_a_local_or_aware_start():
    assert errors_of(build(timezone="Nowhere/City")) == {"timezone": "unknown IANA time zone 'Nowhere/City'"}
    assert set(errors_of(build(timezone="Nowhere/City", start="2030-03-01T09:30:00+01:00"))) == {"timezone"}


def test_localize():
    stockholm = zone("Europe/Stockholm")
    assert localize(datetime(2030, 3, 1, 9, 30), stockholm) == datetime(2030, 3, 1, 8, 30, tzinfo=UTC)
    assert localize(datetime(2030, 3, 31, 2, 30), stockholm) is None  # the gap
    first = localize(datetime(2030, 10, 27, 2, 30), stockholm)  # the hour that happens twice
    assert first is not None and first.fold == 0 and first.utcoffset() == timedelta(hours=2)


def _reference_localize(wall, tz):
    """localize's definition, with datetime.replace as it was first written."""
    aware = wall.replace(tzinfo=tz, fold=0)
    if aware.utcoffset() == wall.replace(tzinfo=tz, fold=1).utcoffset():
        return aware
    return None if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall else aware


@settings(max_examples=500, deadline=None)
@given(
    wall=st.one_of(
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 12, 30)),
        # the hours around the changes of 2030 (gaps and repeated hours)
        st.datetimes(min_value=datetime(2030, 3, 8), max_value=datetime(2030, 4, 7)),
        st.datetimes(min_value=datetime(2030, 10, 25), max_value=datetime(2030, 11, 4)),
    ),
    name=st.sampled_from(["Europe/Stockholm", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "UTC"]),
)
def test_localize_is_its_reference(wall, name):
    tz = zone(name)
    found, expected = localize(wall, tz), _reference_localize(wall, tz)
    assert found == expected and (found is None or (found.fold, found.tzinfo, found.replace(tzinfo=None)) == (0, tz, wall))


@pytest.mark.parametrize("minutes, ok", [(0, False), (1, True), (2, True), (479, True), (480, True), (481, False), (-5, False)])
def test_duration_boundaries(minutes, ok):
    result = build(duration_minutes=minutes)
    if ok:
        assert isinstance(result, Interview) and result.duration_minutes == minutes
    else:
        assert errors_of(result) == {"duration_minutes": f"duration must be 1..480 minutes, got {minutes}"}


def test_duration_forms():
    assert valid(duration_minutes=" 30 ").duration_minutes == 30
    assert valid(duration_minutes="30").duration_minutes == 30
    assert valid(duration_minutes=30.0).duration_minutes == 30
    assert error(duration_minutes="-3") == "duration_minutes: duration must be 1..480 minutes, got -3"
    assert error(duration_minutes=30.5) == "duration_minutes: expected an integer number of minutes, got float"
    assert error(duration_minutes="half an hour") == "duration_minutes: expected an integer number of minutes, got str"
    assert error(duration_minutes=False) == "duration_minutes: expected an integer number of minutes, got boolean"
    # duration_minutes wins over end when both are mapped
    assert valid(duration_minutes=30, end="2030-03-01T12:00:00").duration_minutes == 30


@pytest.mark.parametrize(
    "end, outcome",
    [
        ("2030-03-01T09:29:00", "end: is not after start"),
        ("2030-03-01T09:30:00", "end: is not after start"),  # exactly at start
        ("2030-03-01T09:30:30", "end: is not a whole number of minutes after start"),
        ("2030-03-01T09:31:00", 1),
        ("2030-03-01T17:29:00", 479),
        ("2030-03-01T17:30:00", 480),
        ("2030-03-01T17:31:00", "end: duration must be 1..480 minutes, got 481"),
        ("2030-03-01T09:30:00Z", 60),  # aware: 10:30 in Stockholm
    ],
)
def test_end_gives_the_duration(end, outcome):
    result = build(duration_minutes=..., end=end)
    if isinstance(outcome, int):
        assert isinstance(result, Interview) and result.duration_minutes == outcome
        assert result.ends_at_utc == datetime(2030, 3, 1, 8, 30, tzinfo=UTC) + timedelta(minutes=outcome)
    else:
        assert [str(e) for e in result.errors] == [outcome]


def test_end_is_silent_when_start_is_invalid_and_reports_itself_when_it_is_bad():
    assert errors_of(build(start="tomorrow", duration_minutes=..., end="2030-03-01T10:00:00")) == {
        "start": "not an ISO 8601 date-time (e.g. 2026-03-01T09:30:00+01:00)"
    }
    assert errors_of(build(duration_minutes=..., end="later")) == {"end": "not an ISO 8601 date-time (e.g. 2026-03-01T09:30:00+01:00)"}
    assert errors_of(build(duration_minutes=..., end=...)) == {"end": "missing: map `end` or `duration_minutes`"}
    assert errors_of(build(duration_minutes=None, end=None)) == {"end": "missing: map `end` or `duration_minutes`"}


# -- organizer email -------------------------------------------------------------------------


def test_email_rules():
    assert valid(organizer_email="  ops@initech.example ").organizer_email == "ops@initech.example"
    assert error(organizer_email=None) == "organizer_email: missing"
    assert error(organizer_email=12) == "organizer_email: expected an email address, got int"
    assert error(organizer_email="no-at-sign") == "organizer_email: not a well-formed email address: 'no-at-sign'"
    assert error(organizer_email="a@b") == "organizer_email: not a well-formed email address: 'a@b'"


@pytest.mark.parametrize("total, ok", [(253, True), (254, True), (255, False)])
def test_email_length_boundary(total, ok):
    address = email_of_length(total)
    assert len(address) == total
    result = build(organizer_email=address)
    assert isinstance(result, Interview) if ok else errors_of(result)["organizer_email"].startswith("not a well-formed email address")


@pytest.mark.parametrize("local, ok", [(63, True), (64, True), (65, False)])
def test_email_local_part_boundary(local, ok):
    address = "l" * local + "@acme.example"
    result = build(organizer_email=address)
    assert isinstance(result, Interview) if ok else errors_of(result) == {"organizer_email": f"not a well-formed email address: {address!r}"}


def test_a_bad_email_is_shown_whole_up_to_80_characters_then_cut_and_escaped():
    for length in (79, 80):
        bad = "x" * length
        assert error(organizer_email=bad) == f"organizer_email: not a well-formed email address: {bad!r}"
    assert error(organizer_email="x" * 81) == f"organizer_email: not a well-formed email address: '{'x' * 80}...'"
    assert error(organizer_email="a\x01b@x.example") == "organizer_email: not a well-formed email address: 'a\\\\x01b@x.example...'"


# -- application ids -------------------------------------------------------------------------


def test_application_ids_rules():
    assert valid(application_ids=[3, 1, 3]).application_ids == (1, 3)
    assert valid(application_ids=1001).application_ids == (1001,)
    assert valid(application_ids="1001").application_ids == (1001,)
    assert valid(application_ids=[" 7 ", 5]).application_ids == (5, 7)
    assert error(application_ids=None) == "application_ids: missing"
    assert error(application_ids=True) == "application_ids: expected a list of integer application ids, got boolean"
    assert error(application_ids={"id": 1}) == "application_ids: expected a list of integer application ids, got dict"
    assert error(application_ids=[]) == "application_ids: must hold at least one application id"
    assert error(application_ids=[1, True]) == "application_ids: item 1: expected an integer application id, got boolean"
    assert error(application_ids=[1, "x"]) == "application_ids: item 1: expected an integer application id, got str"
    assert error(application_ids=[1.0]) == "application_ids: item 0: expected an integer application id, got float"


@pytest.mark.parametrize("value, ok", [(-1, False), (0, False), (1, True), (2, True)])
def test_application_id_positive_boundary(value, ok):
    result = build(application_ids=[value])
    if ok:
        assert isinstance(result, Interview) and result.application_ids == (value,)
    else:
        assert errors_of(result) == {"application_ids": f"item 0: application id must be positive, got {value}"}


# -- booleans --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (True, True),
        (False, False),
        ("true", True),
        (" TRUE ", True),
        ("1", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        (1, True),
        (0, False),
    ],
)
def test_booleans_accept_the_usual_spellings(raw, expected):
    assert valid(videoconferencing=raw).videoconferencing is expected
    assert valid(cancelled=raw).cancelled is expected


@pytest.mark.parametrize("raw, kind", [("maybe", "str"), ("", "str"), (2, "int"), (-1, "int"), (1.0, "float"), ([True], "list")])
def test_booleans_refuse_anything_else(raw, kind):
    assert error(videoconferencing=raw) == f"videoconferencing: expected true or false, got {kind}"
    assert error(cancelled=raw) == f"cancelled: expected true or false, got {kind}"


def test_cancelled_defaults_to_false_and_videoconferencing_to_none():
    interview = valid(cancelled=None, videoconferencing=None)
    assert interview.cancelled is False and interview.videoconferencing is None


# -- updated_at ------------------------------------------------------------------------------


def test_updated_at():
    assert valid(updated_at=None).updated_at is None
    assert valid(updated_at="").updated_at is None
    assert valid(updated_at="2030-01-01T10:00:00").updated_at == datetime(2030, 1, 1, 10, tzinfo=UTC)  # naive: UTC
    aware = valid(updated_at="2030-01-01T10:00:00+02:00").updated_at
    assert aware is not None and aware.utcoffset() == timedelta(hours=2) and aware == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert valid(updated_at=datetime(2030, 1, 1, 10, tzinfo=timezone(timedelta(hours=-5)))).updated_at.utcoffset() == timedelta(hours=-5)
    assert valid(updated_at=1_900_000_000).updated_at == datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC)
    assert error(updated_at="yesterday") == "updated_at: not an ISO 8601 date-time (e.g. 2026-03-01T09:30:00+01:00)"
    assert error(updated_at="1969-12-31T23:00:00") == "updated_at: year 1969 is outside 1970..2100"
    assert error(updated_at=True) == "updated_at: expected an ISO 8601 date-time, got boolean"


def test_every_failing_field_is_reported_in_field_order():
    result = build(remote_id=None, title="", start="x", organizer_email="x", application_ids=[], videoconferencing="x", updated_at="x")
    assert [e.field for e in result.errors] == [
        "remote_id",
        "title",
        "start",
        "organizer_email",
        "application_ids",
        "videoconferencing",
        "updated_at",
    ]
    assert result.remote_id is None and result.label == "<item #0>"
