"""Event time through the real broker (issue #9): the engine equals the replay when the input
is interleaved across tickets (event clock), and when a wall-clock worker consumes a backlog."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from events.instants import DAY, format_instant, parse_instant
from events.samples import generate_history
from streams.sla.policy import load_policy
from streams.sla.replay import DEFAULT_MAX_DELAY, Replayer
from tests.core.test_event_time import _interleave
from tests.engine.helpers import Worker, cli, new_topics, per_ticket, read_topic, sla_events

pytestmark = pytest.mark.kafka


def test_event_clock_with_tickets_interleaved_equals_the_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Lines of different tickets up to --max-delay out of time order: the exact replay."""
    lines = [orjson.dumps(obj) for obj in generate_history(300, seed=21)]
    # The case on the seed policy: Y (Sev1, first response due 10:00) answers at 09:55;
    # the line comes after another ticket's 10:05 line.
    y_x = [
        _line("y1", "Y", "opened", "09:00", severity=1),
        _line("x1", "X", "opened", "09:30", severity=3),
        _line("x2", "X", "assigned", "10:05", assignee="a", group="g"),
        _line("y2", "Y", "responded", "09:55"),
    ]
    until = parse_instant("2026-12-07T15:00:00Z") + 30 * DAY
    in_time_order = [*lines, y_x[0], y_x[1], y_x[3], y_x[2]]
    reference = list(Replayer(load_policy(), 0).run(in_time_order, until))
    shuffled = [*_interleave(lines, DEFAULT_MAX_DELAY, random.Random(21)), *y_x]
    assert shuffled != in_time_order
    path = tmp_path / "interleaved.jsonl"
    path.write_bytes(b"\n".join(shuffled) + b"\n")
    topics = new_topics("evinterleave", partitions=1)  # one watermark for all tickets
    worker = Worker(kafka_bootstrap, topics, tmp_path / "worker.log", clock="event").start()
    try:
        worker.wait_ready(partitions=1)
        done = cli(
            "publish", str(path), "--tick", format_instant(until), *topics.flags(),
            broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        got = sla_events(
            read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=120)
        )
    finally:
        worker.stop()
    assert len(got) == len(reference), worker.log_tail()
    assert per_ticket(got) == per_ticket(reference)
    by_id = {e["event_id"]: e for e in reference}
    assert all(e == by_id[e["event_id"]] for e in got)
    y = [(e["type"], e.get("took_seconds")) for e in got if e["ticket_id"] == "Y"]
    assert y[0] == ("sla.met", 3300.0)


def _line(event_id: str, ticket: str, kind: str, when: str, **fields: object) -> bytes:
    """A line on Monday 2026-12-07, `when` a Toronto wall time (UTC-05:00)."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "ticket_id": ticket,
            "type": f"ticket.{kind}",
            "occurred_at": f"2026-12-07T{when}:00-05:00",
            **fields,
        }
    )


def test_wall_clock_worker_over_a_backlog_equals_the_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The issue's 1,000-ticket sample, published before a wall-clock worker starts.

    Dated three weeks back so that all of it lies in the past. Today a wall-clock worker fires
    every past timer by the wall clock before the replies further down the backlog are read
    (all 1,000 first responses breached); with the event-time watermark while behind, it is
    the replay's output, and no backlog timer counts as late.
    """
    start = datetime.now(UTC) - timedelta(days=21)
    history = generate_history(1000, seed=7, start=start)
    lines = [orjson.dumps(obj) for obj in history]
    now = time.time_ns() // 1000
    reference = list(Replayer(load_policy(), 0).run(lines, now))
    assert all(parse_instant(e["due_at"]) < now - DAY for e in reference if e["type"] != "sla.met")
    kinds = Counter((e["type"], e["metric"]) for e in reference)
    assert kinds["sla.breached", "first_response"] < 200  # most replies are in time
    path = tmp_path / "backlog.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    topics = new_topics("wallbacklog", partitions=4)
    done = cli("publish", str(path), *topics.flags(), broker=kafka_bootstrap)
    assert done.returncode == 0, done.stderr.decode()
    worker = Worker(kafka_bootstrap, topics, tmp_path / "worker.log", clock="wall").start()
    try:
        worker.wait_ready(partitions=4)
        got = sla_events(
            read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=180)
        )
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert Counter((e["type"], e["metric"]) for e in got) == kinds, worker.log_tail()
    assert per_ticket(got) == per_ticket(reference)
    by_id = {e["event_id"]: e for e in reference}
    assert all(e == by_id[e["event_id"]] for e in got)
    assert "escalator_timer_lateness_seconds_count 0.0" in metrics
    assert "escalator_retractions_total 0.0" in metrics
