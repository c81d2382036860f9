"""Ingest's memory of Zammad, in one SQLite file, so that it survives a restart of ingest.

Zammad sends snapshots, so the adapter needs each ticket's states seen before
(`events.vendors.zammad.Known`), and Zammad signs no time, so replays are recognised by the
`X-Zammad-Delivery` id with the body's SHA-256 (issue #19 item 8: Zammad's delivery id is
its job's id, and a retried job sends the ticket as it is at the retry, so one id may carry a
newer body: only the same id with the same body is a replay). Both live here, bounded: the
TICKETS most recently seen tickets (an older one is forgotten: its next webhook is a first
sight) and the DELIVERIES most recent deliveries (the replay window, counted in deliveries,
not time).

WAL journal, `synchronous=NORMAL`: each write is committed before the call returns, durable
when ingest is killed (not against a power loss of the host). One ingest process per file:
two processes behind one Zammad would each see only their share of the snapshots.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import cast

import orjson

from events.vendors.common import Category
from events.vendors.zammad import Known, Seen

TICKETS = 200_000
DELIVERIES = 100_000
_PRUNE_EVERY = 1000
_CATEGORIES = frozenset({"open", "paused", "resolved", "closed"})
MAX_DELIVERY_ID = 256
"""Longer `X-Zammad-Delivery` values (Zammad's are 36-character UUIDs) are not remembered."""


class ZammadStore:
    """`events.vendors.zammad.Memory` plus the delivery ids seen, in SQLite at `path`
    (":memory:" for one process's life only)."""

    def __init__(self, path: str, tickets: int = TICKETS, deliveries: int = DELIVERIES) -> None:
        self.tickets = tickets
        self.deliveries = deliveries
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS zammad_ticket"
            " (ticket_id TEXT PRIMARY KEY, known BLOB NOT NULL, touched INTEGER NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS zammad_touched ON zammad_ticket (touched)")
        self._db.execute("CREATE TABLE IF NOT EXISTS zammad_delivery (delivery TEXT PRIMARY KEY)")
        (last,) = self._db.execute("SELECT coalesce(max(touched), 0) FROM zammad_ticket").fetchone()
        self._touched = int(last)
        self._writes = 0

    def close(self) -> None:
        self._db.close()

    # -- events.vendors.zammad.Memory

    def known(self, ticket_id: str) -> Known | None:
        row = self._db.execute(
            "SELECT known FROM zammad_ticket WHERE ticket_id = ?", (ticket_id,)
        ).fetchone()
        return None if row is None else _decode(row[0])

    def keep(self, ticket_id: str, known: Known) -> None:
        self._touched += 1
        value = orjson.dumps({"opened_from": known.opened_from, "seen": known.seen})
        self._db.execute(
            "INSERT OR REPLACE INTO zammad_ticket (ticket_id, known, touched) VALUES (?, ?, ?)",
            (ticket_id, value, self._touched),
        )
        self._prune()

    # -- deliveries

    def delivered(self, delivery: str, body: bytes) -> bool:
        """Whether `delivery` with this `body` is among the DELIVERIES most recent kept."""
        row = self._db.execute(
            "SELECT 1 FROM zammad_delivery WHERE delivery = ?", (_key(delivery, body),)
        ).fetchone()
        return row is not None

    def remember_delivery(self, delivery: str, body: bytes) -> None:
        """Call once the delivery's events are on the broker (a failed one may be retried)."""
        if delivery and len(delivery) <= MAX_DELIVERY_ID:
            self._db.execute(
                "INSERT OR IGNORE INTO zammad_delivery (delivery) VALUES (?)",
                (_key(delivery, body),),
            )
            self._prune()

    def _prune(self) -> None:
        self._writes += 1
        if self._writes % _PRUNE_EVERY:
            return
        self._db.execute(
            "DELETE FROM zammad_ticket WHERE touched <= ?", (self._touched - self.tickets,)
        )
        self._db.execute(
            "DELETE FROM zammad_delivery"
            " WHERE rowid <= (SELECT max(rowid) FROM zammad_delivery) - ?",
            (self.deliveries,),
        )


def _key(delivery: str, body: bytes) -> str:
    return f"{delivery} {hashlib.sha256(body).hexdigest()}"


def _decode(value: bytes) -> Known | None:
    """A kept `Known`, or None for a row this version cannot read (a first sight then)."""
    try:
        obj = orjson.loads(value)
        seen: list[Seen] = []
        for at, text, category in obj["seen"]:
            if not isinstance(at, int) or not isinstance(text, str) or category not in _CATEGORIES:
                return None
            seen.append((at, text, cast(Category, category)))
        opened_from = obj["opened_from"]
    except (ValueError, KeyError, TypeError):
        return None
    if not seen or not isinstance(opened_from, int):
        return None
    return Known(opened_from, tuple(seen))
