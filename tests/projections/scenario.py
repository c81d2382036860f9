"""A small, hand-made ticket history with known answers, for the API, CLI and dashboard tests."""

from __future__ import annotations

from typing import Any

from events.instants import MINUTE, Micros, format_instant, parse_instant
from projections.db import Database
from projections.store import Store
from streams.sla.rules import Policy
from tests.projections.helpers import SLA, TICKETS, as_records, lines, sla_records

NOW = parse_instant("2026-11-24T15:00:00Z")
"""Tuesday 10:00 in Toronto: inside business hours."""


def _at(minutes_before_now: int, now: Micros) -> str:
    return format_instant(now - minutes_before_now * MINUTE)


def scenario_events(now: Micros = NOW) -> list[dict[str, Any]]:
    """Tickets relative to `now` (which must fall in business hours):

    - A (sev 1, C-1, l2): opened 30 min ago, first response due in 30 min;
    - B (sev 2, C-2, l1): opened 20 min ago, first response due in 3h40;
    - C (sev 1, C-1, l2): opened 3h ago, never answered: first response breached, escalated
      to level 1 (1h after report);
    - D (sev 3, C-2, l1): opened, answered, resolved 2h ago: both metrics met;
    - E (sev 1, C-3, l1): opened 2h ago, escalated, then answered and resolved (escalation
      resolved since); closed.
    """

    def ev(ticket: str, n: int, kind: str, minutes: int, **fields: Any) -> dict[str, Any]:
        return {"event_id": f"{ticket}-{n}", "ticket_id": ticket, "type": kind,
                "occurred_at": _at(minutes, now), **fields}  # fmt: skip

    events = [
        ev("C", 1, "ticket.opened", 180, severity=1, customer_id="C-1", title="secret"),
        ev("C", 2, "ticket.assigned", 175, assignee="ann", group="l2"),
        ev("E", 1, "ticket.opened", 120, severity=1, customer_id="C-3"),
        ev("D", 1, "ticket.opened", 150, severity=3, customer_id="C-2"),
        ev("D", 2, "ticket.assigned", 149, assignee="bob", group="l1"),
        ev("D", 3, "ticket.responded", 140),
        ev("D", 4, "ticket.resolved", 120),
        ev("E", 2, "ticket.assigned", 110, assignee="cid", group="l1"),
        ev("E", 3, "ticket.responded", 80),
        ev("E", 4, "ticket.resolved", 40),
        ev("E", 5, "ticket.closed", 35),
        ev("A", 1, "ticket.opened", 30, severity=1, customer_id="C-1"),
        ev("A", 2, "ticket.assigned", 29, assignee="ann", group="l2"),
        ev("B", 1, "ticket.opened", 20, severity=2, customer_id="C-2"),
        ev("B", 2, "ticket.assigned", 19, assignee="bob", group="l1"),
    ]
    return sorted(events, key=lambda e: parse_instant(e["occurred_at"]))


def load_scenario(db: Database, policy: Policy, now: Micros = NOW) -> Store:
    """Project the scenario (ticket events and the SLA events due up to `now`) into `db`."""
    events = scenario_events(now)
    store = Store(db, policy)
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    store.apply_batch("sla", as_records(SLA, sla_records(events, policy, until=now)))
    return store
