"""The HTTP API and the `escalator query` CLI over a known scenario, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from deploy.cli import main as escalator
from events.instants import format_instant
from projections.api import make_app
from projections.db import Database
from projections.store import Store
from streams.sla.rules import Policy
from tests.projections.helpers import api_client
from tests.projections.scenario import NOW, load_scenario

NOW_TEXT = format_instant(NOW)


Client = httpx.AsyncClient


@pytest.fixture
async def client(db_target: str, policy: Policy) -> AsyncIterator[Client]:
    db = Database(db_target)
    load_scenario(db, policy)
    db.close()
    app = make_app(db_target, policy, clock=lambda: NOW)
    async with api_client(app) as test_client:
        yield test_client


async def get(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [t["ticket_id"] for t in page["items"]]


async def test_tickets_breaching_within_an_hour(client: Client) -> None:
    page = await get(client, "/api/tickets?breaching_within=1h")
    assert ids(page) == ["A"]
    a = page["items"][0]
    assert a["metrics"]["first_response"] == {
        "state": "on_track", "due_at": "2026-11-24T15:30:00Z", "remaining_seconds": 1800.0,
        "clock": "business", "calendar": "default",
    }  # fmt: skip
    assert (a["customer_id"], a["group"], a["assignee"], a["severity"]) == ("C-1", "l2", "ann", 1)
    assert ids(await get(client, "/api/tickets?breaching_within=4h")) == ["A", "B"]


async def test_ticket_filters_sorting_and_pages(client: Client) -> None:
    assert ids(await get(client, "/api/tickets?sort=ticket_id")) == ["A", "B", "C", "D", "E"]
    assert ids(await get(client, "/api/tickets?status=open,paused&sort=ticket_id")) == [
        "A", "B", "C",
    ]  # fmt: skip
    assert ids(await get(client, "/api/tickets?sla_state=breached")) == ["C"]
    assert ids(await get(client, "/api/tickets?severity=1&sort=-reported")) == ["A", "E", "C"]
    assert ids(await get(client, "/api/tickets?customer=C-2&sort=ticket_id")) == ["B", "D"]
    assert ids(await get(client, "/api/tickets?group=l2&sort=ticket_id")) == ["A", "C"]
    assert ids(await get(client, "/api/tickets?assignee=bob&sort=ticket_id")) == ["B", "D"]
    first = await get(client, "/api/tickets?sort=ticket_id&limit=2")
    assert (ids(first), first["next_offset"]) == (["A", "B"], 2)
    last = await get(client, "/api/tickets?sort=ticket_id&limit=2&offset=4")
    assert (ids(last), last["next_offset"]) == (["E"], None)
    # open tickets by time to breach: running deadlines first, the breached one last
    assert ids(await get(client, "/api/tickets?status=open&sort=due"))[:2] == ["A", "B"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("breaching_within=soon", "breaching_within"),
        ("sort=sideways", "sort"),
        ("status=lost", "status"),
        ("sla_state=meh", "sla_state"),
        ("severity=7", "severity"),
        ("colour=red", "colour"),
        ("now=yesterday", "now"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: Client, query: str, parameter: str
) -> None:
    body = await get(client, f"/api/tickets?{query}", status=400)
    assert body["parameter"] == parameter
    assert body["error"]


async def test_one_ticket_timeline(client: Client) -> None:
    c = await get(client, "/api/tickets/C")
    assert c["metrics"]["first_response"]["state"] == "breached"
    assert c["metrics"]["first_response"]["remaining_seconds"] < 0
    types = [e["type"] for e in c["timeline"]]
    assert types[0] == "ticket.reported"
    assert "sla.breached" in types and "ticket.escalated" in types
    assert [e["at"] for e in c["timeline"]] == sorted(e["at"] for e in c["timeline"])
    escalated = next(e for e in c["timeline"] if e["type"] == "ticket.escalated")
    assert (escalated["level"], escalated["to"]) == (1, "senior-technical-staff")
    d = await get(client, "/api/tickets/D")
    assert d["metrics"]["first_response"]["state"] == "met"
    assert d["metrics"]["resolution"]["state"] == "met"
    assert d["resolved_at"] == "2026-11-24T13:00:00Z"
    missing = await get(client, "/api/tickets/nope", status=404)
    assert missing["parameter"] == "ticket_id"


async def test_escalations_and_whether_resolved_since(client: Client) -> None:
    page = await get(client, "/api/escalations?since=24h")
    by_ticket = {e["ticket_id"]: e for e in page["items"]}
    assert set(by_ticket) == {"C", "E"}
    assert by_ticket["C"]["resolved_since"] is False
    assert by_ticket["E"]["resolved_since"] is True
    assert by_ticket["E"]["to"] == "senior-technical-staff"
    assert [e["ticket_id"] for e in (await get(client, "/api/escalations?open=true"))["items"]] == [
        "C"
    ]
    assert (await get(client, "/api/escalations?since=10m"))["items"] == []
    assert (await get(client, "/api/escalations?open=maybe", 400))["parameter"] == "open"


async def test_sla_events_by_type_ticket_and_time(client: Client) -> None:
    breaches = await get(client, "/api/sla-events?type=sla.breached&since=1d")
    assert [(e["ticket_id"], e["metric"]) for e in breaches["items"]] == [("C", "first_response")]
    c_events = await get(client, "/api/sla-events?ticket_id=C&since=1d")
    ats = [e["at"] for e in c_events["items"]]
    assert ats == sorted(ats, reverse=True) and len(ats) >= 2
    assert (await get(client, "/api/sla-events?since=1m"))["items"] == []
    page = await get(client, "/api/sla-events?since=1d&limit=1")
    assert len(page["items"]) == 1 and page["next_offset"] == 1
    assert (await get(client, "/api/sla-events?type=sla.oops", 400))["parameter"] == "type"
    assert (await get(client, "/api/sla-events?metric=x", 400))["parameter"] == "metric"


async def test_compliance_grouped(client: Client) -> None:
    report = await get(client, "/api/compliance?from=1d&group_by=severity")
    groups = {g["key"]: g for g in report["groups"]}
    assert groups[1]["tickets"] == 3
    assert groups[1]["first_response"]["met"] == 1  # E answered in time
    assert groups[1]["first_response"]["breached"] == 1  # C
    assert groups[1]["first_response"]["compliance"] == 0.5
    assert groups[3]["resolution"]["met"] == 1
    fr = groups[3]["first_response"]
    # D was answered at 07:40 Toronto, before opening: 10 min elapsed, 0 on the business clock
    assert fr["elapsed"]["median_seconds"] == 600.0 and fr["business"]["mean_seconds"] == 0.0
    by_customer = await get(client, "/api/compliance?from=1d&group_by=customer")
    assert [g["key"] for g in by_customer["groups"]] == ["C-1", "C-2", "C-3"]
    by_day = await get(client, "/api/compliance?from=2026-11-20T00:00:00Z&group_by=day")
    assert [(g["key"], g["tickets"]) for g in by_day["groups"]] == [("2026-11-24", 5)]
    assert (await get(client, "/api/compliance?group_by=planet", 400))["parameter"] == "group_by"
    assert (await get(client, "/api/compliance?from=later", 400))["parameter"] == "from"


async def test_openapi_dashboard_and_stats(client: Client) -> None:
    doc = await get(client, "/openapi.json")
    assert doc["openapi"].startswith("3.")
    assert {
        "/api/tickets",
        "/api/tickets/{ticket_id}",
        "/api/escalations",
        "/api/compliance",
    } <= set(doc["paths"])
    board = await get(client, "/api/dashboard")
    # breached first (it has no next running deadline), then by time to breach (#12 §3)
    assert [t["ticket_id"] for t in board["open"]] == ["C", "A", "B"]
    assert {e["ticket_id"] for e in board["escalations"]} == {"C", "E"}
    assert {g["key"] for g in board["compliance"]} == {1, 2, 3}
    html = await client.get("/")
    assert html.status_code == 200 and "compliance" in html.text
    stats = await get(client, "/api/stats")
    assert stats["tickets"] == 5


def test_cli_query(db_target: str, policy: Policy, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(db_target)
    load_scenario(db, policy)
    db.close()
    base = ["--db", db_target, "--now", NOW_TEXT]
    assert escalator(["query", "tickets", *base, "--breaching-within", "1h", "--json"]) == 0
    assert [t["ticket_id"] for t in orjson.loads(capsys.readouterr().out)["items"]] == ["A"]
    assert escalator(["query", "tickets", *base, "--status", "open"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["TICKET", "STATUS", "SEV"]
    assert "breached" in table and "C-1" in table
    assert escalator(["query", "ticket", "C", *base]) == 0
    assert "ticket.escalated" in capsys.readouterr().out
    assert escalator(["query", "escalations", *base, "--open", "--json"]) == 0
    assert [e["ticket_id"] for e in orjson.loads(capsys.readouterr().out)["items"]] == ["C"]
    assert escalator(["query", "compliance", *base, "--from", "1d"]) == 0
    assert "SEVERITY" in capsys.readouterr().out
    assert escalator(["query", "tickets", *base, "--breaching-within", "soon"]) == 2
    assert "--breaching-within" in capsys.readouterr().err
    assert escalator(["query", "ticket", "nope", *base]) == 1


async def test_dashboard_compliance_refreshes_in_the_background(
    db_target: str, policy: Policy
) -> None:
    """The chart data is computed once a minute at most, off the poll's critical path."""
    import asyncio

    from events.instants import MINUTE
    from tests.projections.helpers import SLA, TICKETS, as_records, lines, sla_records
    from tests.projections.scenario import scenario_events

    now = [NOW]
    app = make_app(db_target, policy, clock=lambda: now[0])
    async with api_client(app) as c:
        assert (await get(c, "/api/dashboard"))["compliance"] == []  # nothing projected yet
        db = Database(db_target)
        events = scenario_events()
        store = Store(db, policy)
        store.apply_batch("ticket", as_records(TICKETS, lines(events)))
        store.apply_batch("sla", as_records(SLA, sla_records(events, policy, until=NOW)))
        db.close()
        assert (await get(c, "/api/dashboard"))["compliance"] == []  # cached for the minute
        now[0] += 2 * MINUTE
        for _ in range(50):  # a stale poll starts a refresh; a later poll sees its result
            board = await get(c, "/api/dashboard")
            if board["compliance"]:
                break
            await asyncio.sleep(0.05)
        assert {g["key"] for g in board["compliance"]} == {1, 2, 3}


async def test_openapi_is_generated_valid_and_documents_every_route(
    db_target: str, policy: Policy
) -> None:
    """The generated OpenAPI validates (openapi-spec-validator), lists every /api route with
    each query parameter, and /docs serves the interactive page."""
    from fastapi.routing import APIRoute
    from openapi_spec_validator import validate

    app = make_app(db_target, policy)
    async with api_client(app) as c:
        doc = await get(c, "/openapi.json")
        validate(doc)
        routes = {
            r.path_format for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema
        }
        assert routes == set(doc["paths"])
        assert {"/api/tickets", "/health", "/ready", "/metrics"} <= routes
        for path, item in doc["paths"].items():
            for operation in item.values():
                assert operation["responses"]["200"], path
                for parameter in operation.get("parameters", []):
                    assert {"name", "in", "schema"} <= set(parameter), (path, parameter)
        names = {p["name"] for p in doc["paths"]["/api/tickets"]["get"]["parameters"]}
        assert {"status", "severity", "breaching_within", "sort", "limit", "now"} <= names
        compliance = {p["name"] for p in doc["paths"]["/api/compliance"]["get"]["parameters"]}
        assert {"from", "to", "group_by"} <= compliance
        docs = await c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()


# ------------------------------------------------------------------------------------------
# #10 §5: time parameters outside the supported range, non-ASCII digits: 400s naming the
# parameter, never 500s; the same inputs to `escalator query` give one clear line, exit 2.

OUT_OF_RANGE = [
    ("/api/sla-events?since=99999999999w", "since"),
    ("/api/tickets?breaching_within=999999999999w", "breaching_within"),
    ("/api/tickets?now=0001-01-01T00:00:00Z", "now"),
    ("/api/dashboard?now=0001-01-01T00:00:00Z", "now"),
    ("/api/tickets/A?now=0001-01-01T00:00:00Z", "now"),
    ("/api/escalations?now=0001-01-01T00:00:00Z", "now"),
    ("/api/escalations?since=99999999999w", "since"),
    ("/api/sla-events?until=9999-12-31T23:59:59Z", "until"),
    ("/api/compliance?from=99999999999w", "from"),
    ("/api/compliance?to=0001-01-01T00:00:00%2B01:00", "to"),
    ("/api/sla-events?since=1970-01-01T00:00:00%2B00:01", "since"),  # 1969 in UTC
    ("/api/sla-events?since=3000000d", "since"),  # before 1970 from the scenario's now
]
NON_ASCII_DIGITS = [
    ("/api/tickets?limit=\u0661\u0660", "limit"),  # Arabic-Indic 10
    ("/api/tickets?severity=\u0661", "severity"),
    ("/api/tickets?offset=\uff11", "offset"),  # fullwidth 1
    ("/api/tickets?breaching_within=\uff11h", "breaching_within"),
    ("/api/sla-events?since=\u0662\u0664h", "since"),
    ("/api/tickets?now=\u0662\u0660\u0662\u0666-11-24T15:00:00Z", "now"),
    ("/api/escalations?limit=1_0", "limit"),
    ("/api/escalations?limit=1.0", "limit"),
]


@pytest.mark.parametrize(("path", "parameter"), OUT_OF_RANGE + NON_ASCII_DIGITS)
async def test_out_of_range_and_non_ascii_parameters_are_400(
    client: Client, path: str, parameter: str
) -> None:
    body = await get(client, path, status=400)
    assert body["parameter"] == parameter, body
    assert body["error"] and len(body["error"]) < 200


async def test_edges_of_the_supported_range_are_answered(client: Client) -> None:
    """The range is events.instants' SUPPORTED_RANGE: 1970-01-01T00:00:00Z to
    8999-12-31T23:59:59.999999Z, both included."""
    assert (await get(client, "/api/sla-events?since=1970-01-01T00:00:00Z"))["items"]
    late_now = "now=8999-12-31T23:59:59.999999Z&since=1970-01-01T00:00:00Z"
    assert (await get(client, f"/api/sla-events?{late_now}"))["items"]
    late = await get(client, "/api/sla-events?until=9000-01-01T00:00:00Z", status=400)
    assert late["parameter"] == "until" and "range" in late["error"]
    lower = await get(client, "/api/sla-events?since=2026-11-24t15:00:00z")  # RFC 3339 5.6
    assert lower == await get(client, "/api/sla-events?since=2026-11-24T15:00:00Z")
    space = await get(client, "/api/sla-events?since=2026-11-24 15:00:00Z", status=400)
    assert space["parameter"] == "since"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["escalations", "--since", "99999999999w"], "--since"),
        (["tickets", "--breaching-within", "999999999999w"], "--breaching-within"),
        (["tickets", "--status", "open", "--now", "0001-01-01T00:00:00Z"], "--now"),
        (["ticket", "C", "--now", "0001-01-01T00:00:00Z"], "--now"),
        (["compliance", "--from", "99999999999w"], "--from"),
        (["escalations", "--limit", "\u0661\u0660"], "--limit"),
        (["tickets", "--severity", "\u0661"], "--severity"),
        (["tickets", "--colour", "red"], None),  # argparse's own error, also exit 2
    ],
)
def test_cli_bad_parameters_are_one_clear_line(
    db_target: str,
    policy: Policy,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    flag: str | None,
) -> None:
    db = Database(db_target)
    load_scenario(db, policy)
    db.close()
    with_now = [] if "--now" in argv else ["--now", NOW_TEXT]
    try:
        code = escalator(["query", *argv, "--db", db_target, *with_now])
    except SystemExit as exc:  # argparse exits for unknown flags
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    if flag is not None:
        assert err.startswith(f"error: {flag}: "), err
        assert len(err.strip().splitlines()) == 1


async def test_dashboard_tiles_breached_first_and_filters(client: Client) -> None:
    """The wall screen's numbers for the scenario at NOW (#12 §3)."""
    board = await get(client, "/api/dashboard")
    assert board["tiles"] == {
        "open": 3, "breached": 1, "at_risk_1h": 1, "escalated_24h": 2,
        "compliance_today": 0.8, "met_today": 4, "breached_today": 1,
    }  # fmt: skip
    assert [t["ticket_id"] for t in board["open"]] == ["C", "A", "B"]
    a = board["open"][1]
    assert (a["elapsed_fraction"], a["clock_stopped"]) == (0.5, None)  # 30 of 60 minutes
    assert board["open"][0]["elapsed_fraction"] > 1  # C: past its deadline
    escalation = next(e for e in board["escalations"] if e["ticket_id"] == "C")
    assert (escalation["severity"], escalation["customer_id"], escalation["group"]) == (
        1, "C-1", "l2",
    )  # fmt: skip
    assert [g["key"] for g in board["compliance_by_day"]] == ["2026-11-24"]
    l1 = await get(client, "/api/dashboard?group=l1")
    assert [t["ticket_id"] for t in l1["open"]] == ["B"]
    assert (l1["tiles"]["open"], l1["tiles"]["escalated_24h"]) == (1, 1)  # E is l1's
    assert [e["ticket_id"] for e in l1["escalations"]] == ["E"]
    c1 = await get(client, "/api/dashboard?customer=C-1")
    assert [t["ticket_id"] for t in c1["open"]] == ["C", "A"]
    assert c1["tiles"]["compliance_today"] == 0.0  # C's breach is C-1's only outcome today
    other = await get(client, "/api/dashboard?policy=another")
    assert (other["open"], other["tiles"]["open"], other["compliance"]) == ([], 0, [])
    assert (await get(client, "/api/dashboard?team=x", 400))["parameter"] == "team"


async def test_clock_stopped_outside_business_hours(client: Client) -> None:
    # Tuesday 21:00 in Toronto: B's first-response clock (business hours) is not running
    b = await get(client, "/api/tickets/B?now=2026-11-24T20:00:00Z")
    assert b["clock_stopped"] is None  # 15:00 Toronto: open
    b = await get(client, "/api/tickets/B?now=2026-11-25T02:00:00Z")
    assert b["clock_stopped"] == "outside_business_hours"
    closed = await get(client, "/api/tickets/D")
    assert (closed["clock_stopped"], closed["elapsed_fraction"]) == (None, None)
