"""The `sql` source over real databases: SQLite files, and a real PostgreSQL server (`pg_url`: the
throwaway cluster .ci/run starts; skipped locally without one, a failure under CI)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from conftest import Harness, item
from sqlalchemy import event

from connector.config import load_settings
from connector.errors import SourceError
from connector.mapping import Mapper
from connector.model import BrokenItem
from connector.sources import open_source
from connector.sources.sql import RowList

JOBYLON = {"app_id": "demo-app", "app_key": "demo-key-0123456789"}
QUERY = "SELECT * FROM interviews WHERE {since} IS NULL OR datetime(updated_at) >= datetime({since}) ORDER BY id"
MAPPING = {
    "duration_minutes": "minutes",
    "end": "",
    "organizer_email": "organizer",
    "application_ids": "apps",
    "description": "notes",
}


def sqlite_db(path: Path, rows: list[dict[str, Any]]) -> Path:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS interviews (id TEXT PRIMARY KEY, title TEXT, notes TEXT, start_at TEXT, minutes INTEGER, timezone TEXT,"
        " organizer TEXT, apps TEXT, status TEXT, deleted INTEGER DEFAULT 0, updated_at TEXT)"
    )
    for row in rows:
        db.execute(
            "INSERT OR REPLACE INTO interviews VALUES (:id, :title, :notes, :start_at, :minutes, :timezone, :organizer, :apps, :status, :deleted, :updated_at)",
            row,
        )
    db.commit()
    db.close()
    return path


def row(remote_id: str, *, updated_at: str = "2026-01-01T10:00:00+00:00", days: int = 3, **changes: Any) -> dict[str, Any]:
    """A row of the partner's table; `apps` (the JSON text of the application ids) is [1001] unless given."""
    raw = item(remote_id, days=days)
    values = {
        "id": remote_id,
        "title": raw["title"],
        "notes": "",
        "start_at": raw["start_at"],
        "minutes": 60,
        "timezone": "Europe/Stockholm",
        "organizer": "recruiter@acme.example",
        "apps": "[1001]",
        "status": "scheduled",
        "deleted": 0,
        "updated_at": updated_at,
    }
    values.update(changes)
    return values


def sql_settings(url: str, query: str = QUERY, **source: Any):
    return load_settings(
        data={"jobylon": JOBYLON, "source": {"kind": "sql", "url": url, "query": query, "json_columns": ["apps"], **source}, "mapping": MAPPING}
    )


def fetch(settings, since: str | None = None):
    source = open_source(settings.source, settings.retry)
    try:
        return source.fetch(since=since)
    finally:
        source.close()


# -- SQLite -----------------------------------------------------------------------------------


def test_a_complete_fetch_binds_null_and_an_incremental_one_the_cursor(tmp_path):
    db = sqlite_db(tmp_path / "hr.db", [row("A", updated_at="2026-01-01T10:00:00+00:00"), row("B", updated_at="2026-01-02T10:00:00+00:00")])
    settings = sql_settings(f"sqlite:///{db}")
    assert settings.source.incremental_capable
    complete = fetch(settings)
    assert complete.complete and [i["id"] for i in complete.items] == ["A", "B"]
    incremental = fetch(settings, since="2026-01-02T09:00:00.000+00:00")
    assert not incremental.complete and [i["id"] for i in incremental.items] == ["B"]
    # without {since} the query has no parameter: every fetch is complete, the cursor unused
    plain = sql_settings(f"sqlite:///{db}", "SELECT * FROM interviews")
    assert not plain.source.incremental_capable and fetch(plain, since="2026-01-02T09:00:00+00:00").complete


def test_since_is_bound_as_a_parameter_never_written_into_the_sql(tmp_path):
    db = sqlite_db(tmp_path / "hr.db", [row("A")])
    settings = sql_settings(f"sqlite:///{db}", "SELECT * FROM interviews WHERE {since} IS NULL OR updated_at >= {since} OR '{x}:10' = ':a'")
    source = open_source(settings.source, settings.retry)
    seen: list[tuple[str, Any]] = []
    try:
        source.fetch(since=None)
        event.listen(source._engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many: seen.append((statement, params)))
        source.fetch(since="2026-01-02T09:00:00.000+00:00")
        source.fetch(since=None)
    finally:
        source.close()
    (statement, params), (_, null_params) = seen
    assert "2026" not in statement and "{since}" not in statement and statement.count("?") == 2
    assert "'{x}:10' = ':a'" in statement, "the rest of the query is taken as written: a colon is no parameter"
    assert params == ("2026-01-02 09:00:00.000000", "2026-01-02 09:00:00.000000")
    assert null_params == (None, None), "a complete fetch binds NULL"


def test_rows_are_kept_as_tuples_and_become_dicts_when_read(tmp_path):
    db = sqlite_db(tmp_path / "hr.db", [row(f"R{n:03}") for n in range(50)])
    settings = sql_settings(f"sqlite:///{db}", batch_size=7)
    seen: list[dict[str, Any]] = []
    source = open_source(settings.source, settings.retry)
    try:
        source.fetch()
        event.listen(
            source._engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many: seen.append(dict(context.execution_options))
        )
        fetched = source.fetch()
    finally:
        source.close()
    assert seen[0]["stream_results"] is True and seen[0]["yield_per"] == 7
    items = fetched.items
    assert isinstance(items, RowList) and len(items) == 50
    assert all(type(list.__getitem__(items, n)) is tuple for n in range(50)), "no row is a dict before it is read"
    first = items[0]
    assert isinstance(first, dict) and first["apps"] == [1001], "a JSON column is decoded when the row is read"
    assert [i["id"] for i in items[-2:]] == ["R048", "R049"] and items[-1]["id"] == "R049"
    mapped = Mapper(settings.mapping).map_all(items)  # the engine's path: every item read once
    assert len(mapped.interviews) == 50 and not mapped.invalid


def test_a_json_column_that_is_not_json_is_an_invalid_item_of_that_id(tmp_path):
    db = sqlite_db(tmp_path / "hr.db", [row("A"), row("B", apps="[1001"), row("C", apps=None)])
    settings = sql_settings(f"sqlite:///{db}")
    items = list(fetch(settings).items)
    assert isinstance(items[1], BrokenItem) and items[1].position == "row 2" and "column apps: not valid JSON" in items[1].message
    mapped = Mapper(settings.mapping).map_all(items)
    assert [d.remote_id for d in mapped.interviews] == ["A"]
    assert {i.remote_id: i.message for i in mapped.invalid} == {
        "B": "item: row 2: column apps: not valid JSON (Expecting ',' delimiter at line 1 column 6)",
        "C": "application_ids: missing",
    }


def test_database_values_arrive_as_the_mapping_reads_them(tmp_path):
    db = sqlite3.connect(tmp_path / "v.db")
    db.execute("CREATE TABLE t (id INTEGER, price NUMERIC, ratio REAL, doc TEXT, blob BLOB)")
    db.execute("INSERT INTO t VALUES (7, 12, 0.5, '{\"a\": [1, {\"b\": true}]}', x'7b7d')")
    db.commit()
    db.close()
    settings = load_settings(
        data={
            "jobylon": JOBYLON,
            "source": {"kind": "sql", "url": f"sqlite:///{tmp_path / 'v.db'}", "query": "SELECT * FROM t", "json_columns": ["doc", "blob"]},
        }
    )
    assert list(fetch(settings).items) == [{"id": 7, "price": 12, "ratio": 0.5, "doc": {"a": [1, {"b": True}]}, "blob": {}}]


@pytest.mark.parametrize(
    ("query", "source", "expected"),
    [
        ("SELECT * FROM nowhere", {}, "the query failed (no such table: nowhere)"),
        ("SELECT id, title AS id FROM interviews", {}, "returns the column(s) 'id' more than once; name them apart with AS"),
        ("SELECT id FROM interviews", {}, "source.json_columns names 'apps', not among the query's columns (id)"),
    ],
    ids=["no-table", "repeated-column", "json-column-missing"],
)
def test_a_query_that_cannot_serve_is_one_source_error(tmp_path, query, source, expected):
    db = sqlite_db(tmp_path / "hr.db", [row("A")])
    with pytest.raises(SourceError) as caught:
        fetch(sql_settings(f"sqlite:///{db}", query, **source))
    assert expected in str(caught.value) and "[SQL:" not in str(caught.value)
    assert str(caught.value).startswith(f"source sqlite:///{db}: ")


def test_a_missing_sqlite_file_is_an_error_and_is_never_created(tmp_path):
    missing = tmp_path / "typo.db"
    with pytest.raises(SourceError, match=r"the SQLite file .*typo\.db does not exist"):
        fetch(sql_settings(f"sqlite:///{missing}"))
    assert not missing.exists()


def test_a_relative_sqlite_url_is_relative_to_the_config_folder(tmp_path, monkeypatch):
    home = tmp_path / "etc"
    home.mkdir()
    sqlite_db(home / "hr.db", [row("A")])
    config = home / "config.toml"
    config.write_text(f'[jobylon]\napp_id = "a"\napp_key = "k-123456"\n[source]\nkind = "sql"\nurl = "sqlite:///hr.db"\nquery = "{QUERY}"\n')
    config.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config)
    assert settings.source.url == f"sqlite:///{home / 'hr.db'}"
    assert [i["id"] for i in fetch(settings).items] == ["A"]


def test_a_missing_driver_names_what_to_install(tmp_path):
    with pytest.raises(SourceError, match=r"the database driver is not installed \(pymysql\).*pip install 'jobylon-connector\[postgresql\]'"):
        fetch(sql_settings("mysql+pymysql://connector:pw-123456@127.0.0.1:1/hr"))


def test_the_database_password_is_a_secret_everywhere(tmp_path, sandbox):
    """In the URL (as written and percent-encoded) or in source.password: never in an error, a log line
    or the state database."""
    secret, encoded = "s3cr@t-pw/x", "s3cr%40t-pw%2Fx"
    for source in (
        {"url": f"postgresql+psycopg://connector:{encoded}@127.0.0.1:1/hr"},
        {"url": "postgresql+psycopg://connector@127.0.0.1:1/hr", "password": secret},
    ):
        folder = tmp_path / uuid.uuid4().hex[:6]
        folder.mkdir()
        h = Harness(folder, sandbox)
        h.data["source"] = {"kind": "sql", "query": QUERY, **source}
        try:
            assert secret in h.settings.secrets()
            result = h.sync()
            assert result.outcome == "source_error"
            assert "postgresql+psycopg://connector:***@127.0.0.1:1/hr" in (result.error or "") or "postgresql+psycopg://connector@127.0.0.1:1/hr" in (
                result.error or ""
            )
            run = h.store.runs(1)[0]
            for text in (result.error or "", json.dumps(run.__dict__, default=str), (folder / "state" / "connector.db").read_bytes().decode("latin-1")):
                assert secret not in text and encoded not in text
        finally:
            h.close()
    with pytest.raises(Exception) as caught:
        load_settings(data={"jobylon": JOBYLON, "source": {"kind": "sql", "url": f"no url {secret}", "query": "SELECT 1"}})
    assert secret not in str(caught.value) and "source.url: expected an SQLAlchemy database URL" in str(caught.value)


def test_sqlite_sync_end_to_end_then_an_incremental_pass(tmp_path, sandbox):
    db = sqlite_db(tmp_path / "hr.db", [row("A", updated_at="2026-01-01T10:00:00+00:00"), row("B", updated_at="2026-01-02T10:00:00+00:00")])
    h = Harness(tmp_path, sandbox, mapping=MAPPING, sync={"full_every": 5})
    h.data["source"] = {"kind": "sql", "url": f"sqlite:///{db}", "query": QUERY, "json_columns": ["apps"]}
    try:
        first = h.sync(full=None)
        assert first.complete and first.counts["created"] == 2
        assert sorted(e["title"] for e in h.jobylon_events()) == ["Interview A", "Interview B"]
        assert h.store.get_meta("cursor") == "2026-01-02T10:00:00.000+00:00"
        sqlite_db(db, [row("A", title="Moved", updated_at="2026-01-03T10:00:00+00:00")])
        second = h.sync(full=None)
        # since = the cursor minus 300 s: B (at the cursor) is read again, unchanged, and nothing is sent for it
        assert not second.complete and second.fetched == 2 and second.counts["updated"] == 1 and second.counts["unchanged"] == 1
        assert sorted(e["title"] for e in h.jobylon_events()) == ["Interview B", "Moved"]
    finally:
        h.close()


# -- PostgreSQL ---------------------------------------------------------------------------------

PG_QUERY = "SELECT id, title, start_at, minutes, organizer, apps, deleted, updated_at FROM {table} WHERE {since} IS NULL OR updated_at >= {since} ORDER BY id"


@pytest.fixture
def pg_table(pg_url):
    table = f"interviews_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as db:
        db.execute(
            sqlalchemy.text(
                f"CREATE TABLE {table} (id text PRIMARY KEY, title text, start_at timestamptz, minutes integer, organizer text, apps jsonb,"
                " deleted boolean DEFAULT false, updated_at timestamptz)"
            )
        )

    def put(*rows: dict[str, Any]) -> None:
        with engine.begin() as db:
            for values in rows:
                db.execute(
                    sqlalchemy.text(
                        f"INSERT INTO {table} VALUES (:id, :title, :start_at, :minutes, :organizer, CAST(:apps AS jsonb), :deleted, :updated_at)"
                        " ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, start_at = EXCLUDED.start_at, deleted = EXCLUDED.deleted,"
                        " updated_at = EXCLUDED.updated_at"
                    ),
                    values,
                )

    yield table, put
    with engine.begin() as db:
        db.execute(sqlalchemy.text(f"DROP TABLE {table}"))
    engine.dispose()


def pg_row(remote_id: str, updated_at: datetime, *, title: str | None = None, deleted: bool = False) -> dict[str, Any]:
    start = datetime.combine(date.today() + timedelta(days=3), datetime.min.time(), UTC).replace(hour=9)
    return {
        "id": remote_id,
        "title": title or f"Interview {remote_id}",
        "start_at": start,
        "minutes": 45,
        "organizer": "recruiter@acme.example",
        "apps": json.dumps([1001, 1002]),
        "deleted": deleted,
        "updated_at": updated_at,
    }


def test_postgresql_complete_and_incremental_fetch_with_jsonb_and_a_server_side_cursor(pg_url, pg_table):
    table, put = pg_table
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    put(pg_row("A", base), pg_row("B", base + timedelta(hours=1)))
    settings = load_settings(data={"jobylon": JOBYLON, "source": {"kind": "sql", "url": pg_url, "query": PG_QUERY.replace("{table}", table), "batch_size": 1}})
    source = open_source(settings.source, settings.retry)
    cursors: list[str] = []
    try:
        source.fetch()
        event.listen(source._engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many: cursors.append(type(cursor).__name__))
        complete = source.fetch(since=None)  # binds NULL: PostgreSQL knows its type
        incremental = source.fetch(since=(base + timedelta(minutes=30)).isoformat())
    finally:
        source.close()
    assert cursors == ["ServerCursor", "ServerCursor"], "rows stream from a server-side cursor"
    assert complete.complete and [i["id"] for i in complete.items] == ["A", "B"]
    assert complete.items[0]["apps"] == [1001, 1002] and complete.items[0]["updated_at"] == base, "jsonb and timestamptz as Python values"
    assert not incremental.complete and [i["id"] for i in incremental.items] == ["B"]


def test_postgresql_sync_end_to_end_with_a_deleted_flag(tmp_path, sandbox, pg_url, pg_table):
    table, put = pg_table
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    put(pg_row("A", base), pg_row("B", base))
    h = Harness(tmp_path, sandbox, mapping={**MAPPING, "start": "start_at", "timezone": "", "deleted": "deleted"}, sync={"full_every": 10})
    h.data["source"] = {"kind": "sql", "url": pg_url, "query": PG_QUERY.replace("{table}", table)}
    try:
        assert h.sync(full=None).counts["created"] == 2
        put(pg_row("A", base + timedelta(hours=1), title="Moved"), pg_row("B", base + timedelta(hours=1), deleted=True))
        second = h.sync(full=None)
        assert not second.complete and second.counts["updated"] == 1 and second.counts["deleted"] == 1
        assert [e["title"] for e in h.jobylon_events()] == ["Moved"]
    finally:
        h.close()


def test_postgresql_wrong_password_names_the_server_never_the_password(pg_url):
    url = sqlalchemy.engine.make_url(pg_url)
    wrong = url.set(database="no_such_database_here", password="pw-never-shown-42")
    settings = load_settings(data={"jobylon": JOBYLON, "source": {"kind": "sql", "url": wrong.render_as_string(hide_password=False), "query": "SELECT 1"}})
    with pytest.raises(SourceError) as caught:
        fetch(settings)
    message = str(caught.value)
    assert "pw-never-shown-42" not in message and "no_such_database_here" in message and "the query failed" in message


SLOW_SQLITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS id FROM c"


def test_a_query_that_runs_too_long_is_cancelled_naming_the_setting(tmp_path):
    db = sqlite_db(tmp_path / "hr.db", [row("A")])
    settings = sql_settings(f"sqlite:///{db}", SLOW_SQLITE, json_columns=[], timeout_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch(settings)
    assert time.monotonic() - started < 10  # the count alone runs for minutes
    assert "the query ran longer than 0.5 s and was cancelled (source.timeout_seconds = 0.5)" in str(caught.value)
    assert [i["id"] for i in fetch(sql_settings(f"sqlite:///{db}", json_columns=[], timeout_seconds=0.5)).items] == ["A"]  # a quick one is untouched


def test_a_lookup_query_that_runs_too_long_is_cancelled(tmp_path):
    from connector.lookups import load_lookups

    db = sqlite_db(tmp_path / "hr.db", [row("A")])
    settings = load_settings(
        data={
            "jobylon": JOBYLON,
            "source": {"kind": "sql", "url": f"sqlite:///{db}", "query": QUERY},
            "mapping": {
                **MAPPING,
                "lookups": {"slow": {"kind": "sql", "query": SLOW_SQLITE.replace("count(*) AS id", "count(*) AS k, 1 AS v"), "timeout_seconds": 0.5}},
            },
        }
    )
    with pytest.raises(SourceError) as caught:
        load_lookups(settings)
    assert "lookup slow" in str(caught.value) and "timeout_seconds = 0.5 in [mapping.lookups.slow]" in str(caught.value)


def test_a_postgresql_query_that_runs_too_long_is_cancelled_on_the_server(pg_url):
    settings = load_settings(data={"jobylon": JOBYLON, "source": {"kind": "sql", "url": pg_url, "query": "SELECT pg_sleep(30) AS id", "timeout_seconds": 0.5}})
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch(settings)
    assert time.monotonic() - started < 10
    assert "ran longer than 0.5 s and was cancelled" in str(caught.value)
