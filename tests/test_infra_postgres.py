"""The test database is a real PostgreSQL server."""

from __future__ import annotations

import psycopg
import pytest

from deploy.kafka_local import unique_name

pytestmark = pytest.mark.postgres


def test_postgres_round_trip(postgres_dsn: str) -> None:
    table = unique_name("infra_roundtrip").replace("-", "_")
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, ticket text NOT NULL, "
            "due timestamptz NOT NULL, payload jsonb)"
        )
        conn.execute(
            f"INSERT INTO {table} (ticket, due, payload) VALUES (%s, %s, %s::jsonb), "
            "(%s, %s, %s::jsonb)",
            (
                "T-1",
                "2026-01-02T03:04:05Z",
                '{"priority": "p1"}',
                "T-2",
                "2026-01-03T00:00:00Z",
                '{"priority": "p3"}',
            ),
        )
        conn.commit()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            f"SELECT ticket, extract(epoch FROM due)::bigint, payload->>'priority' "
            f"FROM {table} ORDER BY id"
        ).fetchall()
        version = conn.execute("SHOW server_version_num").fetchone()
        conn.execute(f"DROP TABLE {table}")
    assert rows == [("T-1", 1767323045, "p1"), ("T-2", 1767398400, "p3")]
    assert version is not None and int(version[0]) >= 120000


async def test_postgres_async_transaction_rollback(postgres_dsn: str) -> None:
    table = unique_name("infra_rollback").replace("-", "_")
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(f"CREATE TABLE {table} (n int)")
        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES (1)")
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} VALUES (2)")
                    await conn.execute("SELECT 1/0")
            cur = await conn.execute(f"SELECT n FROM {table} ORDER BY n")
            assert await cur.fetchall() == [(1,)]
        finally:
            await conn.execute(f"DROP TABLE {table}")
