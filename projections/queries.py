"""The ops questions as queries over the read models, shared by the HTTP API and the CLI.

Parameters are validated here (a `BadParameter` names the offending one), SQL is portable,
and everything time-dependent (`remaining`, "breaching within", "last 24 hours") is computed
against an explicit `now`, so answers are reproducible in tests.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from events.instants import DAY, HOUR, MINUTE, SECOND, Micros, format_instant, parse_instant
from projections.db import Database
from projections.model import METRICS, STATE_RANK, remaining
from streams.sla.rules import Policy

MAX_LIMIT = 1000
TICKET_STATUSES = ("open", "paused", "resolved", "closed")
SLA_STATES = tuple(STATE_RANK)
SORTS = {
    "due": "next_due_at NULLS LAST, ticket_id",
    "-due": "next_due_at DESC NULLS LAST, ticket_id",
    "reported": "reported_at, ticket_id",
    "-reported": "reported_at DESC, ticket_id",
    "severity": "severity, next_due_at NULLS LAST, ticket_id",
    "ticket_id": "ticket_id",
}
GROUPINGS = ("severity", "customer", "day", "group", "none")


class BadParameter(ValueError):
    """An invalid query parameter; `parameter` names it (the API answers 400 with it)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


_WINDOW = re.compile(r"^(\d+)(w|d|h|m|s)$")
_UNIT = {"w": 7 * DAY, "d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}


def parse_window(name: str, text: str) -> Micros:
    """A positive duration such as `90s`, `15m`, `1h`, `2d`, `1w` (elapsed time)."""
    match = _WINDOW.match(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise BadParameter(name, f"expected a duration such as 30m, 1h or 2d, got {text[:40]!r}")
    return int(match.group(1)) * _UNIT[match.group(2)]


def parse_when(name: str, text: str, now: Micros) -> Micros:
    """An instant: RFC 3339 with an offset, or a duration meaning that long before `now`."""
    if _WINDOW.match(text.strip().lower()):
        return now - parse_window(name, text)
    try:
        return parse_instant(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(
            name, f"expected an RFC 3339 time with offset or a duration, got {text[:40]!r}"
        ) from None


def parse_int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"expected an integer, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


def parse_choices(name: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    for value in values:
        if value not in allowed:
            raise BadParameter(name, f"{value[:40]!r} is not one of {', '.join(allowed)}")
    if not values:
        raise BadParameter(name, "empty")
    return values


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise BadParameter(name, f"expected true or false, got {text[:40]!r}")


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
    "res_state, res_due_at, res_paused_remaining, res_clock, last_event_at FROM tickets"
)


def _ticket_json(row: tuple[Any, ...], policy: Policy, now: Micros) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for index, metric in zip((14, 18), METRICS, strict=True):
        state, due, paused_left, clock = row[index : index + 4]
        if state is None:
            continue
        left = remaining(state, due, paused_left, clock, policy, now)
        metrics[metric] = {
            "state": state,
            "due_at": _ts(due),
            "remaining_seconds": _secs(left),
            "clock": clock,
        }
    return {
        "ticket_id": row[0],
        "status": row[1],
        "severity": row[2],
        "customer_id": row[3],
        "assignee": row[4],
        "group": row[5],
        "reported_at": _ts(row[6]),
        "first_response_at": _ts(row[7]),
        "resolved_at": _ts(row[8]),
        "closed_at": _ts(row[9]),
        "cycle": row[10],
        "sla_state": row[11],
        "next_due_at": _ts(row[12]),
        "escalation_level": row[13],
        "last_event_at": _ts(row[22]),
        "metrics": metrics,
    }


@dataclass(slots=True)
class TicketQuery:
    status: list[str] | None = None
    sla_state: list[str] | None = None
    severity: list[int] | None = None
    customer: str | None = None
    group: str | None = None
    assignee: str | None = None
    breaching_within: Micros | None = None
    sort: str = "due"
    limit: int = 50
    offset: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TicketQuery:
        """Validate API/CLI parameters; unknown parameters are rejected to catch typos."""
        known = {"status", "sla_state", "severity", "customer", "group", "assignee",
                 "breaching_within", "sort", "limit", "offset", "now"}  # fmt: skip
        for key in params:
            if key not in known:
                raise BadParameter(key, "unknown parameter")
        q = cls()
        if "status" in params:
            q.status = parse_choices("status", params["status"], TICKET_STATUSES)
        if "sla_state" in params:
            q.sla_state = parse_choices("sla_state", params["sla_state"], SLA_STATES)
        if "severity" in params:
            q.severity = [
                parse_int("severity", s, 1, 4) for s in params["severity"].split(",") if s.strip()
            ]
            if not q.severity:
                raise BadParameter("severity", "empty")
        q.customer = params.get("customer") or None
        q.group = params.get("group") or None
        q.assignee = params.get("assignee") or None
        if "breaching_within" in params:
            q.breaching_within = parse_window("breaching_within", params["breaching_within"])
        if "sort" in params:
            if params["sort"] not in SORTS:
                raise BadParameter("sort", f"must be one of {', '.join(SORTS)}")
            q.sort = params["sort"]
        if "limit" in params:
            q.limit = parse_int("limit", params["limit"], 1, MAX_LIMIT)
        if "offset" in params:
            q.offset = parse_int("offset", params["offset"], 0, 10**9)
        return q


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
                          ("assignee", q.assignee)):  # fmt: skip
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
        "took_seconds, clock, eta FROM sla_events WHERE ticket_id = ? ORDER BY at, event_id",
        (ticket_id,),
    )
    for e in events:
        entry: dict[str, Any] = {
            "at": e[6], "type": e[1], "event_id": e[0], "metric": e[2], "severity": e[3],
            "cycle": e[4], "due_at": _ts(e[5]),
        }  # fmt: skip
        extra = {"level": e[7], "to": e[8], "threshold": e[9], "took_seconds": e[10],
                 "clock": e[11], "eta": _ts(e[12])}  # fmt: skip
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

SLA_EVENT_TYPES = (
    "sla.warning", "sla.breached", "sla.met", "ticket.escalated",
    "customer.notification_required",
)  # fmt: skip


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
        "threshold, took_seconds, clock, eta, policy_name, policy_version FROM sla_events "
        f"WHERE {' AND '.join(where)} ORDER BY at DESC, event_id LIMIT ? OFFSET ?",
        [*args, limit + 1, offset],
    )
    items = []
    for r in rows[:limit]:
        item = {
            "event_id": r[0], "ticket_id": r[1], "type": r[2], "metric": r[3],
            "severity": r[4], "cycle": r[5], "due_at": format_instant(r[6]),
            "at": format_instant(r[7]), "policy": {"name": r[14], "version": r[15]},
        }  # fmt: skip
        extra = {"level": r[8], "to": r[9], "threshold": r[10], "took_seconds": r[11],
                 "clock": r[12], "eta": _ts(r[13])}  # fmt: skip
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
) -> dict[str, Any]:
    """Escalations since `since`, newest first, with whether the ticket was resolved since."""
    sql = (
        "SELECT e.event_id, e.ticket_id, e.level, e.target, e.severity, e.cycle, "
        "e.escalated_at, t.status, t.resolved_at, t.customer_id, t.assignee, t.group_name "
        "FROM escalations e LEFT JOIN tickets t ON t.ticket_id = e.ticket_id "
        "WHERE e.escalated_at >= ?"
    )
    if open_only:
        sql += " AND NOT (t.status IN ('resolved', 'closed') AND t.resolved_at >= e.escalated_at)"
    sql += " ORDER BY e.escalated_at DESC, e.event_id LIMIT ? OFFSET ?"
    rows = db.query(sql, (since, limit + 1, offset))
    items = []
    for r in rows[:limit]:
        resolved = r[7] in ("resolved", "closed") and r[8] is not None and r[8] >= r[6]
        items.append({
            "event_id": r[0], "ticket_id": r[1], "level": r[2], "to": r[3], "severity": r[4],
            "cycle": r[5], "escalated_at": format_instant(r[6]), "ticket_status": r[7],
            "resolved_since": resolved, "resolved_at": _ts(r[8]) if resolved else None,
            "customer_id": r[9], "assignee": r[10], "group": r[11],
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


def _stats(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"mean_seconds": None, "median_seconds": None}
    return {
        "mean_seconds": round(statistics.fmean(values) / SECOND, 3),
        "median_seconds": round(statistics.median(values) / SECOND, 3),
    }


def compliance(
    db: Database, policy: Policy, start: Micros, end: Micros, group_by: str
) -> dict[str, Any]:
    """Per group: tickets reported in [start, end), met/breached per metric, and the mean and
    median time to first response and to resolution on the business and the elapsed clock.

    `compliance` of a metric is met / (met + breached): tickets still running don't count yet.
    Days are the policy calendar's local days.
    """
    if group_by not in GROUPINGS:
        raise BadParameter("group_by", f"must be one of {', '.join(GROUPINGS)}")
    if end <= start:
        raise BadParameter("from", "must be before 'to'")
    rows = db.query(
        "SELECT severity, customer_id, group_name, reported_at, fr_state, res_state, "
        "fr_elapsed, fr_business, res_elapsed, res_business FROM tickets "
        "WHERE reported_at >= ? AND reported_at < ?",
        (start, end),
    )
    zone = ZoneInfo(policy.calendar.timezone)
    groups: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        if group_by == "severity":
            key: Any = r[0]
        elif group_by == "customer":
            key = r[1] or ""
        elif group_by == "group":
            key = r[2] or ""
        elif group_by == "day":
            key = datetime.fromtimestamp(r[3] / SECOND, UTC).astimezone(zone).date().isoformat()
        else:
            key = "all"
        groups[key].append(r)
    result = []
    for key in sorted(groups, key=lambda k: (isinstance(k, str), k)):
        members = groups[key]
        entry: dict[str, Any] = {"key": key, "tickets": len(members)}
        for metric, state_i, elapsed_i, business_i in (
            ("first_response", 4, 6, 7),
            ("resolution", 5, 8, 9),
        ):
            met = sum(1 for m in members if m[state_i] == "met")
            breached = sum(1 for m in members if m[state_i] == "breached")
            entry[metric] = {
                "met": met,
                "breached": breached,
                "compliance": round(met / (met + breached), 4) if met + breached else None,
                "elapsed": _stats([m[elapsed_i] for m in members if m[elapsed_i] is not None]),
                "business": _stats([m[business_i] for m in members if m[business_i] is not None]),
            }
        result.append(entry)
    return {
        "from": format_instant(start),
        "to": format_instant(end),
        "group_by": group_by,
        "timezone": str(zone),
        "groups": result,
    }
