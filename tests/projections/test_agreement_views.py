"""Several agreements in the read models (issue #23), on both databases: each SLA event's
agreement, the attributions table, `/api/attribution`, a ticket's timeline, compliance per
agreement and the wall screen's breach time per group. The issue's ticket (l1 1h30, then l2
until the resolve, 4h30) gives the values; the arithmetic is in tests/core/test_agreements.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from events.instants import parse_instant
from projections.api import make_app
from projections.db import Database
from projections.store import Store
from tests.core.helpers import payload
from tests.core.test_agreements import issue_policy
from tests.projections.helpers import SLA, TICKETS, api_client, as_records, lines, sla_records

NOW = parse_instant("2026-12-09T17:00:00Z")


def _history() -> list[dict[str, Any]]:
    return [
        payload("opened", "2026-12-07 09:00", "T1", severity=2, group="l1", event_id="a1"),
        payload("assigned", "2026-12-07 10:30", "T1", group="l2", assignee="bo", event_id="a2"),
        payload("resolved", "2026-12-07 15:00", "T1", event_id="a3"),
        # the same ticket with the move coming late (after the resolve): corrected
        payload("opened", "2026-12-07 09:00", "T2", severity=2, group="l1", event_id="b1"),
        payload("resolved", "2026-12-07 15:00", "T2", event_id="b3"),
        payload("assigned", "2026-12-07 10:30", "T2", group="l2", assignee="bo", event_id="b2"),
    ]


@pytest.fixture
async def client(db_target: str) -> AsyncIterator[httpx.AsyncClient]:
    policy = issue_policy()
    db = Database(db_target)
    events = _history()
    store = Store(db, policy)
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    store.apply_batch("sla", as_records(SLA, sla_records(events, policy, until=NOW)))
    db.close()
    async with api_client(make_app(db_target, policy, clock=lambda: NOW)) as c:
        yield c


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_tickets_timeline_names_agreements_and_who_held_it(
    client: httpx.AsyncClient,
) -> None:
    timeline = (await _get(client, "/api/tickets/T1"))["timeline"]
    sla = {(e["type"], e["agreement"]): e for e in timeline if "event_id" in e}
    assert sorted(sla) == [
        ("sla.breached", "l2"), ("sla.met", "acme"), ("sla.met", "l1"), ("sla.stopped", "l2"),
    ]  # fmt: skip
    assert {
        key: (e["at"], e["agreement_kind"], e.get("ownership_group")) for key, e in sla.items()
    } == {
        ("sla.met", "l1"): ("2026-12-07T15:30:00Z", "ola", "l1"),  # at the move
        ("sla.breached", "l2"): ("2026-12-07T19:30:00Z", "ola", "l2"),
        ("sla.met", "acme"): ("2026-12-07T20:00:00Z", "sla", None),  # at the resolve
        ("sla.stopped", "l2"): ("2026-12-07T20:00:00Z", "ola", "l2"),
    }
    assert sla[("sla.met", "acme")]["attribution"] == [
        {"group": "l1", "assignee": None, "seconds": 5400.0},
        {"group": "l2", "assignee": "bo", "seconds": 16200.0},
    ]
    assert sla[("sla.stopped", "l2")]["took_seconds"] == 16200.0
    assert sla[("sla.stopped", "l2")]["attribution"] == [
        {"group": "l2", "assignee": "bo", "seconds": 16200.0}
    ]
    # the late move's ticket ends with the same values: the retracted events' rows are gone
    late = [e for e in (await _get(client, "/api/tickets/T2"))["timeline"] if "event_id" in e]
    assert sorted((e["type"], e["agreement"], e.get("took_seconds")) for e in late) == [
        ("sla.breached", "l2", None),
        ("sla.met", "acme", 21600.0),
        ("sla.met", "l1", 5400.0),
        ("sla.stopped", "l2", 16200.0),
    ]
    page = await _get(client, "/api/sla-events?since=2026-12-07T00:00:00Z&ticket_id=T1")
    assert {(e["type"], e["agreement"]) for e in page["items"]} >= {("sla.stopped", "l2")}


async def test_attribution_sums_the_time_each_group_and_assignee_held(
    client: httpx.AsyncClient,
) -> None:
    base = "/api/attribution?from=2026-12-01T00:00:00Z"
    breached = await _get(client, base)  # l2's breaches of both tickets: 4h each
    assert breached["type"] == "sla.breached"
    assert breached["groups"] == [{"group": "l2", "seconds": 28800.0, "events": 2}]
    assert breached["assignees"] == [{"assignee": "bo", "seconds": 28800.0, "events": 2}]
    met = await _get(client, base + "&type=sla.met&agreement_kind=sla")
    assert met["groups"] == [
        {"group": "l2", "seconds": 32400.0, "events": 2},  # 16,200 s each
        {"group": "l1", "seconds": 10800.0, "events": 2},  # 5,400 s each
    ]
    only_l1 = await _get(client, base + "&type=sla.met&agreement=l1")
    assert only_l1["groups"] == [{"group": "l1", "seconds": 10800.0, "events": 2}]
    board = await _get(client, "/api/dashboard")
    assert board["breach_time_by_group"] == breached["groups"]


async def test_compliance_is_reported_per_agreement(client: httpx.AsyncClient) -> None:
    report = await _get(client, "/api/compliance?from=2026-12-01T00:00:00Z&group_by=policy")
    (group,) = report["groups"]
    # the customer's resolution: met twice; the OLAs' breaches do not count against it
    assert (group["resolution"]["met"], group["resolution"]["breached"]) == (2, 0)
    assert {name: (c["met"], c["breached"]) for name, c in group["agreements"].items()} == {
        "l1": (2, 0),
        "l2": (0, 2),
    }
    assert group["metrics"] == {}
