"""Every metric a ticket's policy defines shows in the projections (#8 §3), on both databases:
next_response rounds and periodic_update periods with their due time and remaining time on
their calendar, in the next deadline, `breaching_within` and compliance; SLA events keep their
`round`, `repeat` and `before_seconds`. The arithmetic of each expected value is beside it.

The vendor example's `standard` policy, severity 1, on `standard` (Mon-Fri 09:00-17:00
America/Toronto, EST = UTC-5 in November, so 1bd = 8h): first_response 4h, resolution 2bd
(warn_before 4h), next_response 1bd, periodic_update 1bd, escalation after 1bd (business)
to team-lead repeating every 4h at most twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from events.instants import Micros, parse_instant
from projections.api import make_app
from projections.db import Database
from projections.store import Store
from streams.sla.policy import load_policy
from streams.sla.rules import Policy
from tests.projections.helpers import SLA, TICKETS, api_client, as_records, lines, sla_records
from tests.projections.scenario import VENDOR_POLICY

NOW = parse_instant("2026-11-30T23:00:00Z")
"""Monday 18:00 in Toronto: closed (17:00), so business and wall time differ."""
LATE = parse_instant("2026-12-01T21:00:00Z")
"""Tuesday 16:00 in Toronto: past the round-2 breaches and the first repeat."""


def _history() -> list[dict[str, Any]]:
    """N-1 (standard, severity 1), Monday 30 Nov 2026 in Toronto:
    09:00 opened; 10:00 answered (first response met; update period 1 starts); 11:00 the
    customer replies (next-response round 1 starts); 12:00 answered (round 1 met after 1h,
    update period 1 met after 2h, period 2 starts); 13:00 the customer replies (round 2)."""

    def ev(n: int, kind: str, at: str, **fields: Any) -> dict[str, Any]:
        return {"event_id": f"N-1-{n}", "ticket_id": "N-1", "type": kind,
                "occurred_at": at, **fields}  # fmt: skip

    return [
        ev(1, "ticket.opened", "2026-11-30T14:00:00Z", severity=1, customer_id="C-5"),
        ev(2, "ticket.responded", "2026-11-30T15:00:00Z"),
        ev(3, "ticket.customer_replied", "2026-11-30T16:00:00Z"),
        ev(4, "ticket.responded", "2026-11-30T17:00:00Z"),
        ev(5, "ticket.customer_replied", "2026-11-30T18:00:00Z"),
    ]


@pytest.fixture(scope="module")
def vendor() -> Policy:
    return load_policy(VENDOR_POLICY)


def _load(db_target: str, root: Policy, until: Micros) -> None:
    db = Database(db_target)
    store = Store(db, root)
    events = _history()
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    store.apply_batch("sla", as_records(SLA, sla_records(events, root, until=until)))
    db.close()


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def client(db_target: str, vendor: Policy) -> AsyncIterator[httpx.AsyncClient]:
    _load(db_target, vendor, NOW)
    async with api_client(make_app(db_target, vendor, clock=lambda: NOW)) as c:
        yield c


async def test_ticket_view_lists_every_metric_with_its_round(client: httpx.AsyncClient) -> None:
    ticket = await _get(client, "/api/tickets/N-1")
    metrics = ticket["metrics"]
    assert list(metrics) == ["first_response", "resolution", "next_response", "periodic_update"]
    assert metrics["first_response"]["state"] == "met"
    assert "round" not in metrics["first_response"]
    # resolution 2bd = 16h from Mon 09:00: Mon 09-17 (8h) + Tue 09-17 (8h): due Tue 17:00
    # Toronto = 22:00Z; at Mon 18:00 (closed) Mon's 8h are used: 8h = 28800 s left
    assert metrics["resolution"]["due_at"] == "2026-12-01T22:00:00Z"
    assert metrics["resolution"]["remaining_seconds"] == 28800.0
    # next_response round 2 from Mon 13:00, 8h: Mon 13-17 (4h) + Tue 09-13 (4h): due Tue
    # 13:00 Toronto = 18:00Z; at Mon 18:00, Mon 13-17 used: 4h = 14400 s left (wall time
    # to the deadline: 19h)
    assert metrics["next_response"] == {
        "state": "on_track", "due_at": "2026-12-01T18:00:00Z", "remaining_seconds": 14400.0,
        "clock": "business", "calendar": "standard", "round": 2,
    }  # fmt: skip
    # periodic_update period 2 from Mon 12:00, 8h: Mon 12-17 (5h) + Tue 09-12 (3h): due Tue
    # 12:00 Toronto = 17:00Z; at Mon 18:00, Mon 12-17 used: 3h = 10800 s left
    assert metrics["periodic_update"] == {
        "state": "on_track", "due_at": "2026-12-01T17:00:00Z", "remaining_seconds": 10800.0,
        "clock": "business", "calendar": "standard", "round": 2,
    }  # fmt: skip
    # the next deadline is the update's (17:00Z), before the reply's (18:00Z) and the
    # resolution's (22:00Z); 1 - 10800/28800 = 0.625 of its 8h used; the calendar is closed
    assert ticket["next_due_at"] == "2026-12-01T17:00:00Z"
    assert ticket["elapsed_fraction"] == 0.625
    assert ticket["clock_stopped"] == "outside_business_hours"
    assert ticket["sla_state"] == "on_track"


async def test_breaching_within_and_due_order_count_every_metric(
    client: httpx.AsyncClient,
) -> None:
    # (a wall-clock window) now Mon 23:00Z + 18h = Tue 17:00Z: the update due 17:00Z falls
    # inside (resolution's 22:00Z and the reply's 18:00Z do not)
    page = await _get(client, "/api/tickets?breaching_within=18h")
    assert [t["ticket_id"] for t in page["items"]] == ["N-1"]
    # + 17h = 16:00Z: nothing due yet
    page = await _get(client, "/api/tickets?breaching_within=17h")
    assert page["items"] == []


async def test_rows_from_before_the_metric_list_still_read(db_target: str, vendor: Policy) -> None:
    """A row written before migration 6 (no `metrics_json`) shows its first response and
    resolution from their columns, as before."""
    _load(db_target, vendor, NOW)
    db = Database(db_target)
    with db.tx():
        db.execute("UPDATE tickets SET metrics_json = NULL")
    db.close()
    async with api_client(make_app(db_target, vendor, clock=lambda: NOW)) as c:
        ticket = await _get(c, "/api/tickets/N-1")
    assert list(ticket["metrics"]) == ["first_response", "resolution"]
    assert ticket["metrics"]["resolution"]["remaining_seconds"] == 28800.0  # as above


async def test_sla_events_keep_round_repeat_and_lead_time(db_target: str, vendor: Policy) -> None:
    _load(db_target, vendor, LATE)
    async with api_client(make_app(db_target, vendor, clock=lambda: LATE)) as c:
        page = await _get(c, "/api/sla-events?ticket_id=N-1&since=2026-11-30T00:00:00Z")
        timeline = (await _get(c, "/api/tickets/N-1"))["timeline"]
    seen = sorted(
        (e["at"], e["type"], e["metric"], e.get("round"), e.get("repeat"), e.get("before_seconds"))
        for e in page["items"]
    )
    assert seen == [
        # Mon 10:00 Toronto: first response met after 1h (no round)
        ("2026-11-30T15:00:00Z", "sla.met", "first_response", None, None, None),
        # Mon 12:00: reply round 1 (from 11:00) and update period 1 (from 10:00) met
        ("2026-11-30T17:00:00Z", "sla.met", "next_response", 1, None, None),
        ("2026-11-30T17:00:00Z", "sla.met", "periodic_update", 1, None, None),
        # Mon 17:00 = 22:00Z: 1bd after the report, level 1 (not a repeat)
        ("2026-11-30T22:00:00Z", "ticket.escalated", "escalation", None, None, None),
        # Tue 12:00 Toronto = 17:00Z: update period 2 breached (see the ticket view test)
        ("2026-12-01T17:00:00Z", "sla.breached", "periodic_update", 2, None, None),
        # Tue 13:00 = 18:00Z: reply round 2 breached; repeat 1 of level 1 at 1bd + 4h = 12
        # business hours from Mon 09:00 (Mon 8h + Tue 09-13); resolution's warning 4h before
        # its Tue 17:00 deadline (4h = 14400 s)
        ("2026-12-01T18:00:00Z", "sla.breached", "next_response", 2, None, None),
        ("2026-12-01T18:00:00Z", "sla.warning", "resolution", None, None, 14400.0),
        ("2026-12-01T18:00:00Z", "ticket.escalated", "escalation", None, 1, None),
    ]
    rounds = [(e["metric"], e.get("round")) for e in timeline if e["type"] == "sla.breached"]
    assert rounds == [("periodic_update", 2), ("next_response", 2)]
    repeats = [e.get("repeat") for e in timeline if e["type"] == "ticket.escalated"]
    assert repeats == [None, 1]


async def test_compliance_counts_rounds_by_metric(db_target: str, vendor: Policy) -> None:
    _load(db_target, vendor, LATE)
    async with api_client(make_app(db_target, vendor, clock=lambda: LATE)) as c:
        report = await _get(
            c, "/api/compliance?from=2026-11-30T00:00:00Z&to=2026-12-02T00:00:00Z&group_by=policy"
        )
    (group,) = report["groups"]
    assert (group["key"], group["tickets"]) == ("standard", 1)
    assert (group["first_response"]["met"], group["first_response"]["breached"]) == (1, 0)
    metrics = group["metrics"]
    assert sorted(metrics) == ["next_response", "periodic_update"]
    # each: round 1 met, round 2 breached: 1 / (1 + 1) = 0.5
    for name, took in (("next_response", 3600.0), ("periodic_update", 7200.0)):
        m = metrics[name]
        assert (m["met"], m["breached"], m["compliance"]) == (1, 1, 0.5)
        # round 1 took 11:00-12:00 (1h) / period 1 10:00-12:00 (2h), business clock
        assert m["business"] == {"mean_seconds": took, "median_seconds": took}
        assert m["elapsed"] == {"mean_seconds": None, "median_seconds": None}
