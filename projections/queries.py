"""The ops questions as queries over the read models, shared by the HTTP API and the CLI.

Parameters are validated here (a `BadParameter` names the offending one), SQL is portable,
and everything time-dependent (`remaining`, "breaching within", "last 24 hours") is computed
against an explicit `now`, so answers are reproducible in tests.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from base.errors import EscalatorError
from events.instants import (
    DAY,
    HOUR,
    MAX_INSTANT,
    SECOND,
    SUPPORTED_RANGE,
    Micros,
    format_instant,
)
from events.outbound import Metric
from events.text import CONTROL_RULE, MAX_TEXT, PRINTABLE_PATTERN
from events.when import check_when, instant_at, parse_window, shown
from projections.db import Database
from projections.model import METRICS, metric_clock, remaining, ticket_policy
from streams.sla import state_codec
from streams.sla.clocks import BusinessCalendar, Clock
from streams.sla.explain import Explanation, explain
from streams.sla.rules import Policy

MAX_LIMIT = 1000
SORTS = {
    "due": "next_due_at NULLS LAST, ticket_id",
    "-due": "next_due_at DESC NULLS LAST, ticket_id",
    "reported": "reported_at, ticket_id",
    "-reported": "reported_at DESC, ticket_id",
    "severity": "severity, next_due_at NULLS LAST, ticket_id",
    "ticket_id": "ticket_id",
}


class BadParameter(EscalatorError, ValueError):
    """An invalid query parameter; `parameter` names it (the API answers 400 with it)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


# ------------------------------------------------------------------------------------------
# Parameters: one pydantic model per question, shared by the HTTP API (FastAPI reads them from
# the query string and documents them in the generated OpenAPI) and by `escalator query`.


def resolve_when(name: str, text: str, now: Micros) -> Micros:
    """The instant of a validated time parameter (`check_when`) at `now`; BadParameter naming
    `name` when a duration reaches back before the supported range."""
    try:
        return instant_at(text, now)
    except ValueError as exc:
        raise BadParameter(name, str(exc)) from None


def _ascii_int(value: Any) -> Any:
    """Integers in parameters are ASCII digits with an optional minus: no `1_000`, `1.0`, `+5`
    or other scripts' digits (which `int()` would take)."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,12}", value.strip(), re.ASCII):
        raise ValueError(f"expected an integer, got {shown(value)}")
    return value


def _csv(value: Any) -> Any:
    """`a,b` and repeated parameters (`?x=a&x=b`) both give a list; empty items are ignored."""
    items = value if isinstance(value, list) else [value]
    out = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not out:
        raise ValueError("empty")
    return out


def _strict_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got {shown(value)}")
    return value


_BACK = (
    "[1-9][0-9]{0,2}[wW]|[1-9][0-9]{0,3}[dD]|[1-9][0-9]{0,4}[hH]|[1-9][0-9]{0,6}[mM]"
    "|[1-9][0-9]{0,7}[sS]"
)
"""Durations documented for time parameters: at most 999 weeks (19 years) back, so any `now`
after 1990 keeps them in range (longer ones are answered while they stay after 1970)."""
_INSTANT = (
    "(199[0-9]|[2-7][0-9]{3}|8[0-8][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
"""Instants documented for time parameters: 1990-8899 without leap seconds, so no offset or
duration takes them out of the range (the code accepts all of events.instants' range)."""
WHEN_PATTERN = "^(" + _BACK + "|" + _INSTANT + ")$"
_WHEN_SCHEMA = {
    "maxLength": 64,
    "anyOf": [
        {"pattern": "^(" + _BACK + ")$"},
        {"pattern": "^" + _INSTANT + "$", "format": "date-time"},  # a day the month has
    ],
}
"""A time parameter's shape for OpenAPI readers (`check_when` decides): a duration, or an
RFC 3339 date-time with offset in the supported years."""
When = Annotated[
    str,
    AfterValidator(check_when),
    Field(
        description="RFC 3339 time with offset (e.g. 2026-11-24T15:00:00Z), or a duration "
        f"before now (e.g. 24h, 30d); within {SUPPORTED_RANGE}, a duration included (it may "
        "not reach back before the range's start from `now`), a date that exists.",
        examples=["24h", "2026-11-24T15:00:00Z"],
        json_schema_extra=_WHEN_SCHEMA,
    ),
]
Count = Annotated[int, BeforeValidator(_ascii_int)]
Name = Annotated[str, Field(max_length=MAX_TEXT, pattern=PRINTABLE_PATTERN)]
"""An id or name filter: what the event contract allows (`events.text`), so a filter with NUL,
which PostgreSQL cannot compare, is a 400 naming the parameter on every backend."""
Flag = Annotated[bool, BeforeValidator(_strict_bool)]
Window = Annotated[
    Micros,
    BeforeValidator(lambda v: parse_window(v) if isinstance(v, str) else v),
    # documented: windows up to 99,999 weeks (1,917 years), within the range's length
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^([1-9][0-9]{0,4}w|[1-9][0-9]{0,5}d|[1-9][0-9]{0,6}h|[1-9][0-9]{0,8}m"
            "|[1-9][0-9]{0,9}s)$",
        }
    ),
]
TicketStatus = Literal["open", "paused", "resolved", "closed"]
SlaState = Literal["breached", "warning", "on_track", "paused", "met", "stopped"]
SlaEventType = Literal[
    "sla.warning", "sla.breached", "sla.met", "ticket.escalated", "customer.notification_required"
]
MetricFilter = Metric
"""The metrics the outbound contract names (`events.outbound`): a metric it adds is accepted."""
Sort = Literal["due", "-due", "reported", "-reported", "severity", "ticket_id"]
Grouping = Literal["severity", "customer", "day", "group", "policy", "none"]


def _csv_or_none(value: Any) -> Any:
    return None if value is None else _csv(value)


_CSV = BeforeValidator(_csv_or_none)
Statuses = Annotated[list[TicketStatus] | None, _CSV]
SlaStates = Annotated[list[SlaState] | None, _CSV]
Severities = Annotated[
    list[
        Annotated[
            Count,
            Field(ge=1, le=4),
            # pydantic writes `ge`/`le` (not JSON Schema) for a constrained item here
            WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 4}),
        ]
    ]
    | None,
    _CSV,
]
SlaEventTypes = Annotated[list[SlaEventType] | None, _CSV]
_LIST = " Comma-separated or repeated."


class Params(BaseModel):
    """Parameters every question takes; unknown ones are rejected to catch typos."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    now: When | None = Field(
        None, description="Evaluate as of this instant instead of the server clock."
    )

    def at(self, clock_now: Micros) -> Micros:
        """The instant the answer is computed for."""
        return clock_now if self.now is None else resolve_when("now", self.now, clock_now)


class Page(Params):
    limit: Count = Field(100, ge=1, le=MAX_LIMIT, description="Page size.")
    offset: Count = Field(
        0, ge=0, le=10**9, description="Rows to skip (next_offset of the previous page)."
    )


class TicketQuery(Page):
    """`/api/tickets` and `escalator query tickets`."""

    status: Statuses = Field(None, description="Ticket statuses." + _LIST)
    sla_state: SlaStates = Field(None, description="Worst-metric SLA states." + _LIST)
    severity: Severities = Field(None, description="Severities 1-4." + _LIST)
    customer: Name | None = Field(None, description="Customer id.")
    group: Name | None = Field(None, description="Assigned group.")
    assignee: Name | None = Field(None, description="Assignee.")
    policy: Name | None = Field(None, description="Only tickets running under this policy (name).")
    breaching_within: Window | None = Field(
        None,
        description="Next running deadline within this wall-clock window from now (e.g. 1h, "
        "30m, 2d); overdue ones included.",
    )
    sort: Sort = "due"
    limit: Count = Field(50, ge=1, le=MAX_LIMIT, description="Page size.")


class SlaEventQuery(Page):
    """`/api/sla-events`."""

    since: When = Field("24h", description="Start (default 24h before now).")
    until: When | None = Field(None, description="End, exclusive (default now).")
    type: SlaEventTypes = Field(None, description="SLA event types." + _LIST)
    ticket_id: Name | None = Field(None, description="Only this ticket.")
    metric: MetricFilter | None = Field(None, description="Only this metric.")


class EscalationQuery(Page):
    """`/api/escalations` and `escalator query escalations`."""

    since: When = Field("24h", description="Start (default 24h before now).")
    open: Flag = Field(False, description="Only those whose ticket is not resolved since.")


class ComplianceQuery(Params):
    """`/api/compliance` and `escalator query compliance`."""

    start: When = Field(
        "30d",
        alias="from",
        description="Start (default 30d before now); `to` at or before it "
        "is an empty period (no tickets).",
    )
    end: When | None = Field(None, alias="to", description="End, exclusive (default now).")
    policy: Name | None = Field(None, description="Only tickets running under this policy (name).")
    group_by: Grouping = Field(
        "severity",
        description="Grouping (days are the local days of the `policy` filter's calendar, "
        "else of the policy file's default calendar). By severity, each metric counts under "
        "the severity it was decided under (that of its sla.met / sla.breached), so the totals "
        "add up to the sla-events topic's; `tickets` counts tickets by current severity.",
    )


class AttributionQuery(Params):
    """`/api/attribution` and `escalator query attribution`."""

    start: When = Field("30d", alias="from", description="Start (default 30d before now).")
    end: When | None = Field(None, alias="to", description="End, exclusive (default now).")
    type: Literal["sla.breached", "sla.met", "sla.stopped"] = Field(
        "sla.breached",
        description="The events whose attribution counts (default: breaches, the time each "
        "group held the ticket while a breached metric's clock ran).",
    )
    agreement: Name | None = Field(
        None, description="Only this agreement's events (the policy's or the OLA's name)."
    )
    agreement_kind: Literal["sla", "ola"] | None = Field(
        None, description="Only the customer SLA's (`sla`) or the OLAs' (`ola`) events."
    )


P = TypeVar("P", bound=Params)


def parse_params(model: type[P], params: Mapping[str, Any]) -> P:
    """Validate parameters outside HTTP (the CLI): BadParameter names the first bad one."""
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise bad_parameter(exc.errors()) from None


def bad_parameter(errors: Sequence[Mapping[str, Any]]) -> BadParameter:
    """The first validation error as a BadParameter naming the parameter."""
    first = errors[0]
    loc = [p for p in first.get("loc", ()) if isinstance(p, str) and p not in ("query", "path")]
    name = loc[0] if loc else "query"
    message = str(first.get("msg", "invalid"))
    if first.get("type") == "extra_forbidden":
        message = "unknown parameter"
    elif first.get("type") == "string_pattern_mismatch":  # Name's, the only pattern on a str
        message = CONTROL_RULE
    message = message.removeprefix("Value error, ")
    return BadParameter(name, message)


def _ts(value: Micros | None) -> str | None:
    return None if value is None else format_instant(value)


def _secs(value: Micros | None) -> float | None:
    return None if value is None else value / SECOND


# ------------------------------------------------------------------------------------------
# Tickets

_TICKET_SELECT = (
    "SELECT ticket_id, status, severity, customer_id, assignee, group_name, reported_at, "
    "first_response_at, resolved_at, closed_at, cycle, sla_state, next_due_at, "
    "escalation_level, fr_state, fr_due_at, fr_paused_remaining, fr_clock, "
    "res_state, res_due_at, res_paused_remaining, res_clock, last_event_at, "
    "policy_name, policy_version, fr_calendar, res_calendar, metrics_json FROM tickets"
)
_METRIC_COLUMNS = ((14, 25), (18, 26))
"""Per metric of METRICS: where its (state, due_at, paused_remaining, clock) start in a
`_TICKET_SELECT` row, and where its calendar is (rows written before migration 6)."""


def _stored_metrics(row: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Every metric stored on a `_TICKET_SELECT` row (`metrics_json`, see model.ticket_row);
    for a row written before migration 6, first response and resolution from their columns."""
    if row[27] is not None:
        listed: list[dict[str, Any]] = orjson.loads(row[27])
        return listed
    found = []
    for (index, cal_index), metric in zip(_METRIC_COLUMNS, METRICS, strict=True):
        state, due, paused_left, clock_name = row[index : index + 4]
        if state is not None:
            found.append({
                "metric": metric, "state": state, "due_at": due, "paused_remaining": paused_left,
                "clock": clock_name, "calendar": row[cal_index], "round": None,
            })  # fmt: skip
    return found


def _ticket_json(row: tuple[Any, ...], root: Policy, now: Micros) -> dict[str, Any]:
    """A ticket as the API shows it. Every time on it counts on the ticket's own policy (the
    row's `policy_name`) and each metric on the calendar that times it (its row's calendar)."""
    policy = ticket_policy(root, row[23])
    ref = policy.ref()
    rules = policy.severities.get(row[2])
    metrics: dict[str, Any] = {}
    focus: tuple[Micros, Micros, str, Clock | None] | None = None
    """(remaining, target, state, clock) of the metric the ticket is closest to breaching on."""
    for stored in _stored_metrics(row):
        metric, state, due = stored["metric"], stored["state"], stored["due_at"]
        clock_name = stored["clock"]
        calendar = stored["calendar"] if clock_name == "business" else None
        if clock_name == "business" and calendar is None:  # a row from before migration 4
            calendar = ref.get("calendar")
        clock = metric_clock(policy, clock_name, calendar)
        left = remaining(state, due, stored["paused_remaining"], clock, now)
        metrics[metric] = {
            "state": state,
            "due_at": _ts(due),
            "remaining_seconds": _secs(left),
            "clock": clock_name,
            "calendar": calendar,
        }
        if stored["round"] is not None:
            metrics[metric]["round"] = stored["round"]
        rule = None if rules is None else rules.metric(metric)
        if left is not None and rule is not None and (focus is None or left < focus[0]):
            focus = (left, rule.target, state, clock)
    stopped: str | None = None
    fraction: float | None = None
    if focus is not None and row[1] in ("open", "paused"):
        left, target, state, clock = focus
        fraction = round(1 - left / target, 4) if target > 0 else None
        if state == "paused":
            stopped = "paused"
        elif isinstance(clock, BusinessCalendar) and not clock.is_open(now):
            stopped = "outside_business_hours"
    return {
        "ticket_id": row[0],
        "status": row[1],
        "severity": row[2],
        "customer_id": row[3],
        "assignee": row[4],
        "group": row[5],
        "policy": row[23] or policy.name,
        "policy_version": row[24],
        "calendar": ref.get("calendar"),
        "reported_at": _ts(row[6]),
        "first_response_at": _ts(row[7]),
        "resolved_at": _ts(row[8]),
        "closed_at": _ts(row[9]),
        "cycle": row[10],
        "sla_state": row[11],
        "next_due_at": _ts(row[12]),
        "escalation_level": row[13],
        "last_event_at": _ts(row[22]),
        "clock_stopped": stopped,
        "elapsed_fraction": fraction,
        "metrics": metrics,
    }


def _in(column: str, values: list[Any], where: list[str], args: list[Any]) -> None:
    where.append(f"{column} IN ({', '.join('?' for _ in values)})")
    args.extend(values)


def list_tickets(db: Database, policy: Policy, q: TicketQuery, now: Micros) -> dict[str, Any]:
    """Tickets matching the filters, sorted, one page; `next_offset` is null on the last page.

    `breaching_within=W` selects tickets whose next running deadline falls before now + W
    (wall-clock window; overdue ones whose breach event has not arrived yet included),
    ordered by that deadline: a range scan of the (next_due_at, ticket_id) index.
    """
    where: list[str] = []
    args: list[Any] = []
    if q.status:
        _in("status", q.status, where, args)
    if q.sla_state:
        _in("sla_state", q.sla_state, where, args)
    if q.severity:
        _in("severity", q.severity, where, args)
    for column, value in (("customer_id", q.customer), ("group_name", q.group),
                          ("assignee", q.assignee), ("policy_name", q.policy)):  # fmt: skip
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    order = SORTS[q.sort]
    if q.breaching_within is not None:
        where.append("next_due_at <= ?")
        args.append(now + q.breaching_within)
        if q.sort in ("due", "-due"):  # no NULLs can match: keep the plain index order
            order = order.replace(" NULLS LAST", "")
    sql = _TICKET_SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    rows = db.query(sql, [*args, q.limit + 1, q.offset])
    more = len(rows) > q.limit
    return {
        "now": format_instant(now),
        "items": [_ticket_json(r, policy, now) for r in rows[: q.limit]],
        "limit": q.limit,
        "offset": q.offset,
        "next_offset": q.offset + q.limit if more else None,
    }


def explain_ticket(db: Database, policy: Policy, ticket_id: str, now: Micros) -> Explanation | None:
    """`explain` of a stored ticket (`/api/tickets/{id}/explain`, `escalator explain`): its
    clocks as the fold has them in its stored state, up to `now` for those still running."""
    row = db.query_one("SELECT state_json FROM tickets WHERE ticket_id = ?", (ticket_id,))
    if row is None:
        return None
    return explain(state_codec.from_obj(orjson.loads(row[0])), policy, now)


def get_ticket(db: Database, policy: Policy, ticket_id: str, now: Micros) -> dict[str, Any] | None:
    """One ticket with its SLA timeline: lifecycle milestones and every SLA event, by time."""
    row = db.query_one(_TICKET_SELECT + " WHERE ticket_id = ?", (ticket_id,))
    if row is None:
        return None
    ticket = _ticket_json(row, policy, now)
    timeline: list[dict[str, Any]] = []
    for kind, index in (("reported", 6), ("first_response", 7), ("resolved", 8), ("closed", 9)):
        if row[index] is not None:
            timeline.append({"at": row[index], "type": f"ticket.{kind}"})
    events = db.query(
        "SELECT event_id, type, metric, severity, cycle, due_at, at, level, target, threshold, "
        "took_seconds, clock, eta, policy_calendar, round, repeat, before_seconds, "
        "policy_version, agreement_kind, agreement_name, ownership_group FROM sla_events "
        "WHERE ticket_id = ? ORDER BY at, event_id",
        (ticket_id,),
    )
    held: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in db.query(
        "SELECT event_id, group_name, assignee, seconds FROM attributions WHERE ticket_id = ? "
        "ORDER BY event_id, position",
        (ticket_id,),
    ):
        held[a[0]].append({"group": a[1], "assignee": a[2], "seconds": a[3]})
    for e in events:
        entry: dict[str, Any] = {
            "at": e[6], "type": e[1], "event_id": e[0], "metric": e[2], "severity": e[3],
            "cycle": e[4], "due_at": _ts(e[5]),
        }  # fmt: skip
        extra = {"level": e[7], "to": e[8], "threshold": e[9], "took_seconds": e[10],
                 "clock": e[11], "eta": _ts(e[12]), "calendar": e[13], "round": e[14],
                 "repeat": e[15], "before_seconds": e[16], "policy_version": e[17],
                 "agreement_kind": e[18], "agreement": e[19], "ownership_group": e[20],
                 "attribution": held.get(e[0])}  # fmt: skip
        entry.update({k: v for k, v in extra.items() if v is not None})
        timeline.append(entry)
    timeline.sort(key=lambda item: (item["at"], item["type"] != "ticket.reported"))
    for item in timeline:
        item["at"] = format_instant(item["at"])
    ticket["timeline"] = timeline
    ticket["now"] = format_instant(now)
    return ticket


# ------------------------------------------------------------------------------------------
# SLA events


def list_sla_events(
    db: Database,
    since: Micros,
    until: Micros,
    types: list[str] | None = None,
    ticket_id: str | None = None,
    metric: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """SLA events fired in [since, until), newest first, by type, ticket and metric."""
    where = ["at >= ?", "at < ?"]
    args: list[Any] = [since, until]
    if types:
        _in("type", types, where, args)
    if ticket_id is not None:
        where.append("ticket_id = ?")
        args.append(ticket_id)
    if metric is not None:
        where.append("metric = ?")
        args.append(metric)
    rows = db.query(
        "SELECT event_id, ticket_id, type, metric, severity, cycle, due_at, at, level, target, "
        "threshold, took_seconds, clock, eta, policy_name, policy_version, policy_calendar, "
        "round, repeat, before_seconds, agreement_kind, agreement_name, ownership_group "
        f"FROM sla_events WHERE {' AND '.join(where)} "
        "ORDER BY at DESC, event_id LIMIT ? OFFSET ?",
        [*args, limit + 1, offset],
    )
    items = []
    for r in rows[:limit]:
        item = {
            "event_id": r[0], "ticket_id": r[1], "type": r[2], "metric": r[3],
            "severity": r[4], "cycle": r[5], "due_at": format_instant(r[6]),
            "at": format_instant(r[7]),
            "policy": {"name": r[14], "version": r[15], "calendar": r[16]},
        }  # fmt: skip
        extra = {"level": r[8], "to": r[9], "threshold": r[10], "took_seconds": r[11],
                 "clock": r[12], "eta": _ts(r[13]), "round": r[17], "repeat": r[18],
                 "before_seconds": r[19], "agreement_kind": r[20], "agreement": r[21],
                 "ownership_group": r[22]}  # fmt: skip
        item.update({k: v for k, v in extra.items() if v is not None})
        items.append(item)
    return {
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


# ------------------------------------------------------------------------------------------
# Escalations


def list_escalations(
    db: Database,
    since: Micros,
    now: Micros,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
    group: str | None = None,
    customer: str | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    """Escalations in [since, now], newest first, with whether the ticket was resolved since;
    optionally only those of one group's, one customer's or one policy's tickets."""
    sql = (
        "SELECT e.event_id, e.ticket_id, e.level, e.target, e.severity, e.cycle, "
        "e.escalated_at, t.status, t.resolved_at, t.customer_id, t.assignee, t.group_name, "
        "t.policy_name "
        "FROM escalations e LEFT JOIN tickets t ON t.ticket_id = e.ticket_id "
        "WHERE e.escalated_at >= ? AND e.escalated_at <= ?"
    )
    args: list[Any] = [since, now]
    if open_only:
        sql += " AND NOT (t.status IN ('resolved', 'closed') AND t.resolved_at >= e.escalated_at)"
    for column, value in (("t.group_name", group), ("t.customer_id", customer),
                          ("t.policy_name", policy)):  # fmt: skip
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    sql += " ORDER BY e.escalated_at DESC, e.event_id LIMIT ? OFFSET ?"
    rows = db.query(sql, [*args, limit + 1, offset])
    items = []
    for r in rows[:limit]:
        resolved = r[7] in ("resolved", "closed") and r[8] is not None and r[8] >= r[6]
        items.append({
            "event_id": r[0], "ticket_id": r[1], "level": r[2], "to": r[3], "severity": r[4],
            "cycle": r[5], "escalated_at": format_instant(r[6]), "ticket_status": r[7],
            "resolved_since": resolved, "resolved_at": _ts(r[8]) if resolved else None,
            "customer_id": r[9], "assignee": r[10], "group": r[11], "policy": r[12],
        })  # fmt: skip
    return {
        "now": format_instant(now),
        "since": format_instant(since),
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


# ------------------------------------------------------------------------------------------
# Compliance


def report_zone(root: Policy, policy_name: str | None = None) -> ZoneInfo:
    """The time zone whose local days a report counts (a day grouping, "since midnight"):
    that of the named policy's calendar when a view is filtered to one policy (its team's
    days), else that of the policy file's default calendar."""
    return ticket_policy(root, policy_name).calendar.zone


def _stats(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"mean_seconds": None, "median_seconds": None}
    return {
        "mean_seconds": round(statistics.fmean(values) / SECOND, 3),
        "median_seconds": round(statistics.median(values) / SECOND, 3),
    }


def compliance(
    db: Database,
    policy: Policy,
    start: Micros,
    end: Micros,
    group_by: str,
    group: str | None = None,
    customer: str | None = None,
    policy_name: str | None = None,
) -> dict[str, Any]:
    """Per group: tickets reported in [start, end), met/breached per metric, and the mean and
    median time to first response and to resolution on the business and the elapsed clock.

    `compliance` of a metric is met / (met + breached): tickets still running don't count yet.
    Only tickets running under `policy_name` when given (the row's own policy). Days are the
    local days of that policy's calendar when given, else of the file's default calendar
    (`report_zone`). Business times count on the calendar that timed each metric. By
    severity, each metric counts under the severity it was decided under (the `severity` of
    its `sla.met` / `sla.breached`, as on the sla-events topic), so the per-severity totals
    add up to the topic's; `tickets` counts tickets by their current severity.
    """
    end = max(end, start)  # `to` at or before `from`: an empty period (#27 item 7)
    sql = (
        "SELECT severity, customer_id, group_name, reported_at, fr_state, res_state, "
        "fr_elapsed, fr_business, res_elapsed, res_business, policy_name, ticket_id, cycle "
        "FROM tickets "
        "WHERE reported_at >= ? AND reported_at < ?"
    )
    args: list[Any] = [start, end]
    for column, value in (("group_name", group), ("customer_id", customer),
                          ("policy_name", policy_name)):  # fmt: skip
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    rows = db.query(sql, args)
    decided: dict[tuple[str, str, int], int] = {}
    if group_by == "severity":
        for d in db.query(
            "SELECT e.ticket_id, e.metric, e.cycle, e.severity FROM sla_events e "
            "JOIN tickets t ON t.ticket_id = e.ticket_id "
            "WHERE t.reported_at >= ? AND t.reported_at < ? "
            f"AND e.type IN ('sla.met', 'sla.breached') AND {CUSTOMER}",
            (start, end),
        ):
            decided[(d[0], d[1], int(d[2]))] = int(d[3])
    exempt = _exempt_breaches(db, start, end) if policy.clock_rules is not None else set()
    zone = report_zone(policy, policy_name)
    metrics = (("first_response", 4, 6, 7), ("resolution", 5, 8, 9))
    tickets: dict[Any, int] = defaultdict(int)
    groups: dict[Any, dict[str, list[tuple[Any, ...]]]] = defaultdict(
        lambda: {"first_response": [], "resolution": []}
    )

    def key_of(r: tuple[Any, ...]) -> Any:
        if group_by == "severity":
            return r[0]
        if group_by == "customer":
            return r[1] or ""
        if group_by == "group":
            return r[2] or ""
        if group_by == "policy":
            return r[10] or policy.name
        if group_by == "day":
            return datetime.fromtimestamp(r[3] / SECOND, UTC).astimezone(zone).date().isoformat()
        return "all"

    for r in rows:
        key = key_of(r)
        tickets[key] += 1
        for metric, state_i, _, _ in metrics:
            metric_key = key
            if decided and r[state_i] in ("met", "breached"):
                cycle = 0 if metric == "first_response" else int(r[12])
                metric_key = decided.get((r[11], metric, cycle), key)
            groups[metric_key][metric].append(r)
    rounds: dict[Any, dict[str, list[tuple[str, float | None, str | None]]]] = defaultdict(dict)
    if _times_other_metrics(policy):  # the seed's policy does not: no second scan
        rounds = _round_decisions(db, start, end, group_by, {r[11]: key_of(r) for r in rows})
    olas: dict[Any, dict[str, list[tuple[str, float | None, str | None]]]] = defaultdict(dict)
    if policy.olas:  # each OLA's ownership cycles, decided per cycle
        olas = _round_decisions(
            db, start, end, group_by, {r[11]: key_of(r) for r in rows}, agreements=True
        )
    for key in [*tickets, *rounds]:  # a group with tickets is listed even if its metrics
        _ = groups[key]  # count elsewhere
    result = []
    for key in sorted(groups, key=lambda k: (isinstance(k, str), k)):
        entry: dict[str, Any] = {"key": key, "tickets": tickets.get(key, 0)}
        for metric, state_i, elapsed_i, business_i in metrics:
            members = groups[key][metric]
            met = sum(1 for m in members if m[state_i] == "met")
            excused = sum(
                1 for m in members if m[state_i] == "breached" and (m[11], metric) in exempt
            )
            breached = sum(1 for m in members if m[state_i] == "breached") - excused
            entry[metric] = {
                "met": met,
                "breached": breached,
                "breached_exempt": excused,
                "compliance": round(met / (met + breached), 4) if met + breached else None,
                "elapsed": _stats([m[elapsed_i] for m in members if m[elapsed_i] is not None]),
                "business": _stats([m[business_i] for m in members if m[business_i] is not None]),
            }
        entry["metrics"] = {
            metric: _round_compliance(decisions) for metric, decisions in rounds[key].items()
        }
        if olas:
            entry["agreements"] = {
                name: _round_compliance(decisions) for name, decisions in olas[key].items()
            }
        result.append(entry)
    return {
        "from": format_instant(start),
        "to": format_instant(end),
        "group_by": group_by,
        "timezone": str(zone),
        "groups": result,
    }


CUSTOMER = "COALESCE(e.agreement_kind, 'sla') = 'sla'"
"""SQL: an SLA event (alias `e`) of the customer SLA (not an OLA's)."""


def attribution(
    db: Database,
    start: Micros,
    end: Micros,
    kind: str = "sla.breached",
    agreement: str | None = None,
    agreement_kind: str | None = None,
) -> dict[str, Any]:
    """Who held the tickets while metrics' clocks ran, summed over the `kind` events fired in
    [start, end): counted seconds and events per group and per assignee, most first."""
    end = max(end, start)
    where = "type = ? AND at >= ? AND at < ?"
    args: list[Any] = [kind, start, end]
    for column, value in (("agreement_name", agreement), ("agreement_kind", agreement_kind)):
        if value is not None:
            where += f" AND {column} = ?"
            args.append(value)
    result: dict[str, Any] = {"from": format_instant(start), "to": format_instant(end),
                              "type": kind}  # fmt: skip
    for label, column in (("groups", "group_name"), ("assignees", "assignee")):
        rows = db.query(
            f"SELECT {column}, SUM(seconds), COUNT(DISTINCT event_id) FROM attributions "
            f"WHERE {where} GROUP BY {column} ORDER BY 2 DESC, 1",
            args,
        )
        name = label[:-1]
        result[label] = [
            {name: r[0], "seconds": round(float(r[1]), 6), "events": int(r[2])} for r in rows
        ]
    return result


def _exempt_breaches(db: Database, start: Micros, end: Micros) -> set[tuple[str, str]]:
    """(ticket, metric) of the breaches whose latest reason (`sla.breach_reason`) the policy
    exempts, among tickets reported in [start, end): they count as breached-exempt, in
    neither `met` nor `breached` (nor `compliance`)."""
    latest: dict[tuple[str, str], bool] = {}
    for e in db.query(
        "SELECT e.ticket_id, e.metric, e.exempt FROM sla_events e "
        "JOIN tickets t ON t.ticket_id = e.ticket_id "
        "WHERE t.reported_at >= ? AND t.reported_at < ? AND e.type = 'sla.breach_reason' "
        "ORDER BY e.at, e.event_id",
        (start, end),
    ):
        latest[(e[0], e[1])] = bool(e[2])
    return {key for key, excused in latest.items() if excused}


def _times_other_metrics(root: Policy) -> bool:
    """Whether any policy of the file times a metric beyond first response and resolution."""
    return any(
        rule.metric not in METRICS
        for policy in (root, *root.policies)
        for rules in policy.severities.values()
        for rule in rules.clocked
    )


def _round_decisions(
    db: Database,
    start: Micros,
    end: Micros,
    group_by: str,
    keys: dict[str, Any],
    agreements: bool = False,
) -> dict[Any, dict[str, list[tuple[str, float | None, str | None]]]]:
    """Per group and metric, the decided rounds (type, took_seconds, clock) of the metrics
    counted in rounds and any other metric beyond first response and resolution, from their
    `sla.met` / `sla.breached` events: one decision per round. `keys`: the group of each
    ticket the report counts (by severity: the severity the round was decided under). With
    `agreements`, the OLAs' ownership cycles instead, per OLA (by its name)."""
    found: dict[Any, dict[str, list[tuple[str, float | None, str | None]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    which = (
        "AND e.agreement_kind = 'ola'"
        if agreements
        else f"AND e.metric NOT IN ('first_response', 'resolution') AND {CUSTOMER}"
    )
    for e in db.query(
        "SELECT e.ticket_id, e.metric, e.type, e.severity, e.took_seconds, e.clock, "
        "e.agreement_name FROM sla_events e JOIN tickets t ON t.ticket_id = e.ticket_id "
        "WHERE t.reported_at >= ? AND t.reported_at < ? "
        f"AND e.type IN ('sla.met', 'sla.breached') {which}",
        (start, end),
    ):
        if e[0] not in keys:  # filtered out (group, customer, policy)
            continue
        key = int(e[3]) if group_by == "severity" else keys[e[0]]
        found[key][e[6] if agreements else e[1]].append((e[2], e[4], e[5]))
    return found


def _round_compliance(decisions: list[tuple[str, float | None, str | None]]) -> dict[str, Any]:
    """`MetricCompliance` of a rounded metric: each round met or breached counts once; the
    times are the met rounds' (`took_seconds`, on the clock that timed them)."""
    met = sum(1 for d in decisions if d[0] == "sla.met")
    breached = len(decisions) - met
    took = {
        clock: [round(d[1] * SECOND) for d in decisions if d[1] is not None and d[2] == clock]
        for clock in ("elapsed", "business")
    }
    return {
        "met": met,
        "breached": breached,
        "compliance": round(met / (met + breached), 4) if met + breached else None,
        "elapsed": _stats(took["elapsed"]),
        "business": _stats(took["business"]),
    }


# ------------------------------------------------------------------------------------------
# The wall screen

OPEN = "status IN ('open', 'paused')"
BREACHED = "(COALESCE(sla_state, '') = 'breached' OR COALESCE(next_due_at, ?) <= ?)"
"""Breached now: a metric breached, or a running deadline passed before its breach arrived."""


class DashboardQuery(Params):
    """`/api/dashboard`: the wall screen of one team (filters come from the page's URL)."""

    group: Name | None = Field(None, description="Only this assigned group's tickets.")
    customer: Name | None = Field(None, description="Only this customer's tickets.")
    policy: Name | None = Field(None, description="Only tickets running under this policy (name).")


def _filters(q: DashboardQuery, prefix: str = "") -> tuple[str, list[Any]]:
    """The view's filters on the tickets table (`prefix`: its alias); the policy filter is on
    each ticket's own policy (`policy_name`)."""
    sql = ""
    args: list[Any] = []
    for column, value in (("group_name", q.group), ("customer_id", q.customer),
                          ("policy_name", q.policy)):  # fmt: skip
        if value is not None:
            sql += f" AND {prefix}{column} = ?"
            args.append(value)
    return sql, args


def _count(db: Database, sql: str, args: list[Any]) -> int:
    row = db.query_one(sql, args)
    return int(row[0]) if row and row[0] is not None else 0


def board_tiles(db: Database, policy: Policy, q: DashboardQuery, now: Micros) -> dict[str, Any]:
    """The wall screen's counts at `now`: open tickets, breached now, at risk within the hour,
    tickets escalated in the last 24 hours, and today's compliance (SLA outcomes of every
    metric decided since local midnight, `report_zone`: met / (met + breached))."""
    where, args = _filters(q)
    base = f"SELECT COUNT(*) FROM tickets WHERE {OPEN}{where}"
    opened = _count(db, base, args)
    breached = _count(db, f"{base} AND {BREACHED}", [*args, MAX_INSTANT, now])
    at_risk = _count(
        db,
        f"{base} AND COALESCE(sla_state, '') <> 'breached' AND next_due_at > ? "
        "AND next_due_at <= ?",
        [*args, now, now + HOUR],
    )
    t_where, t_args = _filters(q, "t.")
    escalated = _count(
        db,
        "SELECT COUNT(DISTINCT e.ticket_id) FROM escalations e "
        "LEFT JOIN tickets t ON t.ticket_id = e.ticket_id "
        f"WHERE e.escalated_at > ? AND e.escalated_at <= ?{t_where}",
        [now - DAY, now, *t_args],
    )
    zone = report_zone(policy, q.policy)
    local = datetime.fromtimestamp(now / SECOND, UTC).astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    today = round(midnight.timestamp() * SECOND)
    outcomes = db.query(
        "SELECT s.type, COUNT(*) FROM sla_events s LEFT JOIN tickets t "
        "ON t.ticket_id = s.ticket_id WHERE s.type IN ('sla.met', 'sla.breached') "
        "AND COALESCE(s.agreement_kind, 'sla') = 'sla' "
        f"AND s.at >= ? AND s.at <= ?{t_where} "
        "GROUP BY s.type",
        [today, now, *t_args],
    )
    counts = {row[0]: int(row[1]) for row in outcomes}
    met, missed = counts.get("sla.met", 0), counts.get("sla.breached", 0)
    return {
        "open": opened,
        "breached": breached,
        "at_risk_1h": at_risk,
        "escalated_24h": escalated,
        "compliance_today": round(met / (met + missed), 4) if met + missed else None,
        "met_today": met,
        "breached_today": missed,
    }


def board_tickets(
    db: Database, policy: Policy, q: DashboardQuery, now: Micros, limit: int = 40
) -> list[dict[str, Any]]:
    """Open tickets for the wall: breached ones first (longest overdue first), then the rest
    by next deadline (paused ones, which have none, last). A breached ticket has no next
    running deadline, which is why it needs its own query rather than the `due` order."""
    where, args = _filters(q)
    breached = db.query(
        f"{_TICKET_SELECT} WHERE {OPEN}{where} AND {BREACHED} ORDER BY "
        "CASE WHEN fr_state = 'breached' THEN fr_due_at WHEN res_state = 'breached' "
        "THEN res_due_at ELSE next_due_at END, ticket_id LIMIT ?",
        [*args, MAX_INSTANT, now, limit],
    )
    rest = db.query(
        f"{_TICKET_SELECT} WHERE {OPEN}{where} AND NOT {BREACHED} "
        "ORDER BY next_due_at NULLS LAST, ticket_id LIMIT ?",
        [*args, MAX_INSTANT, now, max(limit - len(breached), 0)],
    )
    return [_ticket_json(row, policy, now) for row in [*breached, *rest]]


def dashboard_board(db: Database, policy: Policy, q: DashboardQuery, now: Micros) -> dict[str, Any]:
    """Everything the wall screen shows but the compliance charts, in one round trip."""
    return {
        "now": format_instant(now),
        "filters": {"group": q.group, "customer": q.customer, "policy": q.policy},
        "tiles": board_tiles(db, policy, q, now),
        "open": board_tickets(db, policy, q, now),
        "escalations": list_escalations(
            db, now - DAY, now, limit=50, group=q.group, customer=q.customer, policy=q.policy
        )["items"],
    }


def policy_history(db: Database) -> dict[str, Any]:
    """The rollout history (issue #22), from the `policy.activated` audit records: per version,
    in the order they took effect, its digest, mode, instant, the partitions that activated it
    and the tickets moved to it and kept on their own version, summed over those partitions."""
    rows = db.query(
        "SELECT version, MIN(name), MIN(digest), MIN(mode), MIN(at), COUNT(*), "
        "SUM(tickets_moved), SUM(tickets_kept) FROM policy_activations "
        "GROUP BY version ORDER BY MIN(at), version"
    )
    return {
        "activations": [
            {
                "version": r[0],
                "name": r[1],
                "digest": r[2],
                "mode": r[3],
                "at": _ts(int(r[4])),
                "partitions": int(r[5]),
                "tickets_moved": int(r[6]),
                "tickets_kept": int(r[7]),
            }
            for r in rows
        ]
    }
