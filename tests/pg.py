"""A throwaway PostgreSQL database per test, on the server `.ci/run` starts on 127.0.0.1
(`JOBYLON_TEST_PG_URL`). Under CI a missing server is a failure; elsewhere the test is skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

ENV = "JOBYLON_TEST_PG_URL"


def server_url() -> str:
    url = os.environ.get(ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{ENV} is not set: .ci/run must start PostgreSQL for these tests")
        pytest.skip(f"{ENV} is not set (a PostgreSQL server on 127.0.0.1)")
    return url


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server_url())
    name = f"connector_test_{uuid.uuid4().hex[:12]}"
    admin_info = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_info, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_info, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(params=["sqlite", "postgresql"])
def state_section(request) -> dict[str, str]:
    """The `[state]` keys for each engine: the SQLite file the Harness sets, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    return {"url": request.getfixturevalue("pg_database")}
