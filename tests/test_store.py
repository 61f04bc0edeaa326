"""The state database: schema, migrations with a backup first, the process lock, orphaned intents."""

from __future__ import annotations

import json
import sqlite3

import pytest

from connector import store as store_module
from connector.clock import utcnow
from connector.errors import LeaseLost, LockedError
from connector.recovery import settle_orphaned_intents
from connector.redact import Redactor
from connector.store import Answered, EventState, ProcessLock, Store


def test_schema_version_and_tables(tmp_path):
    store = Store(tmp_path / "s" / "c.db")
    try:
        assert store.get_meta("schema_version") == str(store_module.SCHEMA_VERSION)
        assert {"events", "failures", "runs", "operations", "intents", "meta"} <= set(store.db.table_names())
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_a_pending_migration_backs_up_the_database_first(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    store = Store(path)
    store.set_meta("cursor", "kept")
    store.close()

    @store_module.migrations(name="m999_test_column")
    def m999(db):
        db["events"].add_column("note", str)

    try:
        store = Store(path)
        assert store.backup_path is not None and store.backup_path.exists()
        assert store.backup_path.stat().st_mode & 0o777 == 0o600
        copy = sqlite3.connect(store.backup_path)
        assert copy.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone() == ("kept",)
        assert "note" not in [row[1] for row in copy.execute("PRAGMA table_info(events)")]
        copy.close()
        assert "note" in store.db["events"].columns_dict
        store.close()
        again = Store(path)
        assert again.backup_path is None  # nothing pending: no backup
        again.close()
    finally:
        store_module.migrations._migrations.pop()


def test_second_lock_is_refused(tmp_path):
    first = ProcessLock(tmp_path / "c.db")
    second = ProcessLock(tmp_path / "c.db")
    try:
        first.acquire()
        with pytest.raises(LockedError, match="in use by connector process"):
            second.acquire()
        first.release()
        second.acquire()
    finally:
        first.release()
        second.release()


def test_orphaned_intents_are_settled_by_kind(tmp_path):
    store = Store(tmp_path / "c.db")
    try:
        now = utcnow()
        store.write_intent(run_id=None, remote_id="A", action="create", method="POST", event_id=None, request={"title": "t"}, content_hash="h", now=now)
        store.write_intent(run_id=None, remote_id="B", action="update", method="PUT", event_id=5, request={"title": "t"}, content_hash="h", now=now)
        settled = dict((i.remote_id, how) for i, how in settle_orphaned_intents(store, now))
        assert settled == {"A": "in_doubt", "B": "repeat"}
        assert store.event("A").status == "in_doubt"
        [failure] = store.failures()
        assert failure.remote_id == "A" and failure.kind == "in_doubt" and '"title": "t"' in failure.request
        assert store.orphaned_intents() == []
        assert [o.outcome for o in store.operations()] == ["in_doubt", "interrupted"]
    finally:
        store.close()


def _intent(store, remote_id, now, settle=None):
    return store.write_intent(
        run_id=None, remote_id=remote_id, action="create", method="POST", event_id=None, request={"title": remote_id}, content_hash="h", now=now, settle=settle
    )


def test_an_answered_call_is_committed_with_the_next_intent_outcome_first(tmp_path):
    store = Store(tmp_path / "c.db")
    try:
        now = utcnow()
        first = _intent(store, "A", now)
        second = _intent(store, "B", now, settle=Answered(first, EventState(event_id=7, status="synced", payload={"title": "A"}), 201, now))
        assert [i.remote_id for i in store.orphaned_intents()] == ["B"]
        assert (store.event("A").event_id, store.event("A").status) == (7, "synced")
        assert store.event("B").status == "pending"
        [operation] = store.operations()
        assert (operation.remote_id, operation.outcome, operation.http_status) == ("A", "ok", 201)
        assert second.remote_id == "B"
    finally:
        store.close()


def test_the_sent_json_is_stored_as_is_only_when_it_holds_no_secret(tmp_path):
    """The executor hands the store the JSON text it sends: kept as it is when no secret is in it,
    masked and encoded again when one is (here inside a quoted description)."""
    secret = "sk-live-0123456789"
    store = Store(tmp_path / "c.db", redactor=Redactor([secret]))
    db = sqlite3.connect(tmp_path / "c.db")
    try:
        now = utcnow()
        plain = {"title": "A", "description": "Room 4"}
        plain_text = json.dumps(plain, separators=(",", ":"))  # a form json.dumps would not give again
        leaky = {"title": "B", "description": f'the key is "{secret}"'}
        leaky_text = json.dumps(leaky)

        def intent(remote_id, request, text, settle=None):
            return store.write_intent(
                run_id=None,
                remote_id=remote_id,
                action="create",
                method="POST",
                event_id=None,
                request=request,
                content_hash="h",
                now=now,
                request_text=text,
                settle=settle,
            )

        first, second = intent("A", plain, plain_text), intent("B", leaky, leaky_text)
        stored_requests = dict(db.execute("SELECT remote_id, request FROM intents"))
        assert stored_requests["A"] == plain_text
        assert secret not in stored_requests["B"] and json.loads(stored_requests["B"])["title"] == "B"
        assert first.request == plain and secret not in json.dumps(second.request)
        intent("C", plain, plain_text, settle=Answered(first, EventState(event_id=7, status="synced", payload=plain), 201, now, payload_text=plain_text))
        store.record_answered(Answered(second, EventState(event_id=8, status="synced", payload=leaky), 201, now, payload_text=leaky_text))
        payloads = dict(db.execute("SELECT remote_id, payload FROM events WHERE payload IS NOT NULL"))
        assert payloads["A"] == plain_text
        assert secret not in payloads["B"] and json.loads(payloads["B"])["title"] == "B"
    finally:
        db.close()
        store.close()


def test_an_outcome_carried_into_a_refused_intent_is_written_on_its_own(tmp_path):
    """The next intent fails (here the fence of a replica that lost its lease): the answered call's
    outcome is still recorded, and nothing of the refused intent is."""

    class Fenced(Store):
        refuse = False

        def _fence(self, db):
            if self.refuse:
                raise LeaseLost("the lease of epoch 3 is no longer this replica's; no further call is sent")

    store = Fenced(tmp_path / "c.db")
    try:
        now = utcnow()
        first = _intent(store, "A", now)
        store.refuse = True
        with pytest.raises(LeaseLost):
            _intent(store, "B", now, settle=Answered(first, EventState(event_id=7, status="synced"), 201, now))
        assert store.orphaned_intents() == []
        assert (store.event("A").event_id, store.event("A").status) == (7, "synced")
        assert store.event("B") is None
        assert [(o.remote_id, o.outcome) for o in store.operations()] == [("A", "ok")]
    finally:
        store.close()
