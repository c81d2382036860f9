"""Applying records to the read models: decode, fold with the pure model, write rows + offset.

Everything a batch of one (topic, partition) changes, including that partition's next offset,
is written in ONE transaction: after a crash the tables and the offset agree, and the
projector resumes exactly after the last applied record. Re-applying a record is a no-op
anyway (ticket events are deduplicated by the core's `seen` ids, SLA events by primary key).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from base.errors import EscalatorError
from base.logs import record_fields
from events.codec import InvalidEvent, decode_json, sanitise, ticket_event_from_obj
from events.instants import parse_rfc3339
from events.outbound import sla_event_adapter
from events.records import TicketEvent
from events.rollouts import PolicyActivated
from projections.db import Database
from projections.model import (
    ATTRIBUTION_COLUMNS,
    SLA_EVENT_COLUMNS,
    TICKET_COLUMNS,
    Extras,
    SlaFact,
    attribution_rows,
    fold_ticket,
    sla_event_row,
    sla_fact,
    ticket_row,
)
from streams.sla import state_codec
from streams.sla.rules import Policy
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


def _where(record: Record) -> str:
    return f"{record.topic}/{record.partition}@{record.offset}"


def _fields(record: Record, obj: Any = None) -> dict[str, Any]:
    """Log fields of a record: where it is, and its ids when it is an object that has them."""
    ids = obj if isinstance(obj, dict) else {}
    ticket, event = ids.get("ticket_id"), ids.get("event_id")
    return record_fields(
        record,
        ticket if isinstance(ticket, str) else None,
        event if isinstance(event, str) else None,
    )


def _ids(obj: Any) -> str:
    """Only ids go to logs, never ticket free text."""
    if isinstance(obj, dict):
        event_id, ticket_id = str(obj.get("event_id"))[:64], str(obj.get("ticket_id"))[:64]
        return f"event_id={event_id!r} ticket_id={ticket_id!r}"
    return "(not an object)"


@dataclass(slots=True)
class _Cached:
    """A ticket as a batch sees it: folded in memory, written once when the batch ends."""

    state: TicketState | None
    extras: Extras
    facts: list[SlaFact]
    dirty: bool = False


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
            f"INSERT INTO sla_events ({cols}) SELECT {marks} WHERE NOT EXISTS "
            "(SELECT 1 FROM retracted_events WHERE event_id = ?) ON CONFLICT (event_id) DO NOTHING"
        )
        self._attribution_insert = (
            f"INSERT INTO attributions ({', '.join(ATTRIBUTION_COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in ATTRIBUTION_COLUMNS)}) "
            "ON CONFLICT (event_id, position) DO NOTHING"
        )
        self._batch: dict[str, _Cached] = {}
        self._offset_upsert = db.upsert_sql(
            "projector_offsets", ("topic", "partition_id", "next_offset"), ("topic", "partition_id")
        )

    # -- reading stored tickets ------------------------------------------------------------
    # A batch first loads every ticket it touches (2 queries), folds in memory, then writes
    # each changed ticket row once (one executemany): few round trips per batch, which is
    # what makes PostgreSQL keep up.

    def _prefetch(self, ticket_ids: Iterable[str]) -> None:
        wanted = [t for t in dict.fromkeys(ticket_ids) if t not in self._batch]
        if not wanted:
            return
        if self.db.dialect == "postgres":
            # Per-ticket advisory locks (in key order: no deadlocks), held to commit: a ticket
            # event and an SLA event of one ticket applied by two group members serialise,
            # even when the ticket row does not exist yet. SQLite has a single writer anyway.
            self.db.execute(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtext(t) AS k "
                "FROM unnest(?::text[]) AS t) AS keys ORDER BY k",
                (wanted,),
            ).fetchall()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            for ticket_id in chunk:
                self._batch[ticket_id] = _Cached(None, Extras(), [])
            rows = self.db.query(
                "SELECT ticket_id, state_json, assignee, group_name, closed_at FROM tickets "
                f"WHERE ticket_id IN ({marks})",
                chunk,
            )
            for r in rows:
                entry = self._batch[r[0]]
                entry.state = state_codec.from_obj(orjson.loads(r[1]))
                entry.extras = Extras(r[2], r[3], r[4])
            facts = self.db.query(
                f"SELECT ticket_id, type, metric, cycle, level, round FROM sla_events "
                f"WHERE ticket_id IN ({marks})",
                chunk,
            )
            for f in facts:
                self._batch[f[0]].facts.append(_fact(f[1:]))

    def _entry(self, ticket_id: str) -> _Cached:
        if ticket_id not in self._batch:
            self._prefetch([ticket_id])
        return self._batch[ticket_id]

    def _flush(self) -> None:
        rows = []
        for entry in self._batch.values():
            if entry.dirty and entry.state is not None:
                row = ticket_row(entry.state, entry.extras, entry.facts, self.policy)
                rows.append([row[c] for c in TICKET_COLUMNS])
                entry.dirty = False
        if rows:
            self.db.executemany(self._ticket_upsert, rows)

    # -- applying ---------------------------------------------------------------------------

    def _decode_ticket(self, raw: bytes | None, where: Record) -> TicketEvent | None:
        try:
            if raw is None:
                raise InvalidEvent("empty record")
            obj = decode_json(raw)
            if isinstance(obj, dict) and obj.get("type") == "clock.tick":
                return None
            return ticket_event_from_obj(obj)
        except InvalidEvent as exc:
            log.warning(
                "invalid ticket record %s: %s", _where(where), _reason(exc), extra=_fields(where)
            )
            self.counters.invalid += 1
            return None

    def _decode_sla(self, raw: bytes | None, where: Record) -> dict[str, Any] | None:
        obj: Any = None
        try:
            if raw is None:
                raise InvalidEvent("empty record")
            obj = decode_json(raw)
            if isinstance(obj, dict) and obj.get("type") == "policy.activated":
                self._activated(PolicyActivated.model_validate(obj))
                return None
            record = sla_event_adapter.validate_python(obj).model_dump(mode="json")
            sla_event_row(record)  # every field converts
            return record
        except (InvalidEvent, ValidationError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "invalid sla record %s %s: %s",
                _where(where),
                _ids(obj),
                type(exc).__name__,
                extra=_fields(where, obj),
            )
            self.counters.invalid += 1
            return None

    def _activated(self, record: PolicyActivated) -> None:
        """Keep a `policy.activated` audit record (the rollout history; once per id)."""
        self.db.execute(
            "INSERT INTO policy_activations (event_id, name, version, digest, mode, at, "
            "partition_id, tickets_moved, tickets_kept) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (event_id) DO NOTHING",
            (
                record.event_id, record.name, record.version, record.digest, record.mode,
                parse_rfc3339(record.at), record.partition, record.tickets_moved,
                record.tickets_kept,
            ),
        )  # fmt: skip

    def _apply_ticket(self, event: TicketEvent, where: Record) -> str:
        """Fold one ticket event into the batch's copy of its ticket."""
        entry = self._entry(event.ticket_id)
        snapshot = None
        if entry.state is not None and entry.state.status == "closed":
            # handle may purge it and mutate it on the way
            snapshot = state_codec.to_obj(entry.state)
        try:
            result = fold_ticket(entry.state, entry.extras, event, self.policy)
        except Exception as exc:  # a fault in the core must not stop the partition
            log.error(
                "internal error on ticket event %s event_id=%s ticket_id=%s: %s; skipped",
                _where(where),
                sanitise(event.event_id),
                sanitise(event.ticket_id),
                type(exc).__name__,
                extra=record_fields(where, event.ticket_id, event.event_id),
            )
            raise _FoldFault from exc
        if result.changed and result.state is not None:
            entry.state, entry.extras, entry.dirty = result.state, result.extras, True
        elif snapshot is not None:
            entry.state = state_codec.from_obj(snapshot)
        if result.kind == "duplicate":
            self.counters.duplicates += 1
        elif result.kind == "rejected":
            log.info(
                "rejected ticket event %s event_id=%s ticket_id=%s",
                _where(where),
                event.event_id[:64],
                event.ticket_id[:64],
                extra=record_fields(where, event.ticket_id, event.event_id),
            )
            self.counters.rejected += 1
        else:
            self.counters.applied += 1
        return result.kind

    def _apply_sla(self, record: dict[str, Any]) -> str:
        """Store one SLA event (idempotent by event_id) and note it on its ticket.

        An `sla.retracted` deletes the event it names (and its escalation row) instead, and
        records the id so that the original, if delivered again, is not stored again.
        """
        if record["type"] == "sla.retracted":
            return self._retract(record)
        row = sla_event_row(record)
        cursor = self.db.execute(
            self._sla_insert, [*(row[c] for c in SLA_EVENT_COLUMNS), row["event_id"]]
        )
        if cursor.rowcount == 0:
            self.counters.duplicates += 1
            return "duplicate"
        held = attribution_rows(record)
        if held:
            self.db.executemany(self._attribution_insert, held)
        fact = sla_fact(record)
        if fact.type == "ticket.escalated":
            self.db.execute(
                "INSERT INTO escalations (event_id, ticket_id, level, target, severity, cycle, "
                "escalated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (row["event_id"], row["ticket_id"], row["level"], row["target"],
                 row["severity"], row["cycle"], row["at"]),
            )  # fmt: skip
        entry = self._entry(row["ticket_id"])
        entry.facts.append(fact)
        entry.dirty = entry.state is not None
        self.counters.applied += 1
        return "applied"

    def _retract(self, record: dict[str, Any]) -> str:
        ticket_id, target = record["ticket_id"], record["retracts"]
        cursor = self.db.execute(
            "INSERT INTO retracted_events (event_id, ticket_id) VALUES (?, ?) "
            "ON CONFLICT (event_id) DO NOTHING",
            (target, ticket_id),
        )
        if cursor.rowcount == 0:
            self.counters.duplicates += 1
            return "duplicate"
        self.db.execute("DELETE FROM sla_events WHERE event_id = ?", (target,))
        self.db.execute("DELETE FROM escalations WHERE event_id = ?", (target,))
        self.db.execute("DELETE FROM attributions WHERE event_id = ?", (target,))
        entry = self._entry(ticket_id)
        entry.facts = [
            _fact(f)
            for f in self.db.query(
                "SELECT type, metric, cycle, level, round FROM sla_events WHERE ticket_id = ?",
                (ticket_id,),
            )
        ]
        entry.dirty = entry.state is not None
        self.counters.applied += 1
        return "applied"

    def apply_batch(self, kind: Kind, records: Iterable[Record]) -> int:
        """Apply records of ONE (topic, partition) and store its next offset, in one transaction.

        Records at offsets below the stored one were applied before (a redelivery after a
        seek or a rebalance) and are skipped. A record whose fold raises (a fault in the core),
        or that the database cannot store (`Database.data_errors`), is counted invalid and
        skipped: the transaction is rolled back and the batch applied again without it, so
        nothing it half-changed is kept and nothing else is lost.
        """
        batch = list(records)
        if not batch:
            return 0
        faulty: set[int] = set()
        while True:
            counters = replace(self.counters, by_topic=dict(self.counters.by_topic))
            try:
                return self._apply_once(kind, batch, faulty)
            except _FoldFault as fault:
                self.counters = counters
                faulty.add(fault.offset)
            except self.db.data_errors as exc:
                # A value the database cannot store (e.g. NUL from a producer that predates
                # the contract's rule): find the record alone, skip it, keep the others.
                self.counters = counters
                if len(batch) > 1:
                    return sum(self.apply_batch(kind, [record]) for record in batch)
                log.warning(
                    "unstorable %s record %s: %s; skipped",
                    kind,
                    _where(batch[0]),
                    type(exc).__name__,
                    extra=_fields(batch[0]),
                )
                faulty.add(batch[0].offset)

    def _apply_once(self, kind: Kind, batch: list[Record], faulty: set[int]) -> int:
        first = batch[0]
        with self.db.tx():
            self._batch = {}
            try:
                row = self.db.query_one(
                    "SELECT next_offset FROM projector_offsets "
                    "WHERE topic = ? AND partition_id = ?",
                    (first.topic, first.partition),
                )
                stored = -1 if row is None else int(row[0])
                fresh = [r for r in batch if r.offset >= stored]
                self.counters.skipped += len(batch) - len(fresh)
                decoded: list[tuple[Record, Any]] = []
                for record in fresh:
                    if record.offset in faulty:
                        self.counters.invalid += 1
                        decoded.append((record, None))
                    elif kind == "ticket":
                        decoded.append((record, self._decode_ticket(record.value, record)))
                    else:
                        decoded.append((record, self._decode_sla(record.value, record)))
                self._prefetch(
                    item.ticket_id if kind == "ticket" else item["ticket_id"]
                    for _, item in decoded
                    if item is not None
                )
                for record, item in decoded:
                    if item is not None:
                        try:
                            if kind == "ticket":
                                self._apply_ticket(item, record)
                            else:
                                self._apply_sla(item)
                        except _FoldFault:
                            raise _FoldFault(record.offset) from None
                    self.counters.by_topic[record.topic] = (
                        self.counters.by_topic.get(record.topic, 0) + 1
                    )
                self._flush()
                if fresh:
                    last = fresh[-1]
                    self.db.execute(
                        self._offset_upsert, (last.topic, last.partition, last.offset + 1)
                    )
            finally:
                self._batch = {}
        return len(fresh)

    def offsets(self) -> dict[tuple[str, int], int]:
        """Stored next offsets per (topic, partition): where a restarted projector resumes."""
        rows = self.db.query("SELECT topic, partition_id, next_offset FROM projector_offsets")
        return {(r[0], int(r[1])): int(r[2]) for r in rows}


def _fact(row: tuple[Any, ...]) -> SlaFact:
    """An SlaFact from (type, metric, cycle, level, round) as stored in `sla_events`."""
    level, number = row[3], row[4]
    return SlaFact(
        row[0], row[1], int(row[2]),
        None if level is None else int(level), None if number is None else int(number),
    )  # fmt: skip


class _FoldFault(EscalatorError):
    """The core raised while folding the record at `offset`: skip it and apply the batch again."""

    def __init__(self, offset: int = -1) -> None:
        super().__init__(offset)
        self.offset = offset


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
