"""The mapping: JMESPath per field; the fast paths must mean exactly what JMESPath means."""

import jmespath
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import MappingConfig
from connector.mapping import Mapper, compile_expression
from connector.model import BrokenItem, Interview

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
