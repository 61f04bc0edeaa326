"""One contract, two engines: the same store tests against the SQLite file and PostgreSQL, as
vdirsyncer runs one storage suite against every storage. Both are built by the same migrations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.clock import utcnow
from connector.errors import StateError
from connector.recovery import settle_orphaned_intents
from connector.store import SCHEMA_VERSION, EventState, FailureRecord, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s: Store = Store(tmp_path / "state" / "c.db")
    else:
        from connector.store.postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("pg_database"))
    yield s
    s.close()


def _create(store, remote_id, event_id, now=None):
    now = now or utcnow()
    intent = store.write_intent(
        run_id=None, remote_id=remote_id, action="create", method="POST", event_id=None, request={"title": remote_id}, content_hash="h", now=now
    )
    store.record_success(
        intent, state=EventState(event_id=event_id, status="synced", payload={"title": remote_id}, mutable_hash="m", fixed_hash="f"), http_status=201, now=now
    )


def test_schema_version_and_meta(store):
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    store.set_meta("cursor", "a")
    store.set_meta("cursor", "b")
    assert store.get_meta("cursor") == "b" and store.get_meta("nothing") is None
    assert store.is_new()


def test_intents_outcomes_and_what_we_know(store):
    _create(store, "A", 11)
    _create(store, "B", 12)
    known = store.known()
    assert set(known) == {"A", "B"} and known["A"].event_id == 11 and known["A"].mutable_hash == "m"
    assert set(store.known(["B", "Z"])) == {"B"}
    many = [f"R{n}" for n in range(1200)]
    assert store.known(many) == {}, "ids in chunks past the engine's parameter limit"
    assert store.count_live_events() == 2 and store.count_events_by_status() == {"synced": 2}
    assert [o.outcome for o in store.operations("A")] == ["ok"] and store.orphaned_intents() == []
    assert not store.is_new() and store.remote_id_for_event(12) == "B"


def test_failures_attempts_parking_and_resolving(store):
    now = utcnow()
    retry = now + timedelta(seconds=60)
    store.record_item_failure("A", "create", FailureRecord(kind="transient", message="503", next_attempt_at=retry), now)
    store.record_item_failure("A", "create", FailureRecord(kind="transient", message="503 again", next_attempt_at=retry), now)
    [failure] = store.failures()
    assert failure.attempts == 2 and failure.message == "503 again" and store.attempts("A") == 2
    parked = FailureRecord(kind="permanent", message="bad", content_hash="c")
    assert store.record_item_failure("P", "map", parked, now, only_if_changed=True)
    assert not store.record_item_failure("P", "map", parked, now, only_if_changed=True), "the same failure again is not new"
    assert store.count_open_failures() == {"permanent": 1, "transient": 1}
    assert store.open_failure_ids(("permanent",), ("map",)) == {"P"}
    assert store.resolve_failures(["A", "P"], now) == 2 and store.failures() == []
    assert len(store.failures(include_resolved=True)) == 2


def test_runs_open_close_and_left_running(store):
    started = utcnow()
    first = store.start_run(started)
    store.finish_run(
        first, outcome="ok", counts={"created": 1}, complete_fetch=True, error=None, started_at=started, finished_at=started, mark_complete_fetch=True
    )
    stale = store.start_run(started)
    assert store.get_meta("last_complete_fetch_at") is not None
    assert store.close_unfinished_runs(utcnow(), outcome="interrupted", error="stopped") == 1
    runs = store.runs(5)
    assert [r.id for r in runs] == [stale, first] and runs[0].outcome == "interrupted" and runs[1].counts == {"created": 1}


def test_a_dead_processs_intents_are_settled_by_kind(store):
    now = utcnow()
    store.write_intent(run_id=None, remote_id="A", action="create", method="POST", event_id=None, request={"title": "t"}, content_hash="h", now=now)
    store.write_intent(run_id=None, remote_id="B", action="update", method="PUT", event_id=5, request={"title": "t"}, content_hash="h", now=now)
    assert dict((i.remote_id, how) for i, how in settle_orphaned_intents(store, now)) == {"A": "in_doubt", "B": "repeat"}
    assert store.event("A").status == "in_doubt" and store.last_request("A") == {"title": "t"}


def test_operator_repairs(store):
    _create(store, "A", 21)
    store.detach("A", utcnow(), message="operator")
    assert store.event("A").status == "detached" and store.count_live_events() == 0
    store.map_to_event("A", 22, "f", utcnow(), message="operator")
    row = store.event("A")
    assert (row.event_id, row.status, row.mutable_hash) == (22, "synced", None)
    store.clear_for_create("A", utcnow(), message="operator")
    assert store.event("A").event_id is None and [o.action for o in store.operations("A")][-3:] == ["forget", "resolve", "recreate"]


def test_text_with_quotes_percent_and_question_marks_round_trips(store):
    store.record_item_failure("Q", "map", FailureRecord(kind="permanent", message="50% of 'x' ? :name"), utcnow())
    assert store.failures()[0].message == "50% of 'x' ? :name"


def test_both_engines_hold_the_same_tables_and_columns(tmp_path, pg_database):
    from connector.store.postgres import PostgresStore

    lite = Store(tmp_path / "c.db")
    pg = PostgresStore(pg_database)
    try:
        tables = [
            r["name"]
            for r in lite._query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'")
        ]
        for table in tables:
            lite_columns = [r["name"] for r in lite._query(f"PRAGMA table_info({table})")]
            pg_columns = [
                r["column_name"]
                for r in pg._query("SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table])
            ]
            assert lite_columns == pg_columns, table
        assert lite.get_meta("schema_version") == pg.get_meta("schema_version")
    finally:
        lite.close()
        pg.close()


def test_read_only_use_never_creates_the_state(pg_database):
    from connector.store.postgres import PostgresStore

    with pytest.raises(StateError, match="no connector state in"):
        PostgresStore(pg_database, create=False)


def test_a_wrong_password_is_one_line_without_the_password(pg_database):
    from connector.store.postgres import PostgresStore

    url = pg_database.replace("postgresql+psycopg://connector@", "postgresql+psycopg://nobody:s3cret-pass-word@")
    with pytest.raises(StateError) as caught:
        PostgresStore(url)
    assert "s3cret-pass-word" not in str(caught.value) and "***" in str(caught.value)
