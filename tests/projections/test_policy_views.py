"""Projections of tickets under several policies and calendars (#8 §2), on both databases.

Every time shown for a ticket counts on that ticket's own policy and on the calendar that times
each metric (the row's `policy_name` and per-metric calendar), never on the policy file's
default calendar. The arithmetic of each expected value is written beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from deploy.cli import main as escalator
from events.instants import format_instant, parse_instant
from projections.api import make_app
from projections.db import Database
from projections.queries import compliance, get_ticket
from projections.store import Store
from streams.sla.policy import load_policy
from streams.sla.rules import Policy
from tests.projections.helpers import SLA, TICKETS, api_client, as_records, lines, sla_records
from tests.projections.scenario import AT, LATER, VENDOR_POLICY, load_policies_scenario


@pytest.fixture(scope="module")
def vendor() -> Policy:
    return load_policy(VENDOR_POLICY)


@pytest.fixture
async def client(db_target: str, vendor: Policy) -> AsyncIterator[httpx.AsyncClient]:
    db = Database(db_target)
    load_policies_scenario(db, vendor)
    db.close()
    async with api_client(make_app(db_target, vendor, clock=lambda: LATER)) as c:
        yield c


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def _tickets(client: httpx.AsyncClient, query: str = "") -> dict[str, dict[str, Any]]:
    page = await _get(client, "/api/tickets?limit=10" + query)
    return {t["ticket_id"]: t for t in page["items"]}


def _left(ticket: dict[str, Any], metric: str) -> tuple[float | None, str | None]:
    m = ticket["metrics"][metric]
    return m["remaining_seconds"], m["calendar"]


async def test_remaining_time_counts_on_each_tickets_own_calendar(
    client: httpx.AsyncClient,
) -> None:
    """Same wall instant, three policies, three remaining times."""
    at = await _tickets(client, "&now=" + format_instant(AT))
    # 13:30Z. P-1 (premium, 24x7 `always`): first response 1h from 13:00Z, due 14:00Z:
    # 30 min left = 1800 s (the file's default Toronto 09:00-17:00 calendar would count
    # 08:30-09:00 Toronto as closed: 0 s). Used: 1 - 1800/3600 = 0.5.
    assert (at["P-1"]["policy"], at["P-1"]["calendar"]) == ("premium", "always")
    assert _left(at["P-1"], "first_response") == (1800.0, "always")
    assert (at["P-1"]["elapsed_fraction"], at["P-1"]["clock_stopped"]) == (0.5, None)
    # P-1 resolution 8h on 24x7: due 21:00Z, 7h30 = 27000 s left
    assert _left(at["P-1"], "resolution") == (27000.0, "always")
    # W-1 (emea, Warsaw Mon-Fri 08:00-16:00, CET): answered at 14:00Z (met); resolution 2bd =
    # 16 business hours from Tue 14:00 Warsaw: Tue 14:00-16:00 (2h), Wed 08-16 (8h), Thu
    # 08:00-14:00 (6h): due Thu 26 Nov 14:00 Warsaw = 13:00Z. At 14:30 Warsaw 30 min are used:
    # 15h30 = 55800 s left (on Toronto hours it would be Tue 8h + Wed 8h = 57600 s).
    assert (at["W-1"]["policy"], at["W-1"]["calendar"]) == ("emea", "warsaw")
    assert at["W-1"]["metrics"]["first_response"]["state"] == "met"
    assert _left(at["W-1"], "resolution") == (55800.0, "warsaw")
    assert at["W-1"]["clock_stopped"] is None  # 14:30 in Warsaw: open
    # S-1 (standard, Toronto Mon-Fri 09:00-17:00, EST): first response 8h counts from 09:00
    # Toronto, due 17:00 Toronto = 22:00Z; at 08:30 Toronto nothing is used: 28800 s left,
    # and the clock is stopped (before opening).
    assert (at["S-1"]["policy"], at["S-1"]["calendar"]) == ("standard", "standard")
    assert _left(at["S-1"], "first_response") == (28800.0, "standard")
    assert at["S-1"]["clock_stopped"] == "outside_business_hours"

    later = await _tickets(client)  # 15:30Z: 10:30 Toronto (open), 16:30 Warsaw (closed)
    # P-1: due 14:00Z, breached; 1h30 past on 24x7 = -5400 s; used 1 + 5400/3600 = 2.5
    assert later["P-1"]["metrics"]["first_response"]["state"] == "breached"
    assert _left(later["P-1"], "first_response") == (-5400.0, "always")
    assert (later["P-1"]["elapsed_fraction"], later["P-1"]["clock_stopped"]) == (2.5, None)
    # W-1: Tue 14:00-16:00 Warsaw used (2h of 16h): 14h = 50400 s left, 1 - 14/16 = 0.125,
    # and its clock is stopped at 16:30 Warsaw although Toronto is open
    assert _left(later["W-1"], "resolution") == (50400.0, "warsaw")
    assert later["W-1"]["elapsed_fraction"] == 0.125
    assert later["W-1"]["clock_stopped"] == "outside_business_hours"
    # S-1: 09:00-10:30 Toronto used: 6h30 = 23400 s left, 1 - 23400/28800 = 0.1875
    assert _left(later["S-1"], "first_response") == (23400.0, "standard")
    assert (later["S-1"]["elapsed_fraction"], later["S-1"]["clock_stopped"]) == (0.1875, None)

    one = await _get(client, "/api/tickets/W-1")
    assert (one["policy"], one["policy_version"], one["calendar"]) == ("emea", "2027-01", "warsaw")
    assert one["metrics"] == later["W-1"]["metrics"]


async def test_sla_events_keep_the_calendar_that_timed_them(client: httpx.AsyncClient) -> None:
    """The outbound events name the policy, its version and calendar: the sla-events view and
    a ticket's timeline keep the calendar."""
    page = await _get(client, "/api/sla-events?type=sla.breached&since=2026-11-24T00:00:00Z")
    premium = {"name": "premium", "version": "2027-01", "calendar": "always"}
    assert [(e["ticket_id"], e["metric"], e["policy"]) for e in page["items"]] == [
        ("P-1", "first_response", premium), ("P-2", "first_response", premium),
    ]  # fmt: skip
    timeline = (await _get(client, "/api/tickets/W-1"))["timeline"]
    met = [(e["type"], e["metric"], e["calendar"]) for e in timeline if e["type"] == "sla.met"]
    assert met == [("sla.met", "first_response", "warsaw")]
    timeline = (await _get(client, "/api/tickets/P-2"))["timeline"]
    escalated = [(e["at"], e["calendar"]) for e in timeline if e["type"] == "ticket.escalated"]
    # escalations count on the elapsed clock unless they say otherwise: 1h after 13:00Z
    assert escalated == [("2026-11-24T14:00:00Z", "elapsed")]


async def test_filters_and_compliance_by_each_tickets_policy(client: httpx.AsyncClient) -> None:
    """The policy filter is on each ticket's own policy, in every view; compliance groups by
    it. At 15:30Z the first responses of P-1 and P-2 have breached (premium), W-1's was met
    (emea), and P-2 was escalated (premium)."""
    assert list(await _tickets(client, "&policy=emea")) == ["W-1"]
    report = await _get(client, "/api/compliance?group_by=policy&from=2026-11-24T00:00:00Z")
    outcomes = {g["key"]: (g["tickets"], g["first_response"]["met"],
                           g["first_response"]["breached"]) for g in report["groups"]}  # fmt: skip
    assert outcomes == {"emea": (1, 1, 0), "premium": (2, 0, 2), "standard": (1, 0, 0)}
    emea = await _get(client, "/api/compliance?group_by=day&policy=emea&from=2026-11-24T00:00:00Z")
    assert emea["timezone"] == "Europe/Warsaw"  # the filtered team's days
    assert [(g["key"], g["tickets"]) for g in emea["groups"]] == [("2026-11-24", 1)]

    board = await _get(client, "/api/dashboard")
    assert [t["ticket_id"] for t in board["open"]] == ["P-2", "P-1", "S-1", "W-1"]
    assert [t["policy"] for t in board["open"]] == ["premium", "premium", "standard", "emea"]
    assert [g["key"] for g in board["compliance_by_policy"]] == ["emea", "premium", "standard"]
    assert (board["tiles"]["open"], board["tiles"]["breached"]) == (4, 2)
    assert [(e["ticket_id"], e["policy"]) for e in board["escalations"]] == [("P-2", "premium")]
    emea_board = await _get(client, "/api/dashboard?policy=emea")
    assert [t["ticket_id"] for t in emea_board["open"]] == ["W-1"]
    assert emea_board["tiles"] == {
        "open": 1, "breached": 0, "at_risk_1h": 0, "escalated_24h": 0,
        "compliance_today": 1.0, "met_today": 1, "breached_today": 0,
    }  # fmt: skip
    assert [g["key"] for g in emea_board["compliance"]] == [2]
    assert [g["key"] for g in emea_board["compliance_by_policy"]] == ["emea"]
    assert (emea_board["policy"]["name"], emea_board["escalations"]) == ("emea", [])
    premium = await _get(client, "/api/dashboard?policy=premium")
    assert [t["ticket_id"] for t in premium["open"]] == ["P-2", "P-1"]
    tiles = premium["tiles"]
    assert (tiles["breached"], tiles["escalated_24h"], tiles["compliance_today"]) == (2, 1, 0.0)
    assert [e["ticket_id"] for e in premium["escalations"]] == ["P-2"]
    nobody = await _get(client, "/api/dashboard?policy=no-such-policy")
    assert (nobody["open"], nobody["tiles"]["open"], nobody["compliance_by_policy"]) == (
        [], 0, [],
    )  # fmt: skip


def test_cli_shows_and_filters_by_policy(
    db_target: str, vendor: Policy, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database(db_target)
    load_policies_scenario(db, vendor)
    db.close()
    base = ["--db", db_target, "--policy", str(VENDOR_POLICY), "--now", format_instant(LATER)]
    assert escalator(["query", "tickets", *base, "--policy-name", "emea", "--json"]) == 0
    assert [t["ticket_id"] for t in orjson.loads(capsys.readouterr().out)["items"]] == ["W-1"]
    assert escalator(["query", "compliance", *base, "--group-by", "policy", "--json",
                      "--from", "2026-11-24T00:00:00Z"]) == 0  # fmt: skip
    groups = orjson.loads(capsys.readouterr().out)["groups"]
    assert {g["key"]: g["first_response"]["breached"] for g in groups} == {
        "emea": 0, "premium": 2, "standard": 0,
    }  # fmt: skip
    assert escalator(["query", "ticket", "P-1", *base]) == 0
    head = capsys.readouterr().out.splitlines()
    column = head[0].index("POLICY")
    assert head[0][column:].split()[:2] == ["POLICY", "CALENDAR"]
    assert head[2][column:].split()[:2] == ["premium", "always"]


SPLIT = """
name = "split"
version = "t1"
calendar = "office"

[calendars.office]
timezone = "Europe/Warsaw"
[calendars.office.hours]
mon = ["08:00-16:00"]
tue = ["08:00-16:00"]
wed = ["08:00-16:00"]
thu = ["08:00-16:00"]
fri = ["08:00-16:00"]

[calendars.always]
timezone = "Europe/Warsaw"
hours = "24x7"

[severity.1]
first_response = { target = "2h" }
resolution = { target = "4h", calendar = "always" }
"""


def test_a_metric_counts_on_the_calendar_it_names(db: Database, tmp_path: Path) -> None:
    """One policy on office hours whose resolution names the 24x7 calendar: remaining time and
    business durations of each metric count on its own calendar."""
    path = tmp_path / "split.toml"
    path.write_text(SPLIT)
    split = load_policy(path)
    opened = "2026-11-24T14:00:00Z"  # Tuesday 15:00 in Warsaw (CET)
    events = [
        {"event_id": "X-1", "ticket_id": "X-1", "type": "ticket.opened", "occurred_at": opened,
         "severity": 1},
        {"event_id": "Y-1", "ticket_id": "Y-1", "type": "ticket.opened", "occurred_at": opened,
         "severity": 1},
        {"event_id": "Y-2", "ticket_id": "Y-1", "type": "ticket.responded",
         "occurred_at": "2026-11-24T14:15:00Z"},
        {"event_id": "Y-3", "ticket_id": "Y-1", "type": "ticket.resolved",
         "occurred_at": "2026-11-24T17:00:00Z"},
    ]  # fmt: skip
    store = Store(db, split)
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    store.apply_batch("sla", as_records(SLA, sla_records(events, split)))
    now = parse_instant("2026-11-24T14:30:00Z")  # 15:30 Warsaw
    x = get_ticket(db, split, "X-1", now)
    assert x is not None and (x["policy"], x["calendar"]) == ("split", "office")
    # first response 2h on office hours: 15:00-16:00 Tue, 08:00-09:00 Wed; at 15:30 there are
    # 30 min left today and 1h tomorrow: 5400 s; used 1 - 5400/7200 = 0.25
    assert _left(x, "first_response") == (5400.0, "office")
    assert x["elapsed_fraction"] == 0.25
    # resolution 4h on 24x7: due 18:00Z, 3h30 = 12600 s left (on office hours: 30 min, 1800 s)
    assert _left(x, "resolution") == (12600.0, "always")
    # Y-1: resolved 3h after the report on the 24x7 calendar (office hours: only 15:00-16:00,
    # 3600 s), answered 15 min after it on office hours (900 s)
    report = compliance(db, split, parse_instant("2026-11-24T00:00:00Z"), now + 10**10, "none")
    (group,) = report["groups"]
    assert group["resolution"]["business"]["mean_seconds"] == 10800.0
    assert group["first_response"]["business"]["mean_seconds"] == 900.0
    assert group["resolution"]["met"] == 1


async def test_rows_from_before_the_calendar_columns_use_their_policys_calendar(
    db_target: str, vendor: Policy
) -> None:
    """A row written before migration 4 (no per-metric calendar) counts on its own policy's
    calendar, not on the file's default: W-1 still has 50400 s left at 15:30Z (see above)."""
    db = Database(db_target)
    load_policies_scenario(db, vendor)
    with db.tx():
        db.execute("UPDATE tickets SET fr_calendar = NULL, res_calendar = NULL")
    w = get_ticket(db, vendor, "W-1", LATER)
    db.close()
    assert w is not None and _left(w, "resolution") == (50400.0, "warsaw")


def test_a_ticket_moved_to_another_policy_shows_the_new_one(db: Database, vendor: Policy) -> None:
    """`ticket.updated` routes S-2 to the EMEA team: its row names the group and the policy it
    moved to, and its times count on the Warsaw calendar from the original report time."""
    events = [
        {"event_id": "S-2-1", "ticket_id": "S-2", "type": "ticket.opened",
         "occurred_at": "2026-11-24T13:00:00Z", "severity": 2, "customer_id": "C-8"},
        {"event_id": "S-2-2", "ticket_id": "S-2", "type": "ticket.updated",
         "occurred_at": "2026-11-24T13:30:00Z", "group": "emea"},
    ]  # fmt: skip
    store = Store(db, vendor)
    records = as_records(TICKETS, lines(events))
    store.apply_batch("ticket", records[:1])
    before = get_ticket(db, vendor, "S-2", LATER)
    assert before is not None and (before["group"], before["policy"]) == (None, "standard")
    store.apply_batch("ticket", records[1:])
    store.apply_batch("sla", as_records(SLA, sla_records(events, vendor, until=LATER)))
    s2 = get_ticket(db, vendor, "S-2", LATER)
    assert s2 is not None
    assert (s2["group"], s2["policy"], s2["calendar"]) == ("emea", "emea", "warsaw")
    # first response 4h on Warsaw hours from the report (14:00 Warsaw): 14:00-16:00 Tue, then
    # 08:00-10:00 Wed; at 16:30 Warsaw 2h are left (7200 s) and the clock is stopped
    assert _left(s2, "first_response") == (7200.0, "warsaw")
    assert s2["metrics"]["first_response"]["due_at"] == "2026-11-25T09:00:00Z"
    assert s2["clock_stopped"] == "outside_business_hours"
