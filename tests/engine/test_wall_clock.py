"""Wall-clock timers: SLA events appear in the committed output within 1 s of their due time,
on partitions that get no input after the ticket was opened."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.instants import SECOND, format_instant, parse_instant
from tests.engine.helpers import FAST_POLICY, Worker, new_topics

pytestmark = pytest.mark.kafka

# fast_policy.toml, severity 1: warning at 1.5 s, first response breach at 3 s, escalation at
# 5 s, resolution breach (+ customer notification) at 8 s; all on the elapsed clock.
EXPECTED_PER_TICKET = 5


async def _open_and_watch(
    broker: str, topics: Any, tickets: list[str], timeout: float
) -> list[tuple[float, dict[str, Any]]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    seen: list[tuple[float, dict[str, Any]]] = []
    try:
        tps = [TopicPartition(topics.output, p) for p in range(topics.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is emitted
            await consumer.position(tp)
        now = time.time_ns() // 1000
        for number, ticket in enumerate(tickets):
            body = {
                "type": "ticket.opened",
                "event_id": f"{ticket}-open",
                "ticket_id": ticket,
                "severity": 1,
                "occurred_at": format_instant(now),
                "title": "secret text",
            }
            await producer.send_and_wait(
                topics.input,
                orjson.dumps(body),
                key=ticket.encode(),
                partition=number % topics.partitions,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(seen) < EXPECTED_PER_TICKET * len(tickets):
            batches = await consumer.getmany(timeout_ms=50)
            received = time.time()
            for batch in batches.values():
                seen.extend((received, orjson.loads(r.value)) for r in batch)
    finally:
        await producer.stop()
        await consumer.stop()
    return seen


def test_timers_fire_within_a_second_of_due(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    topics = new_topics("wall", partitions=4)
    worker = Worker(
        kafka_bootstrap, topics, tmp_path / "worker.log", clock="wall", policy=FAST_POLICY
    )
    workers.append(worker.start())
    worker.wait_ready(partitions=4)
    tickets = [f"W-{n}" for n in range(4)]  # one per partition, nothing else arrives there
    seen = asyncio.run(_open_and_watch(kafka_bootstrap, topics, tickets, timeout=20))
    kinds = sorted((e["ticket_id"], e["type"], e["metric"]) for _, e in seen)
    expected = sorted(
        (t, kind, metric)
        for t in tickets
        for kind, metric in (
            ("sla.warning", "first_response"),
            ("sla.breached", "first_response"),
            ("ticket.escalated", "escalation"),
            ("sla.breached", "resolution"),
            ("customer.notification_required", "resolution"),
        )
    )
    assert kinds == expected, worker.log_tail()
    lateness = [received - parse_instant(e["due_at"]) / SECOND for received, e in seen]
    assert min(lateness) >= -0.05, lateness  # never early
    print("lateness", sorted(round(x, 3) for x in lateness))
    assert max(lateness) <= 1.0, lateness
    assert all(b"secret" not in orjson.dumps(e) for _, e in seen)
    metrics = worker.metrics()
    assert "escalator_timer_lateness_seconds_count 20.0" in metrics
