"""One tiny adapter over SQLite (stdlib) and PostgreSQL (psycopg 3) so every query is written once.

Queries use `?` placeholders and portable SQL; the adapter rewrites placeholders for psycopg.
Both backends are driven synchronously: callers run DB work in a thread (`asyncio.to_thread`)
and keep transactions short, which suits SQLite's single writer and psycopg's sync API alike.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]
Row = tuple[Any, ...]


class Cursor(Protocol):
    """What both drivers' cursors offer and we use."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://")) or (
        "=" in target and "dbname" in target
    )


_PLACEHOLDER = re.compile(r"\?")


class Database:
    """A connection with a dialect; `tx()` is one transaction, `query` a read outside one.

    A lock makes a Database safe to share between the event loop's worker threads; the
    projector and the API each open their own, so reads never wait on a projector batch.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.dialect: Dialect = "postgres" if is_postgres_url(target) else "sqlite"
        self._lock = threading.RLock()
        self._conn: Any
        if self.dialect == "postgres":
            import psycopg

            self._conn = psycopg.connect(target, autocommit=True)
        else:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        self._in_tx = False
        self.data_errors: tuple[type[Exception], ...] = (OverflowError, UnicodeEncodeError)
        """What the driver raises for a value the database cannot store (PostgreSQL: NUL in
        text, an integer out of a column's range): a fault of one record, not of the
        database, so the projector skips the record instead of stopping."""
        if self.dialect == "postgres":
            self.data_errors += (psycopg.DataError,)
        else:
            self.data_errors += (sqlite3.DataError,)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _sql(self, sql: str) -> str:
        if self.dialect == "postgres":
            return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (inside `tx()` when it writes)."""
        with self._lock:
            return self._conn.execute(self._sql(sql), tuple(params))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            if self.dialect == "postgres":
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(sql), [tuple(r) for r in rows])
            else:
                self._conn.executemany(sql, [tuple(r) for r in rows])

    def bulk_insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Load many rows fast (COPY on PostgreSQL): for benchmarks and imports, in a tx."""
        with self._lock:
            if self.dialect == "postgres":
                with (
                    self._conn.cursor() as cur,
                    cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" for _ in columns)
                self._conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of a read, as tuples."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with self._lock:
            row = self._conn.execute(self._sql(sql), tuple(params)).fetchone()
            return None if row is None else tuple(row)

    @contextmanager
    def tx(self) -> Iterator[Database]:
        """One transaction: every row and the consumer offsets commit together or not at all."""
        with self._lock:
            if self._in_tx:
                yield self
                return
            self._in_tx = True
            try:
                if self.dialect == "postgres":
                    with self._conn.transaction():
                        yield self
                else:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield self
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
            finally:
                self._in_tx = False

    def upsert_sql(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT ... ON CONFLICT (key) DO UPDATE: one syntax for SQLite >= 3.24 and PostgreSQL."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return (
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) {action}"
        )
