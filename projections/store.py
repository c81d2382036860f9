"""Applying records to the read models: decode, fold with the pure model, write rows + offset.

Everything a batch of one (topic, partition) changes, including that partition's next offset,
is written in ONE transaction: after a crash the tables and the offset agree, and the
projector resumes exactly after the last applied record. Re-applying a record is a no-op
anyway (ticket events are deduplicated by the core's `seen` ids, SLA events by primary key).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from events.codec import InvalidEvent, decode_json, ticket_event_from_obj
from events.outbound import sla_event_adapter
from projections.db import Database
from projections.model import (
    SLA_EVENT_COLUMNS,
    TICKET_COLUMNS,
    Extras,
    SlaFact,
    fold_ticket,
    sla_event_row,
    sla_fact,
    ticket_row,
)
from streams.sla.policy import Policy
from streams.sla.state import TicketState

log = logging.getLogger("escalator.projections")

Kind = Literal["ticket", "sla"]


@dataclass(slots=True)
class Counters:
    """What the projector did, for logs, /api/stats and tests."""

    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    invalid: int = 0
    skipped: int = 0
    """Records at offsets the database already holds (redelivered after a seek): not applied."""
    by_topic: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "by_topic": dict(self.by_topic),
        }


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, reduced to what applying it needs."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


def _ids(obj: Any) -> str:
    """Only ids go to logs, never ticket free text."""
    if isinstance(obj, dict):
        event_id, ticket_id = str(obj.get("event_id"))[:64], str(obj.get("ticket_id"))[:64]
        return f"event_id={event_id!r} ticket_id={ticket_id!r}"
    return "(not an object)"


class Store:
    """The read models in one database, with the policy used to fold ticket events."""

    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy
        self.counters = Counters()
        self._ticket_upsert = db.upsert_sql("tickets", TICKET_COLUMNS, ("ticket_id",))
        cols = ", ".join(SLA_EVENT_COLUMNS)
        marks = ", ".join("?" for _ in SLA_EVENT_COLUMNS)
        self._sla_insert = (
            f"INSERT INTO sla_events ({cols}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING"
        )
        self._offset_upsert = db.upsert_sql(
            "projector_offsets", ("topic", "partition_id", "next_offset"), ("topic", "partition_id")
        )

    # -- reading stored tickets ------------------------------------------------------------

    def _load(self, ticket_id: str) -> tuple[TicketState, Extras] | None:
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        row = self.db.query_one(
            "SELECT state_json, assignee, group_name, closed_at FROM tickets WHERE ticket_id = ?"
            + lock,
            (ticket_id,),
        )
        if row is None:
            return None
        state = TicketState.from_json_obj(orjson.loads(row[0]))
        return state, Extras(row[1], row[2], row[3])

    def _facts(self, ticket_id: str) -> list[SlaFact]:
        rows = self.db.query(
            "SELECT type, metric, cycle, level FROM sla_events WHERE ticket_id = ?", (ticket_id,)
        )
        return [SlaFact(r[0], r[1], int(r[2]), None if r[3] is None else int(r[3])) for r in rows]

    def _save(self, state: TicketState, extras: Extras) -> None:
        row = ticket_row(state, extras, self._facts(state.ticket_id), self.policy)
        self.db.execute(self._ticket_upsert, [row[c] for c in TICKET_COLUMNS])

    # -- applying ---------------------------------------------------------------------------

    def apply_ticket(self, raw: bytes | None, where: str = "") -> str:
        """Apply one ticket-events record; returns what happened (for counters and tests)."""
        try:
            if raw is None:
                raise InvalidEvent("empty record")
            obj = decode_json(raw)
            if isinstance(obj, dict) and obj.get("type") == "clock.tick":
                return "ignored"
            event = ticket_event_from_obj(obj)
        except InvalidEvent as exc:
            log.warning("invalid ticket record %s: %s", where, _reason(exc))
            self.counters.invalid += 1
            return "invalid"
        stored = self._load(event.ticket_id)
        state, extras = stored if stored is not None else (None, None)
        result = fold_ticket(state, extras, event, self.policy)
        if result.changed and result.state is not None:
            self._save(result.state, result.extras)
        if result.kind == "duplicate":
            self.counters.duplicates += 1
        elif result.kind == "rejected":
            log.info(
                "rejected ticket event %s event_id=%s ticket_id=%s",
                where,
                event.event_id[:64],
                event.ticket_id[:64],
            )
            self.counters.rejected += 1
        else:
            self.counters.applied += 1
        return result.kind

    def apply_sla(self, raw: bytes | None, where: str = "") -> str:
        """Apply one sla-events record: store it (idempotent by event_id), refresh the ticket."""
        obj: Any = None
        try:
            if raw is None:
                raise InvalidEvent("empty record")
            obj = decode_json(raw)
            event = sla_event_adapter.validate_python(obj)
            record = event.model_dump(mode="json")
            row = sla_event_row(record)
        except (InvalidEvent, ValidationError, ValueError, KeyError, TypeError) as exc:
            log.warning("invalid sla record %s %s: %s", where, _ids(obj), type(exc).__name__)
            self.counters.invalid += 1
            return "invalid"
        cursor = self.db.execute(self._sla_insert, [row[c] for c in SLA_EVENT_COLUMNS])
        if cursor.rowcount == 0:
            self.counters.duplicates += 1
            return "duplicate"
        fact = sla_fact(record)
        if fact.type == "ticket.escalated":
            self.db.execute(
                "INSERT INTO escalations (event_id, ticket_id, level, target, severity, cycle, "
                "escalated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (row["event_id"], row["ticket_id"], row["level"], row["target"],
                 row["severity"], row["cycle"], row["at"]),
            )  # fmt: skip
        stored = self._load(row["ticket_id"])
        if stored is not None:
            self._save(*stored)
        self.counters.applied += 1
        return "applied"

    def apply_batch(self, kind: Kind, records: Iterable[Record]) -> int:
        """Apply records of ONE (topic, partition) and store its next offset, in one transaction."""
        last: Record | None = None
        count = 0
        with self.db.tx():
            stored: int | None = None
            for record in records:
                if stored is None:
                    row = self.db.query_one(
                        "SELECT next_offset FROM projector_offsets "
                        "WHERE topic = ? AND partition_id = ?",
                        (record.topic, record.partition),
                    )
                    stored = -1 if row is None else int(row[0])
                if record.offset < stored:
                    self.counters.skipped += 1
                    continue
                where = f"{record.topic}/{record.partition}@{record.offset}"
                if kind == "ticket":
                    self.apply_ticket(record.value, where)
                else:
                    self.apply_sla(record.value, where)
                self.counters.by_topic[record.topic] = (
                    self.counters.by_topic.get(record.topic, 0) + 1
                )
                last = record
                count += 1
            if last is not None:
                self.db.execute(self._offset_upsert, (last.topic, last.partition, last.offset + 1))
        return count

    def offsets(self) -> dict[tuple[str, int], int]:
        """Stored next offsets per (topic, partition): where a restarted projector resumes."""
        rows = self.db.query("SELECT topic, partition_id, next_offset FROM projector_offsets")
        return {(r[0], int(r[1])): int(r[2]) for r in rows}


def _reason(exc: Exception) -> str:
    """The codec's reason names fields, not values, except the event type (truncated)."""
    return str(exc)[:200]


def dump_tables(
    db: Database, tables: Iterable[str] = ("tickets", "sla_events", "escalations")
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the read models, sorted: to compare a rebuild with the live tables."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    for table in tables:
        rows = db.query(f"SELECT * FROM {table}")
        result[table] = sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r))
    return result
