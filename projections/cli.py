"""`escalator projections serve|rebuild` and `escalator query ...`: the read models from a shell.

`query` reads the read-model database directly (same query functions as the API), so it works
without a running server, e.g. against a copy of the SQLite file or a PostgreSQL replica.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from base.errors import EscalatorError
from base.settings import (
    DB_ENV,
    PolicySettings,
    S,
    SettingsError,
    add_flags,
    service_settings,
)
from events.instants import SECOND, format_duration, parse_rfc3339
from events.text import escape_controls
from projections.db import Database, is_postgres_url
from projections.queries import (
    BadParameter,
    ComplianceQuery,
    EscalationQuery,
    Params,
    TicketQuery,
    compliance,
    explain_ticket,
    get_ticket,
    list_escalations,
    list_tickets,
    parse_params,
    policy_history,
    resolve_when,
)
from projections.schema import migrate
from projections.settings import ProjectionsSettings, QuerySettings, RebuildSettings
from streams.sla.explain import Explanation
from streams.sla.policy import PolicyError, load_policy
from streams.sla.rules import Policy

log = logging.getLogger("escalator.projections")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `projections` and `query` command groups to `escalator`."""
    proj = commands.add_parser("projections")
    proj_sub = proj.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    serve = proj_sub.add_parser("serve", help="projector + HTTP API + dashboard in one process")
    add_flags(serve, ProjectionsSettings)
    serve.add_argument(
        "--no-projector", action="store_true", help="serve the API only, over the DB as it is"
    )
    serve.set_defaults(func=cmd_serve)
    rebuild = proj_sub.add_parser(
        "rebuild", help="empty the tables and replay both topics from the start (stop serve first)"
    )
    add_flags(rebuild, RebuildSettings)
    rebuild.set_defaults(func=cmd_rebuild)

    query = commands.add_parser("query")
    query_sub = query.add_subparsers(dest="query_command", required=True, metavar="WHAT")
    tickets = query_sub.add_parser("tickets", help="tickets by filters, e.g. --breaching-within 1h")
    for flag in ("status", "sla-state", "severity", "customer", "group", "assignee",
                 "breaching-within", "sort", "limit", "offset"):  # fmt: skip
        tickets.add_argument(f"--{flag}")
    one = query_sub.add_parser("ticket", help="one ticket and its SLA timeline")
    one.add_argument("ticket_id")
    esc = query_sub.add_parser("escalations", help="escalations since a time (default 24h)")
    esc.add_argument("--since", default="24h")
    esc.add_argument("--open", action="store_true", help="only those not resolved since")
    esc.add_argument("--limit", default="100")
    comp = query_sub.add_parser("compliance", help="compliance over a period, grouped")
    comp.add_argument("--from", dest="start", default="30d")
    comp.add_argument("--to", dest="end", default=None)
    comp.add_argument("--group-by", default="severity")
    for sub in (tickets, comp):  # `--policy` names the policy file, as on every service
        sub.add_argument("--policy-name", help="only tickets running under this policy (name)")
    history = query_sub.add_parser(
        "policies", help="the policy rollout history: versions activated, tickets moved and kept"
    )
    for sub in (tickets, one, esc, comp, history):
        add_flags(sub, QuerySettings)
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        sub.add_argument("--now", default=None, help="evaluate as of this RFC 3339 instant")
        sub.set_defaults(func=cmd_query)
    register_explain(commands)


def register_explain(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    explain = commands.add_parser(
        "explain",
        description="Every interval of a ticket's clocks, counted or not, with its cause "
        "(closed hours, a named holiday, a pause, a manual stop with reason and actor), the "
        "policy, version and calendars that timed it and how each deadline was set: from a "
        "history (--input, replayed under --policy) or the projections' database (--db).",
    )
    explain.add_argument("ticket_id")
    explain.add_argument("--input", "-i", help="a JSONL ticket history to replay (- for stdin)")
    add_flags(explain, QuerySettings)
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    explain.add_argument(
        "--now",
        default=None,
        help="explain running clocks up to this RFC 3339 instant "
        "(default: now for --db, the history's last event for --input)",
    )
    explain.set_defaults(func=cmd_explain)


def _settings(model: type[S], args: argparse.Namespace) -> S | None:
    try:
        return service_settings(model, args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


# ------------------------------------------------------------------------------------------
# serve / rebuild


TOKEN_ENV = "ESCALATOR_API_TOKEN"
"""The bearer token the API, dashboard data and metrics require when set (read-only)."""


def api_token() -> str | None:
    """The API token from the environment; None (no auth) when unset or empty. Raises
    ValueError for a token too short to resist guessing (the token itself is never shown)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < 16:
        raise ValueError(f"${TOKEN_ENV} is too short: use at least 16 random characters")
    return token


async def _serve(
    settings: ProjectionsSettings, policy: Policy, token: str | None, projecting: bool
) -> None:
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    from projections.api import make_app, server
    from projections.projector import Projector, Topics

    projector = None
    if projecting:
        topics = Topics(settings.ticket_topic, settings.sla_topic)
        projector = Projector(
            settings.db, policy, settings.broker, topics, group_id=settings.consumer_group
        )
    else:
        db = Database(settings.db)
        migrate(db)
        db.close()
    app = make_app(
        settings.db,
        policy,
        counters=projector.store.counters if projector else None,
        lag=projector.lag if projector else None,
        missing_topics=projector.missing_topics if projector else None,
        max_lag=settings.ready_max_lag,
        token=token,
    )
    srv = server(app, settings.host, settings.port)
    web = asyncio.create_task(srv.serve())
    while not srv.started and not web.done():
        await asyncio.sleep(0.05)
    if web.done():  # could not bind, or the app failed to start
        await web
        raise SystemExit(1)
    auth = "bearer token required" if token else "no auth"
    print(
        f"serving http://{settings.host}:{settings.port}/ (db {_redact(settings.db)}, {auth})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while projector is not None and not stop.is_set():
            try:
                await projector.run(stop)
            except (OSError, KafkaError) as exc:  # keep serving reads; retry the broker
                log.warning("projector stopped (%s); retrying in 5 s", type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5)
        await stop.wait()
    finally:
        srv.should_exit = True
        await web
        if projector is not None:
            projector.close()


def _redact(target: str) -> str:
    """A DSN without its password, for logs."""
    if "@" in target and "://" in target:
        scheme, rest = target.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return target


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(ProjectionsSettings, args)
    if settings is None:
        return 2
    try:
        policy = load_policy(settings.policy)
        token = api_token()
    except (PolicyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(settings, policy, token, projecting=not args.no_projector))
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from projections.projector import Projector, Topics

    settings = _settings(RebuildSettings, args)
    if settings is None:
        return 2
    try:
        policy = load_policy(settings.policy)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        projector = Projector(
            settings.db,
            policy,
            settings.broker,
            Topics(settings.ticket_topic, settings.sla_topic),
        )
        try:
            count = await projector.rebuild()
            print(
                f"rebuilt {_redact(settings.db)} from {count} records: "
                + orjson.dumps(projector.store.counters.as_dict()).decode()
            )
        finally:
            projector.close()
        return 0

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------
# query


def _table(headers: Sequence[str], rows: list[list[Any]]) -> str:
    """Rows under headers; control characters in stored values (from an older producer, the
    contract refuses them now) are shown escaped, never sent to the terminal as they are."""
    cells = [[("" if v is None else escape_controls(str(v))) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _left(metric: dict[str, Any] | None) -> str:
    if not metric:
        return ""
    seconds = metric.get("remaining_seconds")
    left = "" if seconds is None else format_duration(round(seconds * 1_000_000))
    return f"{metric['state']} {left}".strip()


def _render(what: str, data: dict[str, Any]) -> str:
    if what == "policies":
        rows = [
            [a["at"], a["version"], a["digest"][:19], a["mode"], a["partitions"],
             a["tickets_moved"], a["tickets_kept"]]
            for a in data["activations"]
        ]  # fmt: skip
        headers = ["AT", "VERSION", "DIGEST", "MODE", "PARTITIONS", "MOVED", "KEPT"]
        return _table(headers, rows)
    if what == "tickets":
        rows = [
            [t["ticket_id"], t["status"], t["severity"], t["customer_id"], t["group"],
             t["assignee"], t["policy"], t["sla_state"], t["next_due_at"],
             _left(t["metrics"].get("first_response")), _left(t["metrics"].get("resolution"))]
            for t in data["items"]
        ]  # fmt: skip
        out = _table(["TICKET", "STATUS", "SEV", "CUSTOMER", "GROUP", "ASSIGNEE", "POLICY",
                      "SLA", "NEXT DUE", "FIRST RESPONSE", "RESOLUTION"], rows)  # fmt: skip
        if data["next_offset"] is not None:
            out += f"\n(more: --offset {data['next_offset']})"
        return out
    if what == "ticket":
        head = _table(
            ["TICKET", "STATUS", "SEV", "CUSTOMER", "GROUP", "ASSIGNEE", "POLICY", "CALENDAR",
             "FIRST RESPONSE", "RESOLUTION"],
            [[data["ticket_id"], data["status"], data["severity"], data["customer_id"],
              data["group"], data["assignee"], data["policy"], data["calendar"],
              _left(data["metrics"].get("first_response")),
              _left(data["metrics"].get("resolution"))]],
        )  # fmt: skip
        timeline = _table(
            ["AT", "EVENT", "METRIC", "DUE", "DETAIL"],
            [[e["at"], e["type"], e.get("metric", ""), e.get("due_at", ""),
              " ".join(f"{k}={e[k]}" for k in ("level", "to", "threshold", "took_seconds", "eta")
                       if k in e)] for e in data["timeline"]],
        )  # fmt: skip
        return head + "\n\n" + timeline
    if what == "escalations":
        rows = [
            [e["escalated_at"], e["ticket_id"], e["severity"], e["level"], e["to"],
             "yes" if e["resolved_since"] else "no"]
            for e in data["items"]
        ]  # fmt: skip
        return _table(["ESCALATED AT", "TICKET", "SEV", "LEVEL", "TO", "RESOLVED SINCE"], rows)

    def pct(m: dict[str, Any]) -> str:
        return "" if m["compliance"] is None else f"{m['compliance'] * 100:.1f}%"

    def secs(m: dict[str, Any], clock: str, stat: str) -> str:
        value = m[clock][stat]
        return "" if value is None else format_duration(round(value * 1_000_000))

    rows = []
    for g in data["groups"]:
        fr, res = g["first_response"], g["resolution"]
        rows.append([g["key"], g["tickets"], fr["met"], fr["breached"], pct(fr),
                     secs(fr, "business", "median_seconds"), secs(fr, "elapsed", "median_seconds"),
                     res["met"], res["breached"], pct(res),
                     secs(res, "business", "median_seconds"),
                     secs(res, "elapsed", "median_seconds")])  # fmt: skip
    return _table(
        [data["group_by"].upper(), "TICKETS", "FR MET", "FR BREACHED", "FR %", "FR MEDIAN BUS",
         "FR MEDIAN ELAPSED", "RES MET", "RES BREACHED", "RES %", "RES MEDIAN BUS",
         "RES MEDIAN ELAPSED"], rows,
    )  # fmt: skip


def run_query(args: argparse.Namespace, policy: Policy, db: Database) -> dict[str, Any] | None:
    """Validate the flags with the API's parameter models, then ask the same query functions."""
    from projections.api import wall_clock

    def given(**values: Any) -> dict[str, Any]:
        return {key: value for key, value in values.items() if value is not None}

    now = parse_params(Params, given(now=args.now)).at(wall_clock())
    what = args.query_command
    if what == "tickets":
        q = parse_params(
            TicketQuery,
            given(status=args.status, sla_state=args.sla_state, severity=args.severity,
                  customer=args.customer, group=args.group, assignee=args.assignee,
                  breaching_within=args.breaching_within, sort=args.sort, limit=args.limit,
                  offset=args.offset, policy=args.policy_name),
        )  # fmt: skip
        return list_tickets(db, policy, q, now)
    if what == "ticket":
        return get_ticket(db, policy, args.ticket_id, now)
    if what == "policies":
        return policy_history(db)
    if what == "policies":
        return policy_history(db)
    if what == "escalations":
        e = parse_params(EscalationQuery, given(since=args.since, limit=args.limit))
        return list_escalations(db, resolve_when("since", e.since, now), now, args.open, e.limit)
    c = parse_params(ComplianceQuery, given(**{"from": args.start, "to": args.end,
                                               "group_by": args.group_by,
                                               "policy": args.policy_name}))  # fmt: skip
    start = resolve_when("from", c.start, now)
    end = now if c.end is None else resolve_when("to", c.end, now)
    return compliance(db, policy, start, end, c.group_by, policy_name=c.policy)


def open_existing(target: str) -> Database:
    """Open a read-model database that must already exist (a query never creates one).

    Raises DatabaseMissing naming the file or the DSN (password left out).
    """
    if not is_postgres_url(target):
        if target == ":memory:" or not Path(target).is_file():
            raise DatabaseMissing(
                f"no database {target!r} (run `escalator projections serve --db {target}` "
                f"first, or pass --db / ${DB_ENV})"
            )
        return Database(target)
    import psycopg

    try:
        return Database(target)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseMissing(f"cannot open database {_redact(target)}: {first}") from None


class DatabaseMissing(EscalatorError):
    """The --db of a query does not exist or cannot be reached."""


def cmd_query(args: argparse.Namespace) -> int:
    settings = _settings(QuerySettings, args)
    if settings is None:
        return 2
    try:
        policy = load_policy(settings.policy)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        db = open_existing(settings.db)
    except DatabaseMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        migrate(db)
        data = run_query(args, policy, db)
    except BadParameter as exc:
        flag = "--" + exc.parameter.replace("_", "-")
        print(f"error: {flag}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        db.close()
    if data is None:
        print(f"error: no ticket {args.ticket_id!r}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(_render(args.query_command, data))
    return 0


# ------------------------------------------------------------------------------------------
# explain


def cmd_explain(args: argparse.Namespace) -> int:
    from projections.api import wall_clock
    from streams.sla.explain import explain
    from streams.sla.replay import Replayer

    settings = _settings(PolicySettings if args.input else QuerySettings, args)
    if settings is None:
        return 2
    try:
        policy = load_policy(settings.policy)
        now = None if args.now is None else parse_rfc3339(args.now)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: --now: {exc}", file=sys.stderr)
        return 2
    found: Explanation | None
    if args.input:
        try:
            source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
        except OSError as exc:
            print(f"error: --input: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
            return 1
        replayer = Replayer(policy)
        with source:
            for _ in replayer.run(source, now):
                pass
        state = replayer.tickets.get(args.ticket_id)
        upto = now if now is not None else (replayer.clock or 0)
        found = None if state is None else explain(state, policy, upto)
    else:
        assert isinstance(settings, QuerySettings)
        try:
            db = open_existing(settings.db)
        except DatabaseMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            migrate(db)
            found = explain_ticket(db, policy, args.ticket_id, wall_clock() if now is None else now)
        finally:
            db.close()
    if found is None:
        print(f"error: no ticket {args.ticket_id!r}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render_explanation(found))
    return 0


def render_explanation(found: Explanation) -> str:
    """An explanation as text: a paragraph per metric, a line per interval."""
    lines = [
        f"ticket {found['ticket_id']}: severity {found['severity']}, {found['status']}, "
        f"policy {found['policy']} version {found['version']}, up to {found['upto']}"
    ]
    for metric in found["metrics"]:
        calendars = " -> ".join(metric["calendars"])
        due = metric["due_at"] or "none while held"
        lines += [
            "",
            f"{metric['metric']}: {metric['status']}, {metric['clock']} clock on {calendars}",
            f"  target: {metric['target']}; due {due}",
            f"  counted: {format_duration(round(metric['counted_seconds'] * SECOND))} "
            f"of {format_duration(round(metric['target_seconds'] * SECOND))}",
        ]
        rows = []
        for item in metric["intervals"]:
            why: str = item["cause"]
            if "holiday" in item:
                why += f" ({item['holiday']})"
            if "reason" in item:
                why += f" ({item['reason']} by {item['actor']})"
            length = format_duration(parse_rfc3339(item["end"]) - parse_rfc3339(item["start"]))
            rows.append([item["start"], item["end"], length, why, item.get("calendar", "")])
        if rows:
            lines.append(_table(["FROM", "TO", "LENGTH", "COUNTED/WHY", "CALENDAR"], rows))
    for given in found["breach_reasons"]:
        lines.append(
            f"breach reason: {given['metric']}: {given['reason']} by {given['actor']} "
            f"at {given['at']}"
        )
    return "\n".join(lines)
