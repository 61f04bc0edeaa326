"""Incremental polls that lose nothing (the engine's cursor, `_fetch_mode` / `_advance_cursor`): the next
fetch asks from the highest updated_at seen minus source.since_overlap_seconds; an incremental fetch
never deletes by absence; every sync.full_every-th poll and `sync --full` are complete; the cursor
moves only once the pass is recorded. Over a real SQLite file (sql source) and real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import Harness, JsonServer, item
from test_sources_sql import MAPPING, row, sqlite_db

from connector.errors import StateError

# A query of the usual "changed since" shape, with a strict comparison: a row stamped exactly at the
# cursor is missed unless the fetch asks from before it.
STRICT = "SELECT * FROM interviews WHERE {since} IS NULL OR datetime(updated_at) > datetime({since}) ORDER BY id"
T = "2026-05-04T10:00:00+00:00"


def sql_harness(tmp_path, sandbox, *, overlap: float | None = None, full_every: int = 50, **mapping):
    db = sqlite_db(tmp_path / "hr.db", [])
    h = Harness(tmp_path, sandbox, mapping={**MAPPING, **mapping}, sync={"full_every": full_every})
    h.data["source"] = {"kind": "sql", "url": f"sqlite:///{db}", "query": STRICT, "json_columns": ["apps"]}
    if overlap is not None:
        h.data["source"]["since_overlap_seconds"] = overlap
    return h, db


def titles(h: Harness) -> list[str]:
    return sorted(e["title"] for e in h.jobylon_events())


def test_a_row_sharing_the_cursor_timestamp_is_picked_up(tmp_path, sandbox):
    """A and C change in the same second; the first poll reads only A (C's transaction commits a moment
    later). The cursor is that second; the next poll still finds C."""
    h, db = sql_harness(tmp_path, sandbox)
    try:
        sqlite_db(db, [row("A", updated_at=T)])
        assert h.sync(full=None).counts["created"] == 1
        assert h.store.get_meta("cursor") == "2026-05-04T10:00:00.000+00:00"
        sqlite_db(db, [row("C", updated_at=T)])
        second = h.sync(full=None)
        assert not second.complete and second.counts["created"] == 1 and second.counts["unchanged"] == 1
        assert titles(h) == ["Interview A", "Interview C"]
    finally:
        h.close()


def test_without_the_overlap_that_row_would_be_lost(tmp_path, sandbox):
    """The same history with since_overlap_seconds = 0: the cursor itself is the bound, and a strict
    query misses C until the next complete poll. This is what the default overlap is for."""
    h, db = sql_harness(tmp_path, sandbox, overlap=0)
    try:
        sqlite_db(db, [row("A", updated_at=T)])
        h.sync(full=None)
        sqlite_db(db, [row("C", updated_at=T)])
        assert h.sync(full=None).fetched == 0
        assert titles(h) == ["Interview A"]
    finally:
        h.close()


def test_a_row_arriving_late_with_an_updated_at_older_than_the_cursor_is_picked_up(tmp_path, sandbox):
    """B was updated at 09:58 but its transaction committed after the poll that moved the cursor to
    10:00: an updated_at older than the cursor, within the overlap."""
    h, db = sql_harness(tmp_path, sandbox)
    try:
        sqlite_db(db, [row("A", updated_at=T)])
        h.sync(full=None)
        sqlite_db(db, [row("B", updated_at="2026-05-04T09:58:00+00:00")])
        second = h.sync(full=None)
        assert not second.complete and second.counts["created"] == 1
        assert titles(h) == ["Interview A", "Interview B"]
        assert h.store.get_meta("cursor") == "2026-05-04T10:00:00.000+00:00", "the cursor never moves back"
    finally:
        h.close()


def test_the_next_fetch_asks_from_the_cursor_minus_the_overlap(tmp_path, sandbox):
    seen: list[dict[str, str]] = []
    items = [item("A", updated_at=T)]

    def answer(query, headers):
        seen.append(query)
        return 200, items

    api = JsonServer(answer)
    h = Harness(tmp_path, sandbox)
    h.data["source"] = {"kind": "http", "url": api.url, "since_param": "changed_since", "since_overlap_seconds": 90}
    try:
        h.sync(full=None)
        h.sync(full=None)
        assert seen == [{}, {"changed_since": "2026-05-04T09:58:30.000+00:00"}]
        h.data["source"]["since_format"] = "%Y-%m-%dT%H:%M:%SZ"
        h.reset_engine()
        h.sync(full=None)
        assert seen[-1] == {"changed_since": "2026-05-04T09:58:30Z"}
    finally:
        h.close()
        api.stop()


def test_an_incremental_fetch_never_deletes_by_absence_a_complete_one_does(tmp_path, sandbox):
    h, db = sql_harness(tmp_path, sandbox, full_every=3)
    try:
        sqlite_db(db, [row(name, updated_at=T) for name in "ABCDEF"])  # one of six gone: under max_delete_fraction
        assert h.sync(full=None).complete
        import sqlite3

        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM interviews WHERE id = 'B'")
        second = h.sync(full=None)
        assert not second.complete and second.counts["deleted"] == 0
        third = h.sync(full=None)
        assert not third.complete and third.counts["deleted"] == 0
        assert "Interview B" in titles(h), "absent from incremental fetches: kept"
        fourth = h.sync(full=None)
        assert fourth.complete and fourth.counts["deleted"] == 1, "every 3rd poll is complete, and deletes by absence"
        assert titles(h) == ["Interview A", "Interview C", "Interview D", "Interview E", "Interview F"]
        assert h.sync(full=True).complete, "sync --full is always complete"
    finally:
        h.close()


def test_a_deleted_flag_turns_into_a_delete_on_an_incremental_poll(tmp_path, sandbox):
    h, db = sql_harness(tmp_path, sandbox, deleted="deleted")
    try:
        sqlite_db(db, [row("A", updated_at=T), row("B", updated_at=T), row("C", updated_at=T)])
        assert h.sync(full=None).counts["created"] == 3
        later = "2026-05-04T11:00:00+00:00"
        # B is deleted at the source and its row still valid; C's row is deleted and broken besides
        # (a deleted record often loses its data): only the id matters then.
        sqlite_db(db, [row("B", updated_at=later, deleted=1), row("C", updated_at=later, deleted="true", title=None, organizer=None)])
        second = h.sync(full=None)
        assert not second.complete and second.counts["deleted"] == 2 and second.counts["invalid"] == 0
        assert titles(h) == ["Interview A"]
        assert h.store.event("B").status == "deleted" and h.store.event("C").status == "deleted"
        third = h.sync(full=None)
        assert third.counts["deleted"] == 0 and third.outcome == "ok", "a deleted item seen again: nothing more to do"
    finally:
        h.close()


def test_a_failing_page_in_the_middle_of_a_complete_fetch_fails_the_pass_with_zero_deletions(tmp_path, sandbox):
    pages = {1: [item("A"), item("B")], 2: [item("C"), item("D")], 3: [item("E")]}
    broken = {"page": None}

    def answer(query, headers):
        page = int(query.get("page", "1"))
        if page == broken["page"]:
            return 500, {"error": "database timeout"}
        return 200, pages[page]

    api = JsonServer(answer)
    h = Harness(tmp_path, sandbox)
    h.data["source"] = {"kind": "http", "url": api.url, "pagination": {"style": "page", "size": 2, "size_param": "per_page"}}
    try:
        assert h.sync().counts["created"] == 5
        broken["page"] = 2
        failed = h.sync()
        assert failed.outcome == "source_error" and failed.counts["deleted"] == 0 and "page 2: HTTP 500" in (failed.error or "")
        assert len(h.jobylon_events()) == 5, "A, B (page 1) seen; C, D, E never read: none deleted"
        assert h.store.runs(1)[0].outcome == "source_error"
    finally:
        h.close()
        api.stop()


def test_the_cursor_advances_only_after_the_pass_is_recorded(tmp_path, sandbox, monkeypatch):
    h, db = sql_harness(tmp_path, sandbox)
    try:
        sqlite_db(db, [row("A", updated_at=T)])
        h.sync(full=None)
        sqlite_db(db, [row("B", updated_at="2026-05-04T12:00:00+00:00")])
        engine = h.engine

        def cannot_record(*args, **kwargs):
            raise StateError("state database: disk full (test)")

        monkeypatch.setattr(engine.store, "finish_run", cannot_record)
        with pytest.raises(StateError):
            engine.run_pass()
        monkeypatch.undo()
        assert h.store.get_meta("cursor") == "2026-05-04T10:00:00.000+00:00", "the pass was not recorded: the cursor stays"
        assert not h.sync(full=None).complete
        assert h.store.get_meta("cursor") == "2026-05-04T12:00:00.000+00:00"
    finally:
        h.close()


def test_a_pass_restricted_to_some_ids_moves_neither_the_cursor_nor_the_poll_count(tmp_path, sandbox):
    h, db = sql_harness(tmp_path, sandbox, full_every=3)
    try:
        sqlite_db(db, [row("A", updated_at=T)])
        h.sync(full=None)
        h.sync(full=None)
        sqlite_db(db, [row("B", updated_at="2026-05-04T12:00:00+00:00"), row("Z", updated_at="2026-05-04T13:00:00+00:00")])
        only = h.sync(only=frozenset({"Z"}))
        assert only.counts["created"] == 1
        assert h.store.get_meta("cursor") == "2026-05-04T10:00:00.000+00:00", "B was not looked at: the cursor must not pass it"
        assert h.store.get_meta("polls_since_full") == "1", "a replay is not a complete poll"
        assert not h.sync(full=None).complete
        assert h.sync(full=None).complete, "the complete poll comes when it was due: the replay did not reset the count"
        assert titles(h) == ["Interview A", "Interview B", "Interview Z"]
    finally:
        h.close()


def test_a_partner_clock_running_ahead_cannot_push_the_cursor_past_now(tmp_path, sandbox):
    h, db = sql_harness(tmp_path, sandbox)
    try:
        future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        sqlite_db(db, [row("A", updated_at=future)])
        h.sync(full=None)
        cursor = datetime.fromisoformat(h.store.get_meta("cursor") or "")
        assert cursor <= datetime.now(UTC), "capped at this machine's now"
        sqlite_db(db, [row("B", updated_at=datetime.now(UTC).isoformat())])
        assert h.sync(full=None).counts["created"] == 1, "a row changed now is still found"
    finally:
        h.close()
