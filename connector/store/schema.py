"""The state database's tables, as versioned sqlite-utils migrations (`_sqlite_migrations`)."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

SCHEMA_VERSION = 6
migrations = Migrations("connector")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("events").create(
        {
            "remote_id": str,
            "event_id": int,
            "status": str,
            "payload": str,
            "mutable_hash": str,
            "fixed_hash": str,
            "starts_at_utc": str,
            "ends_at_utc": str,
            "first_synced_at": str,
            "last_synced_at": str,
            "source_updated_at": str,
        },
        pk="remote_id",
    )
    db.table("events").create_index(["status"])
    db.table("failures").create(
        {
            "id": int,
            "remote_id": str,
            "action": str,
            "kind": str,
            "http_status": int,
            "message": str,
            "request": str,
            "response": str,
            "attempts": int,
            "first_at": str,
            "last_at": str,
            "next_attempt_at": str,
            "resolved_at": str,
            "content_hash": str,
        },
        pk="id",
    )
    db.execute("CREATE INDEX idx_failures_open ON failures(remote_id) WHERE resolved_at IS NULL")
    db.table("runs").create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "outcome": str,
            "complete_fetch": int,
            "counts": str,
            "duration_ms": int,
            "error": str,
        },
        pk="id",
    )
    db.table("operations").create(
        {
            "id": int,
            "run_id": int,
            "remote_id": str,
            "event_id": int,
            "action": str,
            "method": str,
            "http_status": int,
            "outcome": str,
            "message": str,
            "at": str,
            "duration_ms": int,
        },
        pk="id",
    )
    db.table("operations").create_index(["remote_id"])
    db.table("intents").create(
        {
            "id": int,
            "run_id": int,
            "remote_id": str,
            "action": str,
            "method": str,
            "event_id": int,
            "request": str,
            "content_hash": str,
            "started_at": str,
            "pid": int,
        },
        pk="id",
    )
    db.table("meta").create({"key": str, "value": str}, pk="key")


@migrations()
def m002_run_notes(db: Database) -> None:
    """runs.note: what a person should know about a pass that is not an error (a first pass on a
    new database, how many creates it made)."""
    db.table("runs").add_column("note", str)


@migrations()
def m005_leases(db: Database) -> None:
    """Replicas sharing a PostgreSQL state (connector.leader): the leader's lease, and the epoch
    every intent is written under (fencing). An SQLite state has one process and leaves them empty."""
    db.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL, expires_at REAL NOT NULL)")
    db.execute("ALTER TABLE intents ADD COLUMN epoch INTEGER")


@migrations()
def m003_webhooks(db: Database) -> None:
    """Jobylon's calendar_event webhooks (connector.webhooks): the latest state of each event as
    Jobylon last described it, its participants' RSVPs, and the outbox of records forwarded to the
    partner. Written in standard SQL (a PostgreSQL store follows). `settled_as` says what the
    connector made of the event: mapped (an event we know), linked (an in-doubt create it healed),
    duplicate, stale, waiting, ambiguous or unmatched (the last three are looked at again)."""
    db.execute(
        """CREATE TABLE webhook_events (
            event_id INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            title TEXT,
            description TEXT,
            duration INTEGER,
            start_time TEXT,
            timezone TEXT,
            organizer TEXT,
            participants TEXT,
            location TEXT,
            videoconferencing INTEGER,
            video_link TEXT,
            content_hash TEXT NOT NULL,
            received_at TEXT NOT NULL,
            first_received_at TEXT NOT NULL,
            remote_id TEXT,
            settled_as TEXT NOT NULL,
            note TEXT
        )"""
    )
    db.execute("CREATE INDEX idx_webhook_events_remote_id ON webhook_events(remote_id)")
    db.execute("CREATE INDEX idx_webhook_events_settled_as ON webhook_events(settled_as)")
    db.execute(
        """CREATE TABLE webhook_rsvps (
            event_id INTEGER NOT NULL,
            application_id INTEGER NOT NULL,
            rsvp TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (event_id, application_id)
        )"""
    )
    db.execute(
        """CREATE TABLE webhook_forwards (
            id INTEGER PRIMARY KEY,
            event_id INTEGER NOT NULL,
            remote_id TEXT,
            record TEXT NOT NULL,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            kind TEXT,
            http_status INTEGER,
            message TEXT,
            last_at TEXT,
            next_attempt_at TEXT
        )"""
    )
    db.execute("CREATE INDEX idx_webhook_forwards_due ON webhook_forwards(next_attempt_at) WHERE sent_at IS NULL")


@migrations()
def m004_page_indexes(db: Database) -> None:
    """The status pages' reads (connector.store.reader), each a page served by an index: open
    failures newest first, of one kind or all (also `count_open_failures`); every failure of one
    remote id; the calls of the last passes per action (the chart). Named m004 and applied after
    m005: migrations run in the order they are written here."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_failures_open_id ON failures(id) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_failures_open_kind ON failures(kind, id) WHERE resolved_at IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_failures_remote_id ON failures(remote_id, id)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_operations_run ON operations(run_id, action, method)")


@migrations()
def m006_state_hashes(db: Database) -> None:
    """operations.state_hash: a hash of the event's whole state after a successful call (its create
    fields, `connector.webhooks.payload.state_hash`), so a late redelivery of a state our own calls
    left is told from a change made inside Jobylon (docs/design.md §7, Drift)."""
    db.execute("ALTER TABLE operations ADD COLUMN state_hash TEXT")
