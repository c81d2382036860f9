"""Issue #19 items 1 and 14: `escalator ingest` through a broker outage, on its own broker.

Eight clients post single events to a live ingest; the broker is stopped for 40 s and started
again on the same ports and data. Then every probe ticket must be accepted (200) and be in
Kafka exactly once (read_committed), no 2xx answer may name an event missing from Kafka,
`/health` must say `degraded` while the producer cannot produce and `ok` after, and the log
must stay quiet during the outage (a repeated line once per 10 s, with its count).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from deploy.kafka_local import LocalKafka
from streams.ingest.settings import IngestSettings
from tests.edges.ingest_process import TOKEN, IngestProcess

pytestmark = pytest.mark.kafka

CLIENTS = 8
OUTAGE = 40.0
PROBES = 40
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def event(event_id: str, ticket: str) -> bytes:
    return orjson.dumps({
        "event_id": event_id,
        "ticket_id": ticket,
        "type": "ticket.opened",
        "severity": 2,
        "occurred_at": "2026-11-30T09:00:00-05:00",
    })  # fmt: skip


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> int:
    try:
        async with http.post(url, data=body, headers=AUTH) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def clients(url: str, stop: asyncio.Event, answers: dict[str, int]) -> None:
    timeout = aiohttp.ClientTimeout(total=45)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def client(c: int) -> None:
            n = 0
            while not stop.is_set():
                event_id = f"c{c}-{n}"
                answers[event_id] = await post(http, url, event(event_id, f"T-{n % 12}"))
                n += 1
                await asyncio.sleep(0.05)

        await asyncio.gather(*(client(c) for c in range(CLIENTS)))


async def probe(url: str, deadline: float) -> dict[str, list[int]]:
    """Each probe ticket posted until 200 or the deadline; the statuses seen for each."""
    seen: dict[str, list[int]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=35)) as http:
        for n in range(PROBES):
            event_id = f"probe-{n}"
            seen[event_id] = []
            while time.monotonic() < deadline:
                status = await post(http, url, event(event_id, f"P-{n}"))
                seen[event_id].append(status)
                if status == 200:
                    break
                await asyncio.sleep(1)
    return seen


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every committed record of `topic`, up to the end offsets seen at the start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(IngestSettings().partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 90
        while True:  # after the restart a loaded machine may take a while to elect leaders
            try:
                ends = await consumer.end_offsets(tps)
                break
            except KafkaError:
                assert time.monotonic() < deadline, "no partition leaders 90 s after the restart"
                await asyncio.sleep(1)
        records: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, "topic not read to its end in 90 s"
            batch = await consumer.getmany(timeout_ms=1000)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


def test_ingest_recovers_after_a_broker_outage_without_loss_or_wedge(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka").start()
    ingest = IngestProcess(broker.bootstrap_servers, tmp_path / "ingest.log")
    try:
        ingest.start()
        url = ingest.url + "/v1/events"
        answers: dict[str, int] = {}
        health_seen: list[str] = []

        async def scenario() -> tuple[int, float, dict[str, list[int]]]:
            stop = asyncio.Event()
            posting = asyncio.create_task(clients(url, stop, answers))
            await asyncio.sleep(5)
            assert sum(s == 200 for s in answers.values()) > 20, ingest.log_tail()
            await asyncio.to_thread(broker.stop)
            lines_before, stopped = ingest.log_lines(), time.monotonic()
            while time.monotonic() - stopped < OUTAGE:
                await asyncio.sleep(2)
                health = await asyncio.to_thread(ingest.health)
                health_seen.append(health["status"] if health else "none")
            logged = ingest.log_lines() - lines_before
            outage = time.monotonic() - stopped
            await asyncio.to_thread(broker.start)
            await asyncio.sleep(10)  # clients keep posting into the recovery
            stop.set()
            await posting
            seen = await probe(url, time.monotonic() + 60)
            return logged, outage, seen

        logged, outage, seen = asyncio.run(scenario())
        refused = {k: v for k, v in seen.items() if not v or v[-1] != 200}
        assert not refused, (
            f"{len(refused)} of {PROBES} probes refused: {refused}\n{ingest.log_tail()}"
        )
        assert "degraded" in health_seen, health_seen
        health = ingest.health()
        assert health is not None and health["status"] == "ok", health
        assert logged / outage < 2, f"{logged} lines in {outage:.0f} s:\n{ingest.log_tail()}"

        acknowledged = [k for k, status in answers.items() if status == 200]
        records = asyncio.run(read_all(broker.bootstrap_servers, ingest.topic))
        counts = Counter(orjson.loads(r.value)["event_id"] for r in records)
        probes = {k: counts[k] for k in seen}
        assert set(probes.values()) == {1}, probes
        missing = [k for k in acknowledged if counts[k] == 0]
        assert not missing, f"answered 200 but not in Kafka: {missing[:10]}"
        print(
            f"posted {len(answers)} ({len(acknowledged)} acknowledged) during the run; "
            f"{logged} log lines in a {outage:.0f} s outage; health {Counter(health_seen)}; "
            f"probe attempts {sum(len(v) for v in seen.values())}"
        )
    finally:
        ingest.stop()
        broker.stop()
