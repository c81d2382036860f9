"""The processor's watermark (issue #9), without a broker: event clock per partition, the wall
clock's lag rule, input time that must not fire anything early, live-only lateness."""

from __future__ import annotations

import random
from typing import Any

import orjson

from events.instants import DAY, HOUR, SECOND, Micros, format_instant, parse_instant
from events.samples import generate_history
from streams.engine.processor import FUTURE_SKEW, PartitionEngine
from streams.sla.policy import load_policy
from streams.sla.replay import DEFAULT_MAX_DELAY, Replayer
from tests.core.test_event_time import ISSUE_POLICY, YX, _interleave

POLICY = load_policy()
FAST = load_policy("tests/engine/fast_policy.toml")


def run(engine: PartitionEngine, raws: list[bytes], wall: Micros = 0, behind: int = 0) -> Any:
    result = engine.process_batch(list(raws), wall, behind)
    return [orjson.loads(v) for _, v, _ in result.output], result


def tick(at: Micros) -> bytes:
    return orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(at)})


def opened(ticket: str, at: Micros, severity: int = 1) -> bytes:
    return orjson.dumps(
        {
            "type": "ticket.opened",
            "event_id": f"{ticket}-open",
            "ticket_id": ticket,
            "severity": severity,
            "occurred_at": format_instant(at),
        }
    )


def test_event_clock_interleaving_across_tickets_equals_the_replay() -> None:
    """Y/X of the issue: one partition, event clock, default max_delay: Y's reply is in time."""
    engine = PartitionEngine(0, ISSUE_POLICY, "event")
    out, _ = run(engine, YX)
    out += run(engine, [tick(parse_instant("2026-02-04T22:00:00Z"))])[0]
    y = [(r["type"], r.get("took_seconds")) for r in out if r["ticket_id"] == "Y"]
    assert y == [("sla.met", 3300.0)]


def test_event_clock_history_interleaved_within_max_delay_equals_the_time_ordered_replay() -> None:
    lines = [orjson.dumps(obj) for obj in generate_history(200, seed=5)]
    until = parse_instant(orjson.loads(lines[-1])["occurred_at"]) + 30 * DAY
    reference = list(Replayer(POLICY, 0).run(lines, until))
    shuffled = _interleave(lines, DEFAULT_MAX_DELAY, random.Random(5))
    assert shuffled != lines
    engine = PartitionEngine(0, POLICY, "event")
    out, result = run(engine, shuffled)
    out += run(engine, [tick(until)])[0]
    assert result.late == 0 and result.retracted == 0
    assert sorted(out, key=lambda r: r["event_id"]) == sorted(
        reference, key=lambda r: r["event_id"]
    )


def test_a_rejected_record_moves_no_clock_in_event_mode() -> None:
    engine = PartitionEngine(0, FAST, "event")
    start = parse_instant("2026-11-23T13:00:00Z")
    run(engine, [opened("T1", start)])
    rogue = orjson.dumps(
        {
            "type": "ticket.responded",
            "event_id": "rogue",
            "ticket_id": "NOBODY",
            "occurred_at": "8999-12-31T23:59:59Z",
        }
    )
    out, result = run(engine, [rogue])  # waits for NOBODY's open (parked), moving no clock
    assert out == [] and result.dead_letters == [] and result.held == 1
    assert engine.watermark == start - DEFAULT_MAX_DELAY


def test_wall_clock_future_tick_and_future_event_fire_nothing_early() -> None:
    """`publish --tick 8999-...` against a wall-clock worker: no breach before its time."""
    wall = parse_instant("2026-11-30T12:00:00Z")
    engine = PartitionEngine(0, FAST, "wall")
    run(engine, [opened("T1", wall)], wall)
    out, _ = run(engine, [tick(parse_instant("8999-12-31T23:59:59Z"))], wall + SECOND)
    assert out == []
    ahead = orjson.dumps(
        {
            "type": "ticket.assigned",
            "event_id": "far",
            "ticket_id": "T1",
            "occurred_at": "8999-12-31T23:59:59Z",
            "assignee": "a",
        }
    )
    out, result = run(engine, [ahead], wall + SECOND)
    assert out == [] and "ahead of the worker's clock" in result.dead_letters[0][2]
    # within the skew it applies at the worker's time: still nothing early
    near = orjson.dumps(
        {
            "type": "ticket.assigned",
            "event_id": "near",
            "ticket_id": "T1",
            "occurred_at": format_instant(wall + SECOND + FUTURE_SKEW // 2),
            "assignee": "a",
        }
    )
    out, result = run(engine, [near], wall + SECOND)
    assert out == [] and result.dead_letters == []
    # the fast policy's warning is due 1.5 s after the opening: it fires once the wall time
    # minus the allowed lateness (0.1 s) has passed it
    assert run(engine, [tick(wall)], wall + 1550 * 1000)[0] == []
    out, _ = run(engine, [tick(wall)], wall + 1650 * 1000)
    assert [r["type"] for r in out] == ["sla.warning"]


def test_wall_clock_uses_event_time_while_behind_and_wall_time_once_caught_up() -> None:
    """A backfill: replies further down the backlog are read before their timers fire."""
    wall = parse_instant("2026-11-30T12:00:00Z")
    engine = PartitionEngine(0, ISSUE_POLICY, "wall")
    out, result = run(engine, YX, wall, behind=100)
    assert [r["type"] for r in out] == ["sla.met"] and result.timer_dues == []
    out, result = run(engine, [tick(wall)], wall)  # caught up: X's breach (due 10:30) fires
    assert [(r["ticket_id"], r["type"]) for r in out] == [("X", "sla.breached")]
    assert result.timer_dues == []  # a backlog's timer is not a late live timer


def test_lateness_is_measured_for_live_timers_only() -> None:
    wall = parse_instant("2026-11-30T12:00:00Z")
    engine = PartitionEngine(0, FAST, "wall", allowed_lateness=0)
    run(engine, [opened("OLD", wall - HOUR)], wall, behind=1)  # from the backlog
    _, result = run(engine, [opened("NEW", wall)], wall)  # caught up: OLD's timers fire
    assert {key for key, _, _ in result.output} == {b"OLD"} and len(result.output) == 5
    assert result.timer_dues == []  # overdue when the partition caught up: not measured
    _, result = run(engine, [tick(wall)], wall + 10 * SECOND)
    assert {key for key, _, _ in result.output} == {b"NEW"}
    assert len(result.timer_dues) == 5 and all(due > wall for due in result.timer_dues)


def test_an_event_dated_ahead_keeps_its_content_and_its_redelivery_is_a_duplicate() -> None:
    """Upstream clock skew: an event dated 10 s ahead applies at the worker's time with all its
    fields (the gold tier picks the premium policy), and when the broker redelivers it later,
    redated to another now, it is the same event again: nothing emitted, nothing dead-lettered.
    Before: the redated copy dropped channel, tags and attributes (so the standard policy timed
    the ticket), and its digest used the worker's time, so the redelivery was refused as an id
    reused with other content."""
    vendor = load_policy("deploy/examples/vendor-policy.toml")
    wall = parse_instant("2026-11-30T12:00:00Z")
    engine = PartitionEngine(0, vendor, "wall")
    gold = orjson.dumps(
        {
            "type": "ticket.opened",
            "event_id": "G-open",
            "ticket_id": "G",
            "severity": 1,
            "attributes": {"tier": "gold"},
            "occurred_at": format_instant(wall + 10 * SECOND),
        }
    )
    out, result = run(engine, [gold], wall)
    assert result.dead_letters == []
    out, result = run(engine, [gold], wall + 5 * SECOND)  # redelivered after a restart
    assert out == [] and result.dead_letters == []
    out, _ = run(engine, [tick(wall)], wall + 400 * DAY // 100)  # four days on
    assert out and {r["policy"]["name"] for r in out} == {"premium"}
