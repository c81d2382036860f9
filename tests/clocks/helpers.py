"""Builders for issue 24's tests: events at UTC instants, a replay up to an instant."""

from __future__ import annotations

from itertools import count
from typing import Any

from events.codec import ticket_event_from_obj
from events.instants import parse_rfc3339
from events.outbound import sla_event_adapter
from events.records import TicketEvent
from events.sla_records import wire
from streams.sla.replay import Replayer
from streams.sla.rules import Policy

_ids = count(1)


def ev(kind: str, when: str, **fields: Any) -> TicketEvent:
    """An inbound event at a UTC instant ('2026-12-07T14:00:00Z'); `ticket` defaults to T1."""
    return ticket_event_from_obj(body(kind, when, **fields))


def body(kind: str, when: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": fields.pop("event_id", f"e{next(_ids)}"),
        "ticket_id": fields.pop("ticket", "T1"),
        "type": f"ticket.{kind}",
        "occurred_at": when,
        **fields,
    }


def run(policy: Policy, *events: TicketEvent, until: str) -> list[dict[str, Any]]:
    """The SLA events of `events` (each accepted) and of the timers due up to `until`, each
    checked against the outbound contract (as it goes out: `wire`)."""
    replayer = Replayer(policy)
    out: list[dict[str, Any]] = []
    for item in events:
        emitted, rejected = replayer.feed(item)
        assert rejected is None, rejected
        out.extend(wire(record) for record in emitted)
    out.extend(wire(record) for record in replayer.advance(parse_rfc3339(until)))
    for record in out:
        sla_event_adapter.validate_python(record)
    return out


def brief(out: list[dict[str, Any]], metric: str) -> list[tuple[str, str, str]]:
    """(type, due_at, at) of the metric's events."""
    return [(r["type"], r["due_at"], r["at"]) for r in out if r["metric"] == metric]
