"""HTTP JSON API, health, metrics and the dashboard page over the read models (FastAPI).

Parameters are the pydantic models of `projections.queries` (FastAPI reads them from the query
string, rejects unknown ones, and documents them in the generated OpenAPI at /openapi.json and
/docs); answers are validated against `projections.responses`. Handlers call the query functions
in a worker thread on the API's own connections, so a slow query never blocks the projector's
event loop work and a projector batch never blocks a read (SQLite WAL, PostgreSQL MVCC).

Errors are JSON `{"error", "parameter"}`: 400 for a bad parameter (named), 401 without the
bearer token when one is configured, 404 for an unknown ticket or path.
"""

from __future__ import annotations

import asyncio
import hmac
import queue
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException as StarletteHTTPException

from events.instants import DAY, SECOND, Micros
from projections.db import Database
from projections.model import ticket_policy
from projections.queries import (
    AttributionQuery,
    BadParameter,
    ComplianceQuery,
    DashboardQuery,
    EscalationQuery,
    Name,
    Params,
    SlaEventQuery,
    TicketQuery,
    attribution,
    bad_parameter,
    compliance,
    dashboard_board,
    explain_ticket,
    get_ticket,
    list_escalations,
    list_sla_events,
    list_tickets,
    resolve_when,
)
from projections.responses import (
    AttributionReport,
    ComplianceReport,
    Dashboard,
    Error,
    EscalationPage,
    Explanation,
    Health,
    ProjectorStats,
    Ready,
    SlaEventPage,
    TicketDetail,
    TicketPage,
)
from projections.store import Counters
from streams.sla.rules import Policy

Clock = Callable[[], Micros]
Lag = Callable[[], "dict[tuple[str, int], int] | None"]
"""Records behind per (topic, partition) as last measured by the running projector; None when
no projector is running or it has not measured yet (or the measure is stale)."""
T = TypeVar("T")

VERSION = "0.1.0"


def wall_clock() -> Micros:
    return time.time_ns() // 1000


class Pool:
    """A few connections, so one slow query (an ad-hoc compliance report over a month of a
    million tickets takes seconds) never holds up the wall screen's quick ones."""

    def __init__(self, target: str, size: int = 4) -> None:
        self._free: queue.SimpleQueue[Database] = queue.SimpleQueue()
        self._all = [Database(target) for _ in range(size)]
        for db in self._all:
            self._free.put(db)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn(db, *args)` with a free connection (blocking: call from a worker thread)."""
        db = self._free.get()
        try:
            return fn(db, *args)
        finally:
            self._free.put(db)

    def close(self) -> None:
        for db in self._all:
            db.close()


COMPLIANCE_TTL: Micros = 60 * SECOND
"""The wall screen's 30-day compliance is recomputed at most once a minute: it scans every
ticket of the period (seconds at a million tickets) and barely moves within a minute."""


@dataclass
class _ComplianceCache:
    """Per filter set (group, customer, policy): the chart data and its minute bucket."""

    entries: dict[tuple[str | None, ...], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    refreshing: dict[tuple[str | None, ...], asyncio.Task[None]] = field(default_factory=dict)


@dataclass
class Context:
    """What the handlers share: connections, policy, clock, projector view, metrics."""

    pool: Pool
    policy: Policy
    clock: Clock
    counters: Counters | None
    lag: Lag | None
    max_lag: int
    missing: Callable[[], list[str]] | None
    token: bytes | None
    registry: CollectorRegistry
    latency: Histogram
    cache: _ComplianceCache = field(default_factory=_ComplianceCache)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self.pool.run, fn, *args)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(_ctx)]
_bearer = HTTPBearer(
    auto_error=False,
    description="Needed only when the server has ESCALATOR_API_TOKEN set (read-only token).",
)


def _authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer-token check (constant-time compare; the token is never logged or echoed)."""
    expected: bytes | None = _ctx(request).token
    if expected is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, expected):
        raise StarletteHTTPException(401, "missing or invalid bearer token")


Auth = [Depends(_authorized)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Invalid parameter (named in `parameter`)"},
    401: {
        "model": Error,
        "description": "Missing or invalid bearer token",
        "headers": {
            "WWW-Authenticate": {
                "description": "`Bearer` (RFC 6750 section 3)",
                "required": True,
                "schema": {"type": "string", "const": "Bearer"},
            }
        },
    },
}


def _json_error(
    status: int,
    message: str,
    parameter: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status, headers=headers)


METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
)
"""The methods of RFC 9110 section 9 and PATCH: the `method` label's values, with `other` for
anything else a client sends (a label per invented method would grow the series without end)."""


def _method_label(method: str) -> str:
    return method if method in METHODS else "other"


def _without_422(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document without FastAPI's automatic 422: this API answers 400 (`Error`)."""
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return doc


class _ProjectorCollector(Collector):
    """Projector counters and per-partition lag, read when Prometheus scrapes."""

    def __init__(self, counters: Counters | None, lag: Lag | None) -> None:
        self.counters = counters
        self.lag = lag

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("escalator_build", "Escalator version and service.")
        info.add_metric([], {"version": VERSION, "service": "projections"})
        yield info
        if self.counters is not None:
            c = self.counters
            records = CounterMetricFamily(
                "escalator_projector_records",
                "Records read and processed (applied or not), by topic.",
                labels=["topic"],
            )
            for topic, count in sorted(c.by_topic.items()):
                records.add_metric([topic], count)
            yield records
            yield CounterMetricFamily(
                "escalator_projector_events_applied",
                "Ticket and SLA events applied to the read models.",
                value=c.applied,
            )
            skipped = CounterMetricFamily(
                "escalator_projector_events_not_applied",
                "Records read but not applied, by reason.",
                labels=["reason"],
            )
            for reason, count in (("duplicate", c.duplicates), ("rejected", c.rejected),
                                  ("invalid", c.invalid), ("redelivered", c.skipped)):  # fmt: skip
                skipped.add_metric([reason], count)
            yield skipped
        if self.lag is not None:
            lag = GaugeMetricFamily(
                "escalator_projector_lag_records",
                "Records between the projector's position and the end of each partition.",
                labels=["topic", "partition"],
            )
            for (topic, partition), behind in sorted((self.lag() or {}).items()):
                lag.add_metric([topic, str(partition)], behind)
            yield lag


# ------------------------------------------------------------------------------------------
# Handlers


def _now(ctx: Context, q: Params) -> Micros:
    return q.at(ctx.clock())


async def tickets(ctx: Ctx, q: Annotated[TicketQuery, Query()]) -> Any:
    return await ctx.run(list_tickets, ctx.policy, q, _now(ctx, q))


TicketId = Annotated[
    Name,
    Path(
        min_length=1,
        description="The ticket id, percent-encoded (RFC 3986): any id of the contract, "
        "`/`, `?`, `#` and spaces included (`T/1` is `/api/tickets/T%2F1`).",
    ),
]


async def ticket_explained(ctx: Ctx, ticket_id: TicketId, q: Annotated[Params, Query()]) -> Any:
    found = await ctx.run(explain_ticket, ctx.policy, ticket_id, _now(ctx, q))
    if found is None:
        return _json_error(404, f"no ticket {ticket_id[:64]!a}", "ticket_id")
    return found


async def ticket(ctx: Ctx, ticket_id: TicketId, q: Annotated[Params, Query()]) -> Any:
    found = await ctx.run(get_ticket, ctx.policy, ticket_id, _now(ctx, q))
    if found is None:
        return _json_error(404, f"no ticket {ticket_id[:64]!a}", "ticket_id")
    return found


async def sla_events(ctx: Ctx, q: Annotated[SlaEventQuery, Query()]) -> Any:
    now = _now(ctx, q)
    since = resolve_when("since", q.since, now)
    until = now + 1 if q.until is None else resolve_when("until", q.until, now)
    return await ctx.run(
        list_sla_events, since, until, q.type, q.ticket_id, q.metric, q.limit, q.offset
    )


async def escalations(ctx: Ctx, q: Annotated[EscalationQuery, Query()]) -> Any:
    now = _now(ctx, q)
    since = resolve_when("since", q.since, now)
    return await ctx.run(list_escalations, since, now, q.open, q.limit, q.offset)


async def compliance_report(ctx: Ctx, q: Annotated[ComplianceQuery, Query()]) -> Any:
    now = _now(ctx, q)
    start = resolve_when("from", q.start, now)
    end = now if q.end is None else resolve_when("to", q.end, now)
    return await ctx.run(compliance, ctx.policy, start, end, q.group_by, None, None, q.policy)


async def attribution_report(ctx: Ctx, q: Annotated[AttributionQuery, Query()]) -> Any:
    now = _now(ctx, q)
    start = resolve_when("from", q.start, now)
    end = now if q.end is None else resolve_when("to", q.end, now)
    return await ctx.run(attribution, start, end, q.type, q.agreement, q.agreement_kind)


async def _dashboard_compliance(ctx: Context, q: DashboardQuery, now: Micros) -> dict[str, Any]:
    """The cached chart data; a stale cache is refreshed in the background, not in the poll."""
    key = (q.group, q.customer, q.policy)
    bucket = now // COMPLIANCE_TTL
    cache = ctx.cache
    cached = cache.entries.get(key)
    if cached is None:
        data = await ctx.run(_month, ctx.policy, q, now)
        cache.entries[key] = (bucket, data)
        return data
    task = cache.refreshing.get(key)
    if cached[0] != bucket and (task is None or task.done()):

        async def refresh() -> None:
            cache.entries[key] = (bucket, await ctx.run(_month, ctx.policy, q, now))

        cache.refreshing[key] = asyncio.create_task(refresh())
    return cached[1]


def _month(db: Database, policy: Policy, q: DashboardQuery, now: Micros) -> dict[str, Any]:
    """30 days of compliance per severity, per day and per policy (the slow part of the
    board), of the tickets the board's filters select."""
    start = now - 30 * DAY
    month = {
        name: compliance(db, policy, start, now, name, q.group, q.customer, q.policy)["groups"]
        for name in ("severity", "day", "policy")
    }
    month["attribution"] = attribution(db, start, now)["groups"]  # breach time per group
    return month


async def dashboard_json(ctx: Ctx, q: Annotated[DashboardQuery, Query()]) -> Any:
    now = _now(ctx, q)
    data = await ctx.run(dashboard_board, ctx.policy, q, now)
    month = await _dashboard_compliance(ctx, q, now)
    data["compliance"] = month["severity"]
    data["compliance_by_day"] = month["day"]
    data["compliance_by_policy"] = month["policy"]
    data["breach_time_by_group"] = month["attribution"]
    data["policy"] = ticket_policy(ctx.policy, q.policy).ref()  # the filter's, else the file's
    return data


def _stats(db: Database) -> dict[str, Any]:
    offsets = db.query("SELECT topic, partition_id, next_offset FROM projector_offsets")
    count = db.query_one("SELECT COUNT(*) FROM tickets")
    return {
        "tickets": count[0] if count else 0,
        "offsets": [{"topic": t, "partition": p, "next_offset": o} for t, p, o in offsets],
    }


async def stats(ctx: Ctx) -> Any:
    data = await ctx.run(_stats)
    data["projector"] = ctx.counters.as_dict() if ctx.counters is not None else None
    return data


async def health() -> Any:
    """Liveness: the process answers HTTP."""
    return {"status": "ok"}


def _ping(db: Database) -> bool:
    return db.query_one("SELECT 1") is not None


async def ready(ctx: Ctx) -> Any:
    """Readiness: the database answers, every subscribed topic exists, and the projector is
    within `max_lag` records of the end of every partition it owns (503 otherwise, with the
    same body)."""
    try:
        database = await asyncio.wait_for(ctx.run(_ping), 5)
    except Exception:  # any driver error or a timeout means "not reachable"
        database = False
    lag: dict[tuple[str, int], int] | None = {}
    missing = ctx.missing() if ctx.missing is not None else []
    if ctx.lag is None:
        state = "disabled"
    else:
        lag = ctx.lag()
        if lag is None:
            state = "not_running"
        elif missing:
            state = "topic_missing"
        else:
            state = "caught_up" if max(lag.values(), default=0) <= ctx.max_lag else "behind"
    ok = database and state in ("caught_up", "disabled")
    body = {
        "ready": ok,
        "database": database,
        "projector": state,
        "lag": {f"{t}/{p}": n for (t, p), n in sorted((lag or {}).items())},
        "max_lag": ctx.max_lag,
        "missing_topics": missing,
    }
    return body if ok else JSONResponse(body, 503)


async def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


async def ticket_page() -> HTMLResponse:
    """A ticket's clocks: its explanation as a timeline (static; data from .../explain)."""
    html = resources.files("projections").joinpath("ticket.html").read_text("utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


async def page() -> HTMLResponse:
    """The wall screen (static; its data comes from /api/dashboard, which needs the token)."""
    html = resources.files("projections").joinpath("dashboard.html").read_text("utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


# ------------------------------------------------------------------------------------------
# The app


def make_app(
    db_target: str,
    policy: Policy,
    clock: Clock = wall_clock,
    counters: Counters | None = None,
    *,
    lag: Lag | None = None,
    max_lag: int = 1000,
    missing_topics: Callable[[], list[str]] | None = None,
    token: str | None = None,
) -> FastAPI:
    """The API + dashboard app on its own connections to the read-model database.

    `lag` is the running projector's measure (None: no projector in this process, /ready then
    checks only the database); `token`, when set, is required as `Authorization: Bearer` on
    everything but `/`, `/health`, `/ready` and the docs.
    """
    # `_created` series double every counter for no use (#12 §4)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    latency = Histogram(
        "escalator_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template, method and status.",
        ["route", "method", "status"],
        registry=registry,
    )
    registry.register(_ProjectorCollector(counters, lag))
    ctx = Context(
        Pool(db_target), policy, clock, counters, lag, max_lag, missing_topics,
        token.encode() if token else None, registry, latency,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            tasks = [t for t in ctx.cache.refreshing.values() if not t.done()]
            await asyncio.gather(*tasks, return_exceptions=True)
            ctx.pool.close()

    app = FastAPI(
        title="Escalator projections",
        version=VERSION,
        description="Read models of ticket SLAs: what is about to breach, what has breached, "
        "who was escalated, how we are doing against the SLA.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.ctx = ctx

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        bad = bad_parameter(exc.errors())
        return _json_error(400, bad.message, bad.parameter)

    @app.exception_handler(BadParameter)
    async def _bad(_: Request, exc: BadParameter) -> JSONResponse:
        return _json_error(400, exc.message, exc.parameter)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # keeps Starlette's headers, e.g. `Allow` on a 405 (RFC 9110 section 15.5.6)
        return _json_error(exc.status_code, str(exc.detail).lower(), headers=exc.headers)

    @app.middleware("http")
    async def _timed(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path_format", None) or "unmatched"
        latency.labels(template, _method_label(request.method), str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    add = app.add_api_route
    add("/", page, include_in_schema=False, response_class=HTMLResponse)
    add("/ticket", ticket_page, include_in_schema=False, response_class=HTMLResponse)
    add("/health", health, response_model=Health, summary="Liveness")
    add("/ready", ready, response_model=Ready, summary="Readiness: database and projector lag",
        responses={503: {"model": Ready, "description": "Not ready"}})  # fmt: skip
    metrics_doc: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    }
    add("/metrics", metrics, dependencies=Auth, summary="Prometheus metrics",
        response_class=Response, responses={**metrics_doc, **_ERRORS})  # fmt: skip
    api: list[tuple[str, Callable[..., Any], Any, str]] = [
        ("/api/tickets", tickets, TicketPage, "Tickets, filtered, sorted and paged"),
        ("/api/tickets/{ticket_id:path}/explain", ticket_explained, Explanation,
         "Every interval of a ticket's clocks, counted or not, and why"),
        ("/api/tickets/{ticket_id:path}", ticket, TicketDetail,
         "One ticket with its SLA timeline"),
        ("/api/escalations", escalations, EscalationPage,
         "Escalations, newest first, with whether since resolved"),
        ("/api/sla-events", sla_events, SlaEventPage, "SLA events fired in a period"),
        ("/api/compliance", compliance_report, ComplianceReport,
         "Compliance of tickets reported in a period, grouped"),
        ("/api/attribution", attribution_report, AttributionReport,
         "Who held the tickets while metrics' clocks ran (breaches by default)"),
        ("/api/dashboard", dashboard_json, Dashboard, "What the wall screen polls"),
        ("/api/stats", stats, ProjectorStats, "Projector counters and stored offsets"),
    ]  # fmt: skip
    for path, endpoint, model, summary in api:
        responses = dict(_ERRORS)
        if path.startswith("/api/tickets/{ticket_id:path}"):
            responses[404] = {"model": Error, "description": "No such ticket"}
        add(path, endpoint, response_model=model, summary=summary, dependencies=Auth,
            responses=responses, response_model_exclude_unset=True)  # fmt: skip
    for route in app.router.routes:
        # Starlette's `path` matches `.*`, which stops at a line break: an id with CR or LF
        # was a 404 "not found" instead of the 400 naming `ticket_id` (issue #19 fuzz test).
        if isinstance(route, APIRoute) and route.path.startswith("/api/tickets/{"):
            route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _without_422(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: `projections serve` stops it together with
    the projector on SIGINT/SIGTERM (set `should_exit`)."""

    def capture_signals(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()


def server(app: FastAPI, host: str, port: int) -> Server:
    """A uvicorn server for `app` (no access log: paths carry customer ids)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="on",
        log_config=None,  # uvicorn's lines go through the service's logging (base.logs)
    )
    return Server(config)


def bound_port(srv: Server) -> int:
    """The port a started server listens on (useful with port 0)."""
    port: int = srv.servers[0].sockets[0].getsockname()[1]
    return port
