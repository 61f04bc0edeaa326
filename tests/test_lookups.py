"""Lookup tables ([mapping.lookups.NAME]) from a CSV file or a SQL query, used as lookup('NAME', key) in
the mapping: the partner's own candidate ids -> Jobylon application ids, user ids -> organizer emails."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import Harness, item

from connector.config import load_settings
from connector.errors import ConfigError, SourceError
from connector.lookups import load_lookups
from connector.mapping import Mapper

JOBYLON = {"app_id": "demo-app", "app_key": "demo-key-0123456789"}


def raw(remote_id: str, **changes):
    values = item(remote_id, candidate=f"cand-{remote_id}", recruiter=7)
    values.pop("candidates")
    values.pop("organizer")
    values.update(changes)
    return values


LOOKUP_MAPPING = {
    "duration_minutes": "minutes",
    "end": "",
    "application_ids": "lookup('applications', candidate)",
    "organizer_email": "lookup('organizers', recruiter)",
}


def write_csv(path, text: str):
    path.write_text(text)
    return path


def lookup_settings(tmp_path, *, applications=None, organizers=None, source=None, **mapping):
    apps = write_csv(tmp_path / "applications.csv", applications or "candidate_id,jobylon_application_id\ncand-A,1001\ncand-B,1002\n")
    orgs = write_csv(tmp_path / "organizers.csv", organizers or "email,user_id\nrecruiter@acme.example,7\n")
    lookups = {
        "applications": {"kind": "csv", "path": str(apps)},
        "organizers": {"kind": "csv", "path": str(orgs), "key": "user_id", "value": "email"},
    }
    data = {
        "jobylon": JOBYLON,
        "source": source or {"kind": "file", "path": str(tmp_path / "items.json")},
        "mapping": {**LOOKUP_MAPPING, **mapping, "lookups": {**lookups, **mapping.get("lookups", {})}},
    }
    return load_settings(data=data)


def mapper_for(settings) -> Mapper:
    return Mapper(settings.mapping, load_lookups(settings))


def test_csv_lookups_give_the_jobylon_application_and_the_organizer(tmp_path):
    mapped = mapper_for(lookup_settings(tmp_path)).map_all([raw("A"), raw("B")])
    assert [(d.remote_id, d.application_ids, d.organizer_email) for d in mapped.interviews] == [
        ("A", (1001,), "recruiter@acme.example"),
        ("B", (1002,), "recruiter@acme.example"),
    ]


def test_a_missing_key_makes_that_item_invalid_naming_the_lookup_and_the_key(tmp_path):
    mapped = mapper_for(lookup_settings(tmp_path)).map_all([raw("A"), raw("X"), raw("Y", recruiter=99, candidate=None)])
    assert [d.remote_id for d in mapped.interviews] == ["A"]
    assert {i.remote_id: i.message for i in mapped.invalid} == {
        "X": "application_ids: lookup 'applications' has no key 'cand-X'",
        "Y": "organizer_email: lookup 'organizers' has no key '99'; application_ids: missing",
    }


def test_keys_are_text_a_list_of_keys_gives_a_list_and_an_ambiguous_key_is_refused(tmp_path):
    settings = lookup_settings(
        tmp_path,
        applications="candidate_id,jobylon_application_id\n12,1012\n13,1013\ndup,1100\ndup,1101\nsame,1200\nsame,1200\nempty,\n",
        application_ids="lookup('applications', candidates)",
    )
    mapper = mapper_for(settings)
    ok = mapper.map_one(raw("A", candidates=[12, "13", 12.0]), 0)
    assert ok.application_ids == (1012, 1013), "123, '123' and 123.0 are one key"
    assert mapper.map_one(raw("S", candidates=["same"]), 0).application_ids == (1200,), "a key listed twice with one value is fine"
    assert (
        mapper.map_one(raw("D", candidates=["dup"]), 0).message
        == "application_ids: lookup 'applications' lists key 'dup' more than once, with different values"
    )
    assert mapper.map_one(raw("E", candidates=["empty"]), 0).message == "application_ids: lookup 'applications' has no value for key 'empty'"


def test_sql_lookups_from_a_database_file_and_from_the_sql_source_itself(tmp_path):
    db = tmp_path / "hr.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE applications (candidate TEXT, jobylon INTEGER)")
    conn.execute("CREATE TABLE recruiters (id INTEGER, email TEXT)")
    conn.execute("CREATE TABLE interviews (id TEXT, title TEXT, notes TEXT, start_at TEXT, minutes INTEGER, candidate TEXT, recruiter INTEGER)")
    conn.executemany("INSERT INTO applications VALUES (?, ?)", [("cand-A", 1001), ("cand-B", 1002)])
    conn.execute("INSERT INTO recruiters VALUES (7, 'recruiter@acme.example')")
    one = raw("A")
    conn.execute("INSERT INTO interviews VALUES (?, ?, ?, ?, ?, ?, ?)", ("A", one["title"], "", one["start_at"], 60, "cand-A", 7))
    conn.commit()
    conn.close()
    # url given (any database), and url left out (the sql source's own database)
    settings = lookup_settings(
        tmp_path,
        source={"kind": "sql", "url": f"sqlite:///{db}", "query": "SELECT * FROM interviews"},
        lookups={
            "applications": {"kind": "sql", "url": f"sqlite:///{db}", "query": "SELECT candidate, jobylon FROM applications"},
            "organizers": {"kind": "sql", "query": "SELECT id, email FROM recruiters WHERE email LIKE '%@%'"},
        },
    )
    tables = load_lookups(settings)
    assert tables == {"applications": {"cand-A": 1001, "cand-B": 1002}, "organizers": {"7": "recruiter@acme.example"}}
    from connector.sources import open_source

    items = open_source(settings.source, settings.retry).fetch().items
    mapped = Mapper(settings.mapping, tables).map_all(items)
    assert [(d.remote_id, d.application_ids, d.organizer_email) for d in mapped.interviews] == [("A", (1001,), "recruiter@acme.example")]


def test_a_sql_lookup_needs_a_database(tmp_path):
    with pytest.raises(ConfigError, match=r"mapping.lookups.organizers.url: required key is missing \(only a sql source lends its database\)"):
        lookup_settings(tmp_path, lookups={"organizers": {"kind": "sql", "query": "SELECT id, email FROM recruiters"}})


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            {"application_ids": "lookup('nowhere', candidate)"},
            "mapping.application_ids: lookup 'nowhere' is not defined in [mapping.lookups] (defined: applications, organizers)",
        ),
        ({"application_ids": "lookup(candidate, candidate)"}, "lookup() needs the table's name as a literal string first"),
        ({"application_ids": "lookup('applications')"}, "lookup() takes 2 argument(s), got 1"),
        ({"title": "lokup('applications', title)"}, "mapping.title: unknown function lokup()"),
        ({"lookups": {"bad name": {"kind": "csv", "path": "x.csv"}}}, "lookup name 'bad name'"),
    ],
    ids=["undefined", "not-literal", "arity", "typo", "name"],
)
def test_a_lookup_the_config_cannot_serve_is_refused_at_load(tmp_path, mapping, expected):
    with pytest.raises(ConfigError) as caught:
        lookup_settings(tmp_path, **mapping)
    assert expected in str(caught.value)


def test_fail_makes_an_item_invalid_for_its_reason(tmp_path):
    settings = lookup_settings(tmp_path, start="start_at || (day && fail('an all-day interview: no start time'))")
    mapper = mapper_for(settings)
    assert mapper.map_one(raw("A", start_at=None, day="2030-01-01"), 0).message == "start: an all-day interview: no start time"
    assert mapper.map_one(raw("B", start_at=None), 0).message == "start: missing"
    assert mapper.map_one(raw("C"), 0).remote_id == "C"


def test_tables_are_read_for_every_pass_and_a_broken_one_fails_the_pass_not_the_items(tmp_path, sandbox):
    h = Harness(tmp_path, sandbox)
    apps = write_csv(tmp_path / "applications.csv", "candidate_id,jobylon_application_id\ncand-A,1001\n")
    h.data["mapping"] = {
        **LOOKUP_MAPPING,
        "organizer_email": "organizer.email",
        "application_ids": "lookup('applications', candidate)",
        "lookups": {"applications": {"kind": "csv", "path": str(apps)}},
    }
    try:
        h.write([raw("A", organizer={"email": "recruiter@acme.example"}), raw("B", organizer={"email": "recruiter@acme.example"})])
        first = h.sync()
        assert first.counts["created"] == 1 and first.counts["invalid"] == 1
        write_csv(apps, "candidate_id,jobylon_application_id\ncand-A,1001\ncand-B,1002\n")
        second = h.sync()
        assert second.counts["created"] == 1, "the row added to the table is used by the next pass"
        assert sorted(e["participants"][0] for e in h.jobylon_events()) == [1001, 1002]
        apps.unlink()
        third = h.sync()
        assert third.outcome == "source_error" and "lookup applications: " in (third.error or "") and "not found" in (third.error or "")
        assert third.counts["invalid"] == 0 and third.counts["deleted"] == 0 and len(h.jobylon_events()) == 2
    finally:
        h.close()


def test_a_lookup_database_password_is_a_secret(tmp_path):
    settings = lookup_settings(
        tmp_path,
        lookups={"organizers": {"kind": "sql", "url": "postgresql+psycopg://hr:lookup-pw-1234@127.0.0.1:1/hr", "query": "SELECT 1, 2"}},
    )
    assert "lookup-pw-1234" in settings.secrets()
    with pytest.raises(SourceError) as caught:
        load_lookups(settings)
    assert "lookup-pw-1234" not in str(caught.value) and "lookup organizers: postgresql+psycopg://hr:***@127.0.0.1:1/hr" in str(caught.value)


def test_check_uses_the_lookups_too(tmp_path, sandbox):
    from conftest import invoke_cli

    h = Harness(tmp_path, sandbox)
    apps = write_csv(tmp_path / "applications.csv", "candidate_id,jobylon_application_id\ncand-A,1001\n")
    h.data["mapping"] = {**LOOKUP_MAPPING, "organizer_email": "organizer.email", "lookups": {"applications": {"kind": "csv", "path": str(apps)}}}
    try:
        h.write([raw("A", organizer={"email": "recruiter@acme.example"}), raw("B", organizer={"email": "recruiter@acme.example"})])
        result = invoke_cli("--config", str(h.config_file()), "check")
        assert result.returncode == 1
        assert "B: application_ids: lookup 'applications' has no key 'cand-B'" in result.stdout
        assert json.dumps(h.jobylon_events()) == "[]"
    finally:
        h.close()
