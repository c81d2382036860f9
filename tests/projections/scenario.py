"""A small, hand-made ticket history with known answers, for the API, CLI and dashboard tests."""

from __future__ import annotations

from pathlib import Path
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


# ------------------------------------------------------------------------------------------
# Several policies and calendars (#8 §2): the vendor example's three contracts

VENDOR_POLICY = Path(__file__).resolve().parents[2] / "deploy/examples/vendor-policy.toml"
OPENED = parse_instant("2026-11-24T13:00:00Z")
"""Tuesday 08:00 in Toronto (EST, UTC-5): before the standard hours; 14:00 in Warsaw (CET,
UTC+1): inside the EMEA team's 08:00-16:00."""
AT = parse_instant("2026-11-24T13:30:00Z")
"""08:30 Toronto (standard calendar closed), 14:30 Warsaw (open)."""
LATER = parse_instant("2026-11-24T15:30:00Z")
"""10:30 Toronto (open), 16:30 Warsaw (closed)."""


def policies_events() -> list[dict[str, Any]]:
    """Severity-2 tickets opened at the same instant, one per vendor policy, and a premium
    severity-1 ticket:

    - P-1 (tier gold): `premium`, every metric on the 24x7 `always` calendar (Toronto);
    - P-2 (tier gold, severity 1): `premium`; first response due 13:30Z, escalated to the
      duty manager 1h after the report (14:00Z);
    - W-1 (group emea): `emea`, on `warsaw` (Mon-Fri 08:00-16:00 Europe/Warsaw); answered
      at 14:00Z, 1h after the report, inside its 4h first-response target;
    - S-1: `standard`, on `standard` (Mon-Fri 09:00-17:00 America/Toronto).
    """
    opened = format_instant(OPENED)
    return [
        {"event_id": "P-1-1", "ticket_id": "P-1", "type": "ticket.opened", "occurred_at": opened,
         "severity": 2, "customer_id": "C-9", "attributes": {"tier": "gold"}},
        {"event_id": "P-2-1", "ticket_id": "P-2", "type": "ticket.opened", "occurred_at": opened,
         "severity": 1, "customer_id": "C-9", "attributes": {"tier": "gold"}},
        {"event_id": "S-1-1", "ticket_id": "S-1", "type": "ticket.opened", "occurred_at": opened,
         "severity": 2, "customer_id": "C-8"},
        {"event_id": "W-1-1", "ticket_id": "W-1", "type": "ticket.opened", "occurred_at": opened,
         "severity": 2, "customer_id": "C-7", "group": "emea"},
        {"event_id": "W-1-2", "ticket_id": "W-1", "type": "ticket.responded",
         "occurred_at": "2026-11-24T14:00:00Z"},
    ]  # fmt: skip


def load_policies_scenario(db: Database, root: Policy, until: Micros = LATER) -> Store:
    """Project the three-policy tickets and the SLA events due up to `until` into `db`."""
    events = policies_events()
    store = Store(db, root)
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    store.apply_batch("sla", as_records(SLA, sla_records(events, root, until=until)))
    return store
