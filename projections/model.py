"""Pure projection logic: ticket events and SLA events in, read-model rows out. No I/O.

A ticket row is a function of (the core TicketState folded from the ticket's events, the
ticket's own extras such as the assignee, the set of SLA events seen for it). It does not
depend on how the two topics interleave, so a rebuild (which reads them in another
interleaving) yields the same rows as the live projector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from events.instants import Micros, parse_instant
from events.records import TicketEvent
from streams.sla import state_codec
from streams.sla.clocks import Clock
from streams.sla.fold import handle, policy_of
from streams.sla.rules import ELAPSED, MetricName, Policy
from streams.sla.spans import metric_segments
from streams.sla.state import UNOPENED, TicketState
from streams.sla.status import MetricStatus, sla_status
from streams.sla.ticket_calendars import metric_clock as metric_clock_of

METRICS: tuple[MetricName, ...] = ("first_response", "resolution")
"""The metrics with columns of their own on `tickets` (fr_*, res_*: indexes, compliance, rows
written before migration 6). A ticket timed on any other metric has every metric, these
included, listed in `metrics_json` (NULL otherwise)."""
_PREFIX = {"first_response": "fr", "resolution": "res"}
_METRIC_OF: dict[str, MetricName] = {"fr": "first_response", "res": "resolution"}
STATE_RANK = {"breached": 5, "warning": 4, "on_track": 3, "paused": 2, "met": 1, "stopped": 0}
"""How bad a metric state is: a ticket's `sla_state` is its worst metric's."""

TICKET_COLUMNS: tuple[str, ...] = (
    "ticket_id", "status", "severity", "customer_id", "assignee", "group_name",
    "reported_at", "first_response_at", "resolved_at", "closed_at", "cycle", "last_event_at",
    "fr_state", "fr_due_at", "fr_paused_remaining", "fr_clock",
    "res_state", "res_due_at", "res_paused_remaining", "res_clock",
    "sla_state", "next_due_at", "escalation_level",
    "fr_elapsed", "fr_business", "res_elapsed", "res_business",
    "policy_version", "state_json", "policy_name", "fr_calendar", "res_calendar",
    "metrics_json",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SlaFact:
    """What a ticket row needs to know of one SLA event."""

    type: str
    metric: str
    cycle: int
    level: int | None = None
    round: int | None = None
    """The round of a rounded metric's event (next_response, periodic_update)."""


@dataclass(slots=True)
class Extras:
    """Ticket facts the SLA core does not keep: who has it, when it was closed."""

    assignee: str | None = None
    group_name: str | None = None
    closed_at: Micros | None = None


@dataclass(slots=True)
class FoldResult:
    """The result of applying one ticket event to a stored ticket."""

    state: TicketState | None
    extras: Extras
    kind: str
    """`applied`, `duplicate` or `rejected`."""
    reason: str | None = None
    changed: bool = field(default=True)


def fold_ticket(
    state: TicketState | None, extras: Extras | None, event: TicketEvent, policy: Policy
) -> FoldResult:
    """Apply one ticket event with the core's `handle`; its emitted SLA events are ignored.

    The sla-events topic is the source of truth for warnings, breaches and met; the fold here
    only tracks the clocks (deadlines, pauses, cycles) and the ticket's own facts.
    """
    outcome = handle(state, event, policy)
    if outcome.duplicate:
        return FoldResult(state, extras or Extras(), "duplicate", changed=False)
    held = outcome.state
    if outcome.parked and held is not None and held.status == UNOPENED:
        # The engine waits for the ticket's open; a projection keeps no placeholder ticket.
        reason = next(entry[3] for entry in held.parked or () if entry[1] == event.event_id)
        return FoldResult(state, extras or Extras(), "rejected", reason, changed=False)
    if outcome.state is None:
        return FoldResult(state, extras or Extras(), "rejected", outcome.rejected, changed=False)
    if outcome.state is not state:  # a new ticket (first open, or an id reused after purge)
        extras = Extras()
    extras = extras or Extras()
    if outcome.rejected is not None:
        # Timers may have fired inside handle before the rejection: the state still moved.
        return FoldResult(outcome.state, extras, "rejected", outcome.rejected)
    if event.type in ("ticket.assigned", "ticket.opened"):  # both state the assignment
        extras = Extras(event.assignee, event.group, extras.closed_at)
    elif event.type == "ticket.updated" and event.has_group:  # routing moved it to a group
        extras = Extras(extras.assignee, event.group, extras.closed_at)
    elif event.type == "ticket.closed" and extras.closed_at is None:
        extras = Extras(extras.assignee, extras.group_name, outcome.state.last_event_at)
    return FoldResult(outcome.state, extras, "applied")


def sla_fact(record: dict[str, Any]) -> SlaFact:
    level, number = record.get("level"), record.get("round")
    return SlaFact(record["type"], record["metric"], int(record["cycle"]), level, number)


def _consumed(state: TicketState, metric: MetricName, policy: Policy) -> Micros:
    """Clock time the metric's current run (its round, for a rounded one) has used so far."""
    rule = policy.severities[state.severity].metric(metric)
    assert rule is not None
    clock = metric_clock_of(state, policy, rule)
    total = 0
    for start, end in metric_segments(state, metric, rule):
        stop = state.last_event_at if end is None else min(end, state.last_event_at)
        if stop > start:
            total += clock.between(start, stop)
    return total


def _combine(core_state: str, flags: set[str]) -> str:
    """The metric's state from the core's view (clocks) and the SLA events (outcomes)."""
    if core_state == "breached" or "sla.breached" in flags:
        return "breached"
    if core_state in ("met", "stopped"):
        return "met" if core_state == "met" or "sla.met" in flags else "stopped"
    if core_state == "paused":
        return "paused"
    if core_state == "warning" or "sla.warning" in flags:
        return "warning"
    return "on_track"


def _flags(facts: list[SlaFact], status: MetricStatus, cycle: int) -> set[str]:
    """Types of the SLA events seen for the metric's current run: first response's of any
    cycle, a rounded metric's of its round, resolution's of the current cycle."""
    metric = status.metric
    if status.round is not None:
        return {f.type for f in facts if f.metric == metric and f.round == status.round}
    if metric == "first_response":
        return {f.type for f in facts if f.metric == metric}
    return {f.type for f in facts if f.metric == metric and f.cycle == cycle}


def ticket_row(
    state: TicketState, extras: Extras, facts: list[SlaFact], policy: Policy
) -> dict[str, Any]:
    """The `tickets` row of a ticket: a pure function of its state, extras and SLA events."""
    policy = policy_of(state, policy)  # of the file's policies, the ticket's
    statuses = {s.metric: s for s in sla_status(state, policy, state.last_event_at)}
    row: dict[str, Any] = {
        "ticket_id": state.ticket_id,
        "status": state.status,
        "severity": state.severity,
        "customer_id": state.customer_id,
        "assignee": extras.assignee,
        "group_name": extras.group_name,
        "reported_at": state.reported_at,
        "first_response_at": state.responded_at,
        "resolved_at": None,
        "closed_at": extras.closed_at if state.status == "closed" else None,
        "cycle": state.cycle,
        "last_event_at": state.last_event_at,
        "policy_version": state.policy_version,
        "policy_name": policy.name,
        "state_json": orjson.dumps(state_codec.to_obj(state)).decode(),
    }
    if state.status in ("resolved", "closed") and state.resolution_spans:
        row["resolved_at"] = state.resolution_spans[-1][1]
    worst: str | None = None
    next_due: Micros | None = None
    rules = policy.severities.get(state.severity)
    for metric in METRICS:
        p = _PREFIX[metric]
        row[f"{p}_state"] = row[f"{p}_due_at"] = row[f"{p}_paused_remaining"] = None
        row[f"{p}_clock"] = row[f"{p}_calendar"] = None
    listed: list[dict[str, Any]] = []
    for status in statuses.values():
        metric = status.metric
        rule = None if rules is None else rules.metric(metric)
        if rule is None:
            continue
        current = _combine(status.state, _flags(facts, status, state.cycle))
        paused_left = None
        if status.state == "paused":
            paused_left = status.target - _consumed(state, metric, policy)
        listed.append({
            "metric": metric, "state": current, "due_at": status.due_at,
            "paused_remaining": paused_left, "clock": status.clock,
            "calendar": status.calendar, "round": status.round,
        })  # fmt: skip
        prefix = _PREFIX.get(metric)
        if prefix is not None:
            row[f"{prefix}_state"] = current
            row[f"{prefix}_due_at"] = status.due_at
            row[f"{prefix}_clock"] = status.clock
            row[f"{prefix}_calendar"] = status.calendar
            row[f"{prefix}_paused_remaining"] = paused_left
        if worst is None or STATE_RANK[current] > STATE_RANK[worst]:
            worst = current
        if current in ("on_track", "warning") and status.due_at is not None:
            next_due = status.due_at if next_due is None else min(next_due, status.due_at)
    # Only a ticket timed on more than its columns' metrics needs the list (the seed's never is:
    # its row stays as cheap to write as before migration 6; queries read the columns then).
    extra = any(m["metric"] not in _PREFIX for m in listed)
    row["metrics_json"] = orjson.dumps(listed).decode() if extra else None
    row["sla_state"] = worst
    row["next_due_at"] = next_due
    levels = [f.level for f in facts if f.type == "ticket.escalated" and f.level is not None]
    row["escalation_level"] = max(levels, default=0)
    for p, done in (("fr", row["first_response_at"]), ("res", row["resolved_at"])):
        # business time on the calendar that times the metric (its own, else the policy's)
        calendar: Clock = policy.calendars.get(row[f"{p}_calendar"] or "", policy.calendar)
        rule = None if rules is None else rules.metric(_METRIC_OF[p])
        if rule is not None and rule.choice:  # the ticket's calendars, as they changed
            calendar = metric_clock_of(state, policy, rule)
        row[f"{p}_elapsed"] = None if done is None else done - state.reported_at
        row[f"{p}_business"] = None if done is None else calendar.between(state.reported_at, done)
    return row


SLA_EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "ticket_id", "type", "metric", "severity", "cycle", "due_at", "at", "level",
    "target", "threshold", "took_seconds", "clock", "eta", "policy_name", "policy_version",
    "policy_calendar", "round", "repeat", "before_seconds", "agreement_kind", "agreement_name",
    "ownership_group", "reason", "actor", "exempt",
)  # fmt: skip


def sla_event_row(record: dict[str, Any]) -> dict[str, Any]:
    """The `sla_events` row of a validated SLA event (a dict in the outbound contract's shape)."""
    eta = record.get("eta")
    agreement = record.get("agreement")
    return {
        "event_id": record["event_id"],
        "ticket_id": record["ticket_id"],
        "type": record["type"],
        "metric": record["metric"],
        "severity": record["severity"],
        "cycle": record["cycle"],
        "due_at": parse_instant(record["due_at"]),
        "at": parse_instant(record["at"]),
        "level": record.get("level"),
        "target": record.get("to"),
        "threshold": record.get("threshold"),
        "took_seconds": record.get("took_seconds"),
        "clock": record.get("clock"),
        "eta": None if eta is None else parse_instant(eta),
        "policy_name": record["policy"]["name"],
        "policy_version": record["policy"]["version"],
        "policy_calendar": record["policy"].get("calendar"),
        "round": record.get("round"),
        "repeat": record.get("repeat"),
        "before_seconds": record.get("before_seconds"),
        "agreement_kind": None if agreement is None else agreement["kind"],
        "agreement_name": None if agreement is None else agreement["name"],
        "ownership_group": record.get("ownership_group"),
        "reason": record.get("reason"),
        "actor": record.get("actor"),
        "exempt": None if record.get("exempt") is None else int(record["exempt"]),
    }


ATTRIBUTION_COLUMNS: tuple[str, ...] = (
    "event_id", "position", "ticket_id", "type", "metric", "agreement_kind", "agreement_name",
    "at", "group_name", "assignee", "seconds",
)  # fmt: skip


def attribution_rows(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The `attributions` rows of an SLA event (none when it carries no attribution), in
    ATTRIBUTION_COLUMNS order; the customer SLA's are named by its policy."""
    held = record.get("attribution")
    if not held:
        return []
    agreement = record.get("agreement") or {"kind": "sla", "name": record["policy"]["name"]}
    at = parse_instant(record["at"])
    return [
        (record["event_id"], position, record["ticket_id"], record["type"], record["metric"],
         agreement["kind"], agreement["name"], at, h["group"], h["assignee"], h["seconds"])
        for position, h in enumerate(held)
    ]  # fmt: skip


def ticket_policy(root: Policy, name: str | None) -> Policy:
    """The policy a stored ticket runs under, by the name on its row (`tickets.policy_name`):
    one of the file's policies, or the file's only one (also for a name the file no longer
    has, and for rows written before the column existed)."""
    return root.by_name.get(name or "", root)


def metric_clock(policy: Policy, clock: str | None, calendar: str | None) -> Clock | None:
    """The clock that times a stored metric: elapsed, or the business calendar its row names
    (`fr_calendar`, `res_calendar`; a name of the policy file's calendars). A row without one
    (written before the column existed) counts on its policy's calendar. None for no clock."""
    if clock == "elapsed":
        return ELAPSED
    if clock != "business":
        return None
    return policy.calendars.get(calendar or "", policy.calendar)


REMAINING_HORIZON: Micros = 10 * 366 * 24 * 3600 * 1_000_000
"""Ten years and a few days: remaining times further out are shown as this span's."""


def remaining(
    state: str | None,
    due_at: Micros | None,
    paused_remaining: Micros | None,
    clock: Clock | None,
    now: Micros,
) -> Micros | None:
    """Time left at `now` on the metric's own clock (`metric_clock`), in microseconds,
    negative once overdue; query-time only. Counted over at most `REMAINING_HORIZON` of
    elapsed time from `now` or from the deadline: a business calendar is built year by year,
    so an unbounded span (a `now` of 7923, found by schemathesis: 31 s for one request) would
    cost a year's table for every year between."""
    if state == "paused":
        return paused_remaining
    if state in ("met", "stopped") or due_at is None or clock is None:
        return None
    if due_at >= now:
        return clock.between(now, min(due_at, now + REMAINING_HORIZON))
    return -clock.between(due_at, min(now, due_at + REMAINING_HORIZON))
