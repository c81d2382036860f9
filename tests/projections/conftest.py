"""Fixtures for the projection tests: a fresh read-model database on SQLite and on PostgreSQL.

The PostgreSQL side creates one throwaway database per test on the shared server from the
session fixture `postgres_dsn` (tests/conftest.py), so tests never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events.samples import generate_history
from projections.db import Database
from projections.schema import migrate
from streams.sla.policy import load_policy
from streams.sla.rules import Policy


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(None)


def _fresh_postgres(dsn: str) -> tuple[str, str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"proj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo("", **params), name


def _drop_postgres(dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def make_db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of fresh, migrated database targets on the parametrized backend."""
    backend: str = request.param
    created: list[str] = []
    base_dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else ""

    def make(migrated: bool = True) -> str:
        if backend == "postgres":
            target, name = _fresh_postgres(base_dsn)
            created.append(name)
        else:
            target = str(tmp_path / f"proj-{uuid.uuid4().hex[:8]}.sqlite3")
        if migrated:
            database = Database(target)
            migrate(database)
            database.close()
        return target

    yield make
    for name in created:
        _drop_postgres(base_dsn, name)


@pytest.fixture
def db_target(make_db_target: Any) -> str:
    """One fresh, migrated database target per test, on each backend."""
    target: str = make_db_target()
    return target


@pytest.fixture
def db(db_target: str) -> Iterator[Database]:
    database = Database(db_target)
    yield database
    database.close()


@pytest.fixture(scope="session")
def history() -> list[dict[str, Any]]:
    """A reproducible ticket history with warnings, breaches, pauses, reopens and closes."""
    return generate_history(60, seed=11)
