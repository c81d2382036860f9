"""Event time (issue #9): the watermark, late events and their corrections, ordering, pauses.

Inputs from the issue are tests with the issue's values. The policy of the issue: business
hours 09:00-17:00 America/Toronto Mon-Fri; Sev2 first response 1h; Sev4 first response 4h,
pausable. 2026-02-04 is a Wednesday.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, get_args

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.durations import parse_delay
from events.instants import DAY, HOUR, MINUTE, SECOND, Micros, format_instant, parse_instant
from events.outbound import sla_event_adapter
from events.samples import generate_history
from streams.sla.corrections import CORRECTION_HORIZON
from streams.sla.policy import load_policy, parse_policy
from streams.sla.replay import DEFAULT_MAX_DELAY, Replayer, replay_lines
from streams.sla.rules import MetricName, Policy

ISSUE_POLICY = parse_policy(
    """
name = "issue-9"
version = "1"
[calendar]
timezone = "America/Toronto"
open = "09:00"
close = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
[severity.2]
first_response = { target = "1h", clock = "business" }
[severity.4]
first_response = { target = "4h", pausable = true }
""",
    "issue-9.toml",
)
SEED_POLICY = load_policy()


def line(event_id: str, ticket: str, kind: str, when: str, **fields: Any) -> bytes:
    """An inbound line; `when` is a Toronto wall time on 2026-02-04 (UTC-05:00), e.g. '09:30'."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "ticket_id": ticket,
            "type": f"ticket.{kind}",
            "occurred_at": f"2026-02-04T{when}:00-05:00",
            **fields,
        }
    )


YX = [
    line("y1", "Y", "opened", "09:00", severity=2),
    line("x1", "X", "opened", "09:30", severity=2),
    line("x2", "X", "assigned", "10:05", assignee="a", group="g"),
    line("y2", "Y", "responded", "09:55"),
]
"""The issue's lines, in the issue's order."""


def replay(lines: list[bytes], policy: Policy = ISSUE_POLICY, **kw: Any) -> list[dict[str, Any]]:
    out = replay_lines(lines, policy, **kw)
    for record in out:
        sla_event_adapter.validate_python(record)
    return out


def of(ticket: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["ticket_id"] == ticket]


# -- 1. another ticket's event must not decide this ticket's SLA


def test_interleaved_tickets_within_the_default_max_delay_give_the_time_ordered_result() -> None:
    out = replay(YX)  # the default --max-delay (15m) covers the 10 minutes X is ahead
    y = of("Y", out)
    assert [(r["type"], r["took_seconds"]) for r in y] == [("sla.met", 3300.0)]
    assert y[0]["due_at"] == "2026-02-04T15:00:00Z"
    in_time_order = replay(
        sorted(YX, key=lambda raw: parse_instant(orjson.loads(raw)["occurred_at"]))
    )
    assert out == in_time_order


def test_a_reply_later_than_max_delay_retracts_the_breach_and_issues_the_met() -> None:
    out = replay(YX, max_delay=0)
    assert [(r["type"], r["at"]) for r in out] == [
        ("sla.breached", "2026-02-04T15:00:00Z"),
        ("sla.retracted", "2026-02-04T14:55:00Z"),
        ("sla.met", "2026-02-04T14:55:00Z"),
    ]
    breach, retraction, met = out
    assert retraction["retracts"] == breach["event_id"]
    assert retraction["retracted_type"] == "sla.breached"
    assert met["took_seconds"] == 3300.0
    assert len({breach["event_id"], retraction["event_id"], met["event_id"]}) == 3
    assert replay(YX, max_delay=0) == out  # ids are deterministic


def test_the_replay_summary_counts_late_lines_and_retractions() -> None:
    replayer = Replayer(ISSUE_POLICY, 0)
    list(replayer.run(YX))
    c = replayer.counts
    assert (c.late, c.retracted, c.beyond_horizon, c.rejected) == (1, 1, 0, 0)
    replayer = Replayer(ISSUE_POLICY, 15 * MINUTE)
    list(replayer.run(YX))
    assert (replayer.counts.late, replayer.counts.retracted) == (0, 0)


def test_a_rejected_record_never_moves_the_clock() -> None:
    """An event for an unknown ticket dated 8999 (9999 no longer decodes) fires nothing: it
    waits for its ticket's open, moving no clock, and is rejected at the end of the input."""
    rogue = orjson.dumps(
        {
            "event_id": "rogue",
            "ticket_id": "NOBODY",
            "type": "ticket.responded",
            "occurred_at": "8999-12-31T23:59:59Z",
        }
    )
    lines = [YX[0], rogue, YX[1], YX[2], YX[3]]
    replayer = Replayer(ISSUE_POLICY, 0)
    out = list(replayer.run(lines))
    assert replayer.counts.rejected == 1
    assert out == replay(YX, max_delay=0)
    replayer = Replayer(ISSUE_POLICY, 0)
    replayer.feed(next(iter([_decode(YX[0])])))
    assert replayer.feed(_decode(rogue)) == ([], None)  # parked: it waits for its ticket's open
    assert replayer.counts.held == 1
    assert replayer.clock == parse_instant("2026-02-04T14:00:00Z")


def _decode(raw: bytes) -> Any:
    from events.codec import decode_ticket_event

    return decode_ticket_event(raw)


def test_a_late_event_older_than_the_correction_horizon_is_rejected_and_counted() -> None:
    opened = line("o", "H", "opened", "09:00", severity=2)
    later = orjson.dumps(
        {
            "event_id": "a",
            "ticket_id": "H",
            "type": "ticket.assigned",
            "occurred_at": format_instant(parse_instant("2026-02-04T14:00:00Z") + 8 * DAY),
        }
    )
    reply = line("r", "H", "responded", "09:30")
    replayer = Replayer(ISSUE_POLICY, 0)
    reasons: list[str] = []
    out = list(replayer.run([opened, later, reply], on_invalid=lambda n, r: reasons.append(r)))
    assert CORRECTION_HORIZON == 7 * DAY
    assert [r["type"] for r in out] == ["sla.breached"]
    assert replayer.counts.beyond_horizon == 1 and replayer.counts.late == 1
    assert reasons and "beyond the correction horizon" in reasons[0]
    assert "field 'occurred_at'" in reasons[0]


def _time_order(lines: list[bytes]) -> list[bytes]:
    return sorted(lines, key=lambda raw: parse_instant(orjson.loads(raw)["occurred_at"]))


def _interleave(lines: list[bytes], bound: Micros, rng: random.Random) -> list[bytes]:
    """Reorder across tickets, each line delayed by less than `bound`; a ticket keeps its order."""
    keyed = []
    last: dict[str, Micros] = {}
    for raw in lines:
        obj = orjson.loads(raw)
        at = parse_instant(obj["occurred_at"])
        key = max(last.get(obj["ticket_id"], at), at + rng.randrange(bound))
        last[obj["ticket_id"]] = key
        keyed.append((key, raw))
    keyed.sort(key=lambda pair: pair[0])
    return [raw for _, raw in keyed]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), tickets=st.integers(1, 40))
def test_interleaving_across_tickets_within_max_delay_changes_nothing(
    seed: int, tickets: int
) -> None:
    """Exactly the time-ordered output (same events, ids and order) for any such interleaving."""
    lines = [orjson.dumps(obj) for obj in generate_history(tickets, seed=seed)]
    reference = list(Replayer(SEED_POLICY, 0).run(lines))
    shuffled = _interleave(lines, DEFAULT_MAX_DELAY, random.Random(seed))
    assert list(Replayer(SEED_POLICY, DEFAULT_MAX_DELAY).run(shuffled)) == reference


def net(records: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """What holds per ticket once retractions are applied, ids aside (corrections re-issue)."""
    retracted = {r["retracts"] for r in records if r["type"] == "sla.retracted"}
    holds: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for r in records:
        if r["type"] != "sla.retracted" and r["event_id"] not in retracted:
            body = {k: v for k, v in r.items() if k != "event_id"}
            holds[r["ticket_id"]].append(tuple(sorted((k, str(v)) for k, v in body.items())))
    return {ticket: sorted(items) for ticket, items in holds.items()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), tickets=st.integers(1, 30))
def test_lines_later_than_max_delay_are_corrected_to_the_time_ordered_result(
    seed: int, tickets: int
) -> None:
    """Any reordering across tickets, however late: after corrections, what holds is the same."""
    lines = [orjson.dumps(obj) for obj in generate_history(tickets, seed=seed)]
    end = parse_instant(orjson.loads(lines[-1])["occurred_at"]) + 40 * DAY
    reference = list(Replayer(SEED_POLICY, 0).run(lines, end))
    shuffled = _interleave(lines, 2 * DAY, random.Random(seed))
    replayer = Replayer(SEED_POLICY, 0)
    out = list(replayer.run(shuffled, end))
    assert replayer.counts.rejected == 0
    assert net(out) == net(reference)
    ids = [r["event_id"] for r in out]
    assert len(ids) == len(set(ids))
    retracted = [r["retracts"] for r in out if r["type"] == "sla.retracted"]
    assert set(retracted) <= set(ids) and len(retracted) == len(set(retracted))
    for record in out:
        sla_event_adapter.validate_python(record)


# -- 2. a metric fulfilled while paused


def test_first_response_while_paused_reports_the_deadline_as_if_resumed() -> None:
    out = replay(
        [
            line("p1", "P", "opened", "09:00", severity=4),
            line("p2", "P", "paused", "10:00"),
            line("p3", "P", "responded", "11:00"),
        ]
    )
    assert [(r["type"], r["took_seconds"], r["due_at"]) for r in out] == [
        ("sla.met", 3600.0, "2026-02-04T19:00:00Z")
    ]


FULFILS: dict[str, str] = {
    "first_response": "responded",
    "resolution": "resolved",
    "next_response": "responded",
    "periodic_update": "responded",
}
"""The event that fulfils each metric; a metric added to the core must be added here."""
STARTS: dict[str, list[str]] = {
    "first_response": [],
    "resolution": [],
    "next_response": ["responded", "customer_replied"],
    "periodic_update": ["responded"],
}
"""What starts a round of the metric at the report instant, after `ticket.opened`."""

ALL_PAUSABLE = parse_policy(
    """
name = "pausable"
[calendar]
timezone = "America/Toronto"
open = "09:00"
close = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
[severity.3]
first_response = { target = "6h", pausable = true }
resolution = { target = "3bd", pausable = true }
next_response = { target = "2h", pausable = true }
periodic_update = { target = "5h" }
""",
    "pausable.toml",
)


@settings(max_examples=150, deadline=None)
@given(
    metric=st.sampled_from(get_args(MetricName)),
    gaps=st.lists(st.integers(1, 600), min_size=1, max_size=8),
    start=st.integers(0, 7 * 24 * 60),
)
def test_met_due_at_is_the_time_left_counted_on_from_the_fulfilment(
    metric: str, gaps: list[int], start: int
) -> None:
    """For every metric and any pause history: due_at = clock.add(at, target - took)."""
    opened = parse_instant("2026-02-02T05:00:00Z") + start * MINUTE
    at = opened
    body: list[bytes] = [_obj("opened", opened, 0, severity=3)]
    body += [_obj(kind, opened, 100 + n) for n, kind in enumerate(STARTS[metric])]
    kinds = ["paused", "resumed"]
    for number, gap in enumerate(gaps[:-1], start=1):
        at += gap * MINUTE
        body.append(_obj(kinds[(number - 1) % 2], at, number))
    at += gaps[-1] * MINUTE
    body.append(_obj(FULFILS[metric], at, len(gaps)))
    met = [r for r in replay(body, ALL_PAUSABLE) if r["type"] == "sla.met"]
    rule = ALL_PAUSABLE.severities[3].metric(metric)  # type: ignore[arg-type]
    assert rule is not None
    if not any(r["metric"] == metric for r in met):
        return  # breached before it was fulfilled
    record = next(r for r in met if r["metric"] == metric)
    took = round(record["took_seconds"] * SECOND)
    # the clock's own arithmetic, independent of how the state machine measures spans
    clock = ALL_PAUSABLE.clock(rule.clock)
    assert parse_instant(record["due_at"]) == clock.add(at, rule.target - took)
    assert took == _open_time_not_paused(body, at, clock)


def _obj(kind: str, at: Micros, number: int, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{number}",
            "ticket_id": "Q",
            "type": f"ticket.{kind}",
            "occurred_at": format_instant(at),
            **fields,
        }
    )


def _open_time_not_paused(body: list[bytes], until: Micros, clock: Any) -> Micros:
    objs = [orjson.loads(raw) for raw in body]
    start = parse_instant(objs[0]["occurred_at"])
    total = clock.between(start, until)
    paused_at: Micros | None = None
    for obj in objs[1:]:
        at = parse_instant(obj["occurred_at"])
        if obj["type"] == "ticket.paused":
            paused_at = at
        elif obj["type"] == "ticket.resumed" and paused_at is not None:
            total -= clock.between(paused_at, at)
            paused_at = None
    if paused_at is not None:
        total -= clock.between(paused_at, until)
    return int(total)


# -- 3. the order at one instant


def test_at_one_instant_event_output_comes_before_timers_then_by_ticket_id() -> None:
    """The sample in docs/replay.md: T-104's reply at 15:30Z before T-101's breach due at 15:30Z."""
    with open("deploy/examples/tickets.jsonl", "rb") as sample:
        out = list(Replayer(SEED_POLICY, DEFAULT_MAX_DELAY).run(sample))
    at_1530 = [(r["ticket_id"], r["type"]) for r in out if r["at"] == "2026-11-30T15:30:00Z"]
    assert at_1530 == [("T-104", "sla.met"), ("T-101", "sla.breached")]
    # Timers due at one instant, by ticket id, after the event output of that instant; B's
    # breach fires first (before B's 10:10 line), Z's only when the watermark passes 10:00.
    lines = [
        line("b", "B", "opened", "09:00", severity=2),
        line("z", "Z", "opened", "09:00", severity=2),
        line("c", "C", "opened", "09:00", severity=2),
        line("b2", "B", "assigned", "10:10", assignee="x", group="g"),
        line("c2", "C", "responded", "10:00"),
        line("d", "D", "opened", "10:20", severity=2),
    ]
    out = replay(lines, max_delay=15 * MINUTE, until=parse_instant("2026-02-04T15:30:00Z"))
    assert [(r["ticket_id"], r["type"], r["at"]) for r in out] == [
        ("C", "sla.met", "2026-02-04T15:00:00Z"),
        ("B", "sla.breached", "2026-02-04T15:00:00Z"),
        ("Z", "sla.breached", "2026-02-04T15:00:00Z"),
    ]


@pytest.mark.parametrize(
    "text, micros", [("0", 0), ("15m", 15 * MINUTE), ("0.5s", SECOND // 2), ("900", 15 * MINUTE)]
)
def test_delays_are_durations(text: str, micros: Micros) -> None:
    assert parse_delay(text) == micros
    assert HOUR == 60 * MINUTE
