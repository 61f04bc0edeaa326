"""The mapping: JMESPath per field; the fast paths must mean exactly what JMESPath means."""

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import mapping
from connector.config import MappingConfig
from connector.mapping import AMBIGUOUS, Mapper, compile_expression, lookup_key
from connector.model import BrokenItem, Interview, InvalidItem

EXPRESSIONS = ["id", "organizer.email", "candidates[].jobylon_application_id", "status == 'cancelled'", "status != 'done'", "a.b[].c.d", "true", "null"]
KEYS = st.sampled_from(["id", "organizer", "email", "candidates", "jobylon_application_id", "status", "a", "b", "c", "d", "true", "null"])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["cancelled", "done", "x", ""]))
VALUES = st.recursive(LEAVES, lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(item=VALUES)
def test_fast_paths_agree_with_jmespath(item):
    for expression in EXPRESSIONS:
        ours, theirs = compile_expression(expression)(item), jmespath.search(expression, item)
        assert ours == theirs and type(ours) is type(theirs), (expression, item)


def test_general_expressions_use_jmespath():
    get = compile_expression("candidates[?active].id | [0]")
    assert get({"candidates": [{"id": 1, "active": False}, {"id": 2, "active": True}]}) == 2


def test_defaults_fill_missing_fields_and_broken_items_become_invalid():
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None, description=None))
    raw = {
        "id": 7,
        "title": "T",
        "start_at": "2030-01-02T10:00:00",
        "minutes": 30,
        "organizer": {"email": "a@b.example"},
        "candidates": [{"jobylon_application_id": 1001}],
    }
    result = mapper.map_one(raw, 0)
    assert isinstance(result, Interview) and result.remote_id == "7" and result.timezone == "Europe/Stockholm" and result.description == ""
    broken = mapper.map_one(BrokenItem("row 3", "2 fields where the header has 3"), 2)
    assert broken.remote_id is None and broken.message == "item: row 3: 2 fields where the header has 3"


def test_duplicate_remote_ids_are_one_invalid_record():
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None))
    raw = {
        "id": "D",
        "title": "T",
        "start_at": "2030-01-02T10:00:00",
        "minutes": 30,
        "organizer": {"email": "a@b.example"},
        "candidates": [{"jobylon_application_id": 1}],
    }
    fetched = mapper.map_all([raw, dict(raw, title="other"), dict(raw, id="E")])
    assert [i.remote_id for i in fetched.interviews] == ["E"]
    assert [(i.remote_id, i.message) for i in fetched.invalid] == [("D", "remote_id: appears 2 times in this fetch (items #0, #1)")]


def raw_item(remote_id, **changes):
    return {
        "id": remote_id,
        "title": "T",
        "start_at": "2030-01-02T10:00:00",
        "minutes": 30,
        "organizer": {"email": "a@b.example"},
        "candidates": [{"jobylon_application_id": 1}],
        **changes,
    }


def test_a_remote_id_seen_three_times_is_one_record_at_its_first_position():
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None))
    fetched = mapper.map_all([raw_item("A"), raw_item("D"), raw_item("D", title="x"), raw_item("D", minutes=0)])
    assert [i.remote_id for i in fetched.interviews] == ["A"]
    assert [(i.remote_id, i.index, i.message) for i in fetched.invalid] == [("D", 1, "remote_id: appears 3 times in this fetch (items #1, #2, #3)")]
    assert fetched.unidentified == 0


def test_items_without_a_readable_remote_id_are_counted_as_unidentified():
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None))
    fetched = mapper.map_all([raw_item(None), raw_item("B", minutes=0), ["not", "an", "object"], raw_item("C"), 7])
    assert [i.remote_id for i in fetched.interviews] == ["C"]
    assert [(i.remote_id, i.index) for i in fetched.invalid] == [(None, 0), ("B", 1), (None, 2), (None, 4)]
    assert fetched.unidentified == 3
    assert [i.message for i in fetched.invalid if i.remote_id is None] == [
        "remote_id: missing",
        "item: expected an object, got list",
        "item: expected an object, got int",
    ]
    # Two unidentified items are never taken for duplicates of each other.
    assert mapper.map_all([raw_item(None), raw_item(None)]).unidentified == 2


def test_a_broken_record_is_filed_under_the_remote_id_the_source_could_still_read():
    mapper = Mapper(MappingConfig())  # remote_id = "id", a plain key
    readable = (("title", "Interview"), ("id", " R7 "))
    broken = mapper.map_one(BrokenItem("line 3", "not valid JSON", readable=readable), 2)
    assert (broken.remote_id, broken.index, broken.message) == ("R7", 2, "item: line 3: not valid JSON")  # the id rules apply: stripped
    assert mapper.map_one(BrokenItem("line 3", "not valid JSON", readable=(("title", "Interview"),)), 2).remote_id is None
    assert mapper.map_one(BrokenItem("line 3", "not valid JSON", readable=(("id", "  "),)), 2).remote_id is None  # not a valid id
    # Only a plain key can be read from a broken record: a dotted path or an expression gives no id.
    for expression in ("meta.id", "ids[0]"):
        dotted = Mapper(MappingConfig(remote_id=expression))
        assert dotted.map_one(BrokenItem("line 3", "x", readable=(("id", "R7"), (expression, "R8"), ("meta", "R9"))), 0).remote_id is None


# -- lookups, fail() and the deleted flag ------------------------------------------------------

UNUSED_CSV = {"kind": "csv", "path": "unused.csv"}  # the tables are handed to the Mapper directly


def lookup_mapper(**mapping):
    config = MappingConfig(
        duration_minutes="minutes",
        end=None,
        application_ids="lookup('applications', candidate)",
        lookups={"applications": UNUSED_CSV, "rooms": UNUSED_CSV},
        **mapping,
    )
    return Mapper(config, {"applications": {"cand-A": 1001, "cand-D": 1004, "12": 1012, "dup": AMBIGUOUS, "blank": "", "x" * 77: 5}})


def lookup_raw(**changes):
    return raw_item("A", **{"candidate": "cand-A", **changes})


def only_error(result):
    assert isinstance(result, InvalidItem), result
    assert len(result.errors) == 1, result.errors
    return str(result.errors[0])


def test_lookup_key_is_one_text_form():
    assert [lookup_key(v) for v in (123, 123.0, " 123 ", "a", 12.5, 0, 0.0)] == ["123", "123", "123", "a", "12.5", "0", "0"]
    assert [lookup_key(v) for v in (None, True, False)] == [None, None, None]


def test_a_lookup_gives_the_value_of_its_key():
    mapper = lookup_mapper()
    assert mapper.map_one(lookup_raw(), 0).application_ids == (1001,)
    assert mapper.map_one(lookup_raw(candidate=12.0), 0).application_ids == (1012,)
    assert mapper.map_one(lookup_raw(candidate=" 12 "), 0).application_ids == (1012,)
    assert mapper.map_one(lookup_raw(candidate=["cand-D", None, "cand-A"]), 0).application_ids == (1001, 1004)  # nulls dropped


@pytest.mark.parametrize(
    "candidate, message",
    [
        ("cand-X", "application_ids: lookup 'applications' has no key 'cand-X'"),
        ("blank", "application_ids: lookup 'applications' has no value for key 'blank'"),
        ("dup", "application_ids: lookup 'applications' lists key 'dup' more than once, with different values"),
        (7.0, "application_ids: lookup 'applications' has no key '7'"),
        ([True], "application_ids: lookup 'applications' has no key True"),
        ("y" * 78, f"application_ids: lookup 'applications' has no key '{'y' * 78}'"),  # shown whole up to 80 characters
        ("y" * 79, f"application_ids: lookup 'applications' has no key '{'y' * 75}...'"),
        (None, "application_ids: missing"),  # a null key looks nothing up
    ],
)
def test_a_lookup_miss_is_the_items_only_error_for_that_field(candidate, message):
    # The field's "missing" from validation is the echo of the miss, so it is left out.
    assert only_error(lookup_mapper().map_one(lookup_raw(candidate=candidate), 0)) == message


def test_a_lookup_miss_is_reported_with_the_other_fields_errors():
    result = lookup_mapper().map_one(lookup_raw(candidate="cand-X", minutes=0), 4)
    assert isinstance(result, InvalidItem) and (result.remote_id, result.index, result.deleted) == ("A", 4, False)
    assert result.message == "application_ids: lookup 'applications' has no key 'cand-X'; duration_minutes: duration must be 1..480 minutes, got 0"


def test_a_table_not_loaded_and_a_miss_in_an_optional_field():
    mapper = lookup_mapper(location="lookup('rooms', room)")
    assert only_error(mapper.map_one(lookup_raw(room="R1"), 0)) == "location: lookup 'rooms' is not loaded"
    mapper.set_lookups({"applications": {"cand-A": 1001}, "rooms": {"R1": "Room one"}})
    assert mapper.map_one(lookup_raw(room="R1"), 0).location == "Room one"
    assert only_error(mapper.map_one(lookup_raw(room="R2"), 0)) == "location: lookup 'rooms' has no key 'R2'"


def test_fail_is_the_whole_story_of_an_item():
    mapper = lookup_mapper(start="start_at || (day && fail('an all-day interview: no start time'))")
    result = mapper.map_one(lookup_raw(start_at=None, day=True, minutes=0, candidate="cand-X"), 0)
    assert isinstance(result, InvalidItem) and result.message == "start: an all-day interview: no start time"
    assert isinstance(mapper.map_one(lookup_raw(), 0), Interview)


@pytest.mark.parametrize(
    "flag, deleted",
    [
        (True, True),
        ("yes", True),
        (" TRUE ", True),
        ("1", True),
        (1, True),
        (2.5, True),
        (False, False),
        ("no", False),
        ("0", False),
        ("", False),
        (0, False),
        (0.0, False),
        (None, False),
    ],
)
def test_the_deleted_flag_cancels_the_item(flag, deleted):
    result = lookup_mapper(deleted="gone").map_one(lookup_raw(gone=flag), 0)
    assert isinstance(result, Interview) and result.cancelled is deleted
    assert lookup_mapper().map_one(lookup_raw(gone=True), 0).cancelled is False  # not mapped: no flag


@pytest.mark.parametrize("flag, kind", [("maybe", "str"), ([1], "list"), ({"a": 1}, "dict")])
def test_a_deleted_flag_that_is_no_boolean_makes_the_item_invalid(flag, kind):
    result = lookup_mapper(deleted="gone").map_one(lookup_raw(gone=flag), 0)
    assert only_error(result) == f"deleted: expected true or false, got {kind}" and result.deleted is False


def test_a_deleted_item_that_no_longer_validates_is_still_deleted_by_its_id():
    mapper = lookup_mapper(deleted="gone")
    result = mapper.map_one(lookup_raw(gone=True, minutes=0), 3)
    assert isinstance(result, InvalidItem) and (result.remote_id, result.index, result.deleted) == ("A", 3, True)
    assert result.message == "duration_minutes: duration must be 1..480 minutes, got 0"
    not_deleted = mapper.map_one(lookup_raw(gone=False, minutes=0), 3)
    assert isinstance(not_deleted, InvalidItem) and not_deleted.deleted is False
    assert lookup_mapper().map_one(lookup_raw(gone=True, minutes=0), 3).deleted is False  # not mapped: no flag


# -- equal values share one str per pass (memory) ----------------------------------------------


def fresh(text: str) -> str:
    """An equal str that is a different object."""
    return "".join(list(text))


def test_equal_values_of_shared_fields_are_one_object_within_a_pass():
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None))
    first, second = (raw_item(rid, notes=fresh("Same notes"), location=fresh("Room 1")) for rid in ("A", "B"))
    assert first["location"] is not second["location"]
    a, b = mapper.map_all([first, second]).interviews
    assert a.location is b.location and a.description is b.description
    # Between passes nothing is kept: a later pass shares among its own items only.
    (c,) = mapper.map_all([raw_item("C", notes=fresh("Same notes"))]).interviews
    assert c.description == a.description and c.description is not a.description


def test_a_shared_field_holding_no_string_is_reported_not_shared():
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None))
    fetched = mapper.map_all([raw_item("A", location=["Room", 1]), raw_item("B", notes={"text": "x"})])
    assert [(i.remote_id, i.message) for i in fetched.invalid] == [
        ("A", "location: expected a string, got list"),
        ("B", "description: expected a string, got dict"),
    ]


def test_at_most_shared_max_values_are_kept(monkeypatch):
    monkeypatch.setattr(mapping, "SHARED_MAX", 3)  # the first item's description, zone and organizer fill it
    mapper = Mapper(MappingConfig(duration_minutes="minutes", end=None))
    items = [raw_item("A", notes=fresh("one")), raw_item("B", notes=fresh("one")), raw_item("C", notes=fresh("two")), raw_item("D", notes=fresh("two"))]
    a, b, c, d = mapper.map_all(items).interviews
    assert a.description is b.description  # kept: the third value
    assert c.description == d.description and c.description is not d.description  # a fourth is not kept
