"""Timers that fall due while no worker runs fire once a worker owns the partition again,
with their original due times, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from events.instants import SECOND, format_instant, parse_instant
from tests.engine.helpers import FAST_POLICY, Worker, new_topics, read_topic, sla_events

pytestmark = pytest.mark.kafka


async def _open(broker: str, topic: str, tickets: list[str], at: int) -> None:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        for ticket in tickets:
            body = {
                "type": "ticket.opened",
                "event_id": f"{ticket}-o",
                "ticket_id": ticket,
                "severity": 1,
                "occurred_at": format_instant(at),
            }
            await producer.send_and_wait(topic, orjson.dumps(body), key=ticket.encode())
    finally:
        await producer.stop()


def test_overdue_timers_fire_after_restart_with_original_due_times(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    topics = new_topics("downtime", partitions=2)
    first = Worker(kafka_bootstrap, topics, tmp_path / "w1.log", clock="wall", policy=FAST_POLICY)
    workers.append(first.start())
    first.wait_ready(partitions=2)
    tickets = [f"D-{n}" for n in range(6)]
    opened = time.time_ns() // 1000
    asyncio.run(_open(kafka_bootstrap, topics.input, tickets, opened))
    deadline = time.monotonic() + 30
    while (first.health() or {}).get("open_tickets", 0) < len(tickets):
        assert time.monotonic() < deadline, first.log_tail()
        time.sleep(0.1)
    time.sleep(0.5)  # let the transaction holding the opens commit
    first.kill()  # before the first timer (warning at +1.5 s) is due
    assert read_topic(kafka_bootstrap, topics.output, timeout=1) == []

    time.sleep(6)  # warning, first-response breach and escalation fall due meanwhile
    second = Worker(kafka_bootstrap, topics, tmp_path / "w2.log", clock="wall", policy=FAST_POLICY)
    workers.append(second.start())
    second.wait_ready(partitions=2)
    records = read_topic(kafka_bootstrap, topics.output, expect=5 * len(tickets), timeout=40)
    events = sla_events(records)
    counts = Counter(e["event_id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts
    assert len(events) == 5 * len(tickets), second.log_tail()
    offsets = sorted({parse_instant(e["due_at"]) - opened for e in events})
    assert offsets == [int(1.5 * SECOND), 3 * SECOND, 5 * SECOND, 8 * SECOND]
    assert all(e["at"] == e["due_at"] for e in events if e["type"] != "sla.met")
