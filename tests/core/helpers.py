"""Small builders for SLA core tests: Toronto wall times and inbound events."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from events.codec import ticket_event_from_obj
from events.instants import Micros, format_instant, from_datetime
from events.outbound import sla_event_adapter
from events.records import TicketEvent
from events.sla_records import wire
from streams.sla.replay import Replayer
from streams.sla.rules import Policy

TORONTO = ZoneInfo("America/Toronto")
_ids = count(1)


def toronto(text: str) -> Micros:
    """An instant from a Toronto wall time, e.g. '2026-11-27 17:00'."""
    return from_datetime(datetime.fromisoformat(text).replace(tzinfo=TORONTO))


def utc(text: str) -> str:
    """The UTC RFC 3339 text of a Toronto wall time, as outbound events carry it."""
    return format_instant(toronto(text))


def event(kind: str, when: str, ticket: str = "T1", **fields: Any) -> TicketEvent:
    return ticket_event_from_obj(payload(kind, when, ticket, **fields))


def payload(kind: str, when: str, ticket: str = "T1", **fields: Any) -> dict[str, Any]:
    """An inbound event as JSON-ready data; a fresh event id unless one is given."""
    return {
        "event_id": fields.pop("event_id", f"ev-{next(_ids)}"),
        "ticket_id": ticket,
        "type": f"ticket.{kind}",
        "occurred_at": datetime.fromisoformat(when).replace(tzinfo=TORONTO).isoformat(),
        **fields,
    }


def line(kind: str, when: str, ticket: str = "T1", **fields: Any) -> bytes:
    return orjson.dumps(payload(kind, when, ticket, **fields))


def brief(records: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(type, metric, due_at, at) of each SLA event, the part most tests assert on."""
    return [(r["type"], r["metric"], r["due_at"], r["at"]) for r in records]


def replay(events: tuple[Any, ...], policy: Policy, until: str | None) -> list[dict[str, Any]]:
    """The SLA events `policy` gives for `events` (each accepted), then up to `until`
    (Toronto wall time), in the contract's form (`wire`), each checked against it."""
    replayer = Replayer(policy)
    out: list[dict[str, Any]] = []
    for ev in events:
        emitted, rejected = replayer.feed(ev)
        assert rejected is None, rejected
        out.extend(map(wire, emitted))
    if until is not None:
        out.extend(map(wire, replayer.advance(toronto(until))))
    for record in out:
        sla_event_adapter.validate_python(record)  # every output honours the contract
    return out
