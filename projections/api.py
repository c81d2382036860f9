"""HTTP JSON API and the dashboard page, over the read models (aiohttp).

Handlers only parse parameters and call `projections.queries` in a worker thread with the
API's own database connection, so a slow query never blocks the projector's event loop work
and a projector batch never blocks a read (SQLite in WAL mode, PostgreSQL MVCC).
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from events.instants import DAY, SECOND, Micros, format_instant
from projections.db import Database
from projections.openapi import openapi_document
from projections.queries import (
    SLA_EVENT_TYPES,
    BadParameter,
    TicketQuery,
    compliance,
    get_ticket,
    list_escalations,
    list_sla_events,
    list_tickets,
    parse_bool,
    parse_choices,
    parse_int,
    parse_when,
)
from projections.store import Counters
from streams.sla.rules import Policy

Clock = Callable[[], Micros]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Pool:
    """A few connections, so one slow query (an ad-hoc compliance report over a month of a
    million tickets takes seconds) never holds up the wall screen's quick ones."""

    def __init__(self, target: str, size: int = 4) -> None:
        self._free: queue.SimpleQueue[Database] = queue.SimpleQueue()
        self._all = [Database(target) for _ in range(size)]
        for db in self._all:
            self._free.put(db)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call `fn(db, *args)` with a free connection (blocking: call from a worker thread)."""
        db = self._free.get()
        try:
            return fn(db, *args)
        finally:
            self._free.put(db)

    def close(self) -> None:
        for db in self._all:
            db.close()


DB_KEY: web.AppKey[Pool] = web.AppKey("db", Pool)
POLICY_KEY: web.AppKey[Policy] = web.AppKey("policy", Policy)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock", Callable[[], int])  # type: ignore[arg-type]
COUNTERS_KEY: web.AppKey[Counters] = web.AppKey("counters", Counters)
CACHE_KEY: web.AppKey[_ComplianceCache] = web.AppKey("compliance_cache")


def wall_clock() -> Micros:
    return time.time_ns() // 1000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, parameter: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    return _json(body, status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bad parameters become 400 JSON naming the parameter; no HTML error pages."""
    try:
        return await handler(request)
    except BadParameter as exc:
        return _error(400, exc.message, exc.parameter)
    except web.HTTPNotFound:
        return _error(404, "not found")


def _now(request: web.Request) -> Micros:
    clock = request.app[CLOCK_KEY]
    text = request.query.get("now")
    return clock() if text is None else parse_when("now", text, clock())


async def _run(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(request.app[DB_KEY].run, fn, *args)


async def tickets(request: web.Request) -> web.Response:
    q = TicketQuery.from_params(request.query)
    return _json(await _run(request, list_tickets, request.app[POLICY_KEY], q, _now(request)))


async def ticket(request: web.Request) -> web.Response:
    ticket_id = request.match_info["ticket_id"]
    found = await _run(request, get_ticket, request.app[POLICY_KEY], ticket_id, _now(request))
    if found is None:
        return _error(404, f"no ticket {ticket_id[:64]!r}", "ticket_id")
    return _json(found)


def _check_known(request: web.Request, known: set[str]) -> None:
    for key in request.query:
        if key not in known:
            raise BadParameter(key, "unknown parameter")


async def sla_events(request: web.Request) -> web.Response:
    _check_known(
        request, {"since", "until", "type", "ticket_id", "metric", "limit", "offset", "now"}
    )
    now = _now(request)
    q = request.query
    since = parse_when("since", q.get("since", "24h"), now)
    until = parse_when("until", q["until"], now) if "until" in q else now + 1
    types = parse_choices("type", q["type"], SLA_EVENT_TYPES) if "type" in q else None
    metric = q.get("metric")
    if metric is not None and metric not in ("first_response", "resolution", "escalation"):
        raise BadParameter("metric", "must be first_response, resolution or escalation")
    limit = parse_int("limit", q.get("limit", "100"), 1, 1000)
    offset = parse_int("offset", q.get("offset", "0"), 0, 10**9)
    return _json(
        await _run(
            request, list_sla_events, since, until, types, q.get("ticket_id"), metric, limit,
            offset,
        )
    )  # fmt: skip


async def escalations(request: web.Request) -> web.Response:
    _check_known(request, {"since", "open", "limit", "offset", "now"})
    now = _now(request)
    since = parse_when("since", request.query.get("since", "24h"), now)
    open_only = parse_bool("open", request.query.get("open", "false"))
    limit = parse_int("limit", request.query.get("limit", "100"), 1, 1000)
    offset = parse_int("offset", request.query.get("offset", "0"), 0, 10**9)
    return _json(await _run(request, list_escalations, since, now, open_only, limit, offset))


async def compliance_report(request: web.Request) -> web.Response:
    _check_known(request, {"from", "to", "group_by", "now"})
    now = _now(request)
    start = parse_when("from", request.query.get("from", "30d"), now)
    end = parse_when("to", request.query["to"], now) if "to" in request.query else now
    group_by = request.query.get("group_by", "severity")
    return _json(await _run(request, compliance, request.app[POLICY_KEY], start, end, group_by))


COMPLIANCE_TTL: Micros = 60 * SECOND
"""The wall screen's 30-day compliance is recomputed at most once a minute: it scans every
ticket of the period (seconds at a million tickets) and barely moves within a minute."""


class _ComplianceCache:
    def __init__(self) -> None:
        self.key: int | None = None
        self.groups: list[dict[str, Any]] = []
        self.refresh: asyncio.Task[None] | None = None


def dashboard_data(db: Database, policy: Policy, now: Micros) -> dict[str, Any]:
    """Everything the wall screen shows but the compliance chart, in one round trip."""
    open_q = TicketQuery(status=["open", "paused"], sort="due", limit=40)
    return {
        "now": format_instant(now),
        "open": list_tickets(db, policy, open_q, now)["items"],
        "escalations": list_escalations(db, now - DAY, now, limit=50)["items"],
    }


def _month_by_severity(db: Database, policy: Policy, now: Micros) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = compliance(db, policy, now - 30 * DAY, now, "severity")["groups"]
    return groups


async def _dashboard_compliance(request: web.Request, now: Micros) -> list[dict[str, Any]]:
    """The cached chart data; a stale cache is refreshed in the background, not in the poll."""
    cache = request.app[CACHE_KEY]
    bucket = now // COMPLIANCE_TTL
    policy = request.app[POLICY_KEY]
    if cache.key is None:
        cache.groups = await _run(request, _month_by_severity, policy, now)
        cache.key = bucket
    elif cache.key != bucket and (cache.refresh is None or cache.refresh.done()):

        async def refresh() -> None:
            groups = await _run(request, _month_by_severity, policy, now)
            cache.key, cache.groups = bucket, groups

        cache.refresh = asyncio.create_task(refresh())
    return cache.groups


async def dashboard_json(request: web.Request) -> web.Response:
    _check_known(request, {"now"})
    now = _now(request)
    data = await _run(request, dashboard_data, request.app[POLICY_KEY], now)
    data["compliance"] = await _dashboard_compliance(request, now)
    data["policy"] = request.app[POLICY_KEY].ref()
    return _json(data)


async def stats(request: web.Request) -> web.Response:
    counters = request.app.get(COUNTERS_KEY)

    def read(db: Database) -> dict[str, Any]:
        offsets = db.query("SELECT topic, partition_id, next_offset FROM projector_offsets")
        count = db.query_one("SELECT COUNT(*) FROM tickets")
        return {
            "tickets": count[0] if count else 0,
            "offsets": [{"topic": t, "partition": p, "next_offset": o} for t, p, o in offsets],
        }

    data = await _run(request, read)
    data["projector"] = counters.as_dict() if counters is not None else None
    return _json(data)


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def page(request: web.Request) -> web.Response:
    html = resources.files("projections").joinpath("dashboard.html").read_text("utf-8")
    return web.Response(text=html, content_type="text/html")


def make_app(
    db_target: str,
    policy: Policy,
    clock: Clock = wall_clock,
    counters: Counters | None = None,
) -> web.Application:
    """The API + dashboard app on its own connection to the read-model database."""
    app = web.Application(middlewares=[_errors])
    pool = Pool(db_target)
    app[DB_KEY] = pool
    app[POLICY_KEY] = policy
    app[CLOCK_KEY] = clock
    app[CACHE_KEY] = _ComplianceCache()
    if counters is not None:
        app[COUNTERS_KEY] = counters

    async def close(_: web.Application) -> None:
        cache = app[CACHE_KEY]
        if cache.refresh is not None:
            await asyncio.gather(cache.refresh, return_exceptions=True)
        pool.close()

    app.on_cleanup.append(close)
    app.router.add_get("/", page)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/api/tickets", tickets)
    app.router.add_get("/api/tickets/{ticket_id}", ticket)
    app.router.add_get("/api/escalations", escalations)
    app.router.add_get("/api/sla-events", sla_events)
    app.router.add_get("/api/compliance", compliance_report)
    app.router.add_get("/api/dashboard", dashboard_json)
    app.router.add_get("/api/stats", stats)
    return app
