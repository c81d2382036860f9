"""Issue #18, related faults: a broker that is down when `escalator run` starts, and
the lag metric after a restart that has caught up. Real brokers, real worker processes."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from deploy.kafka_local import LocalKafka
from events.samples import generate_history
from tests.engine.helpers import (
    Topics,
    Worker,
    cli,
    new_topics,
    read_topic,
    sla_events,
    write_jsonl,
)

pytestmark = pytest.mark.kafka


def _lag_series(metrics: str) -> dict[int, float]:
    return {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(
            r'^escalator_consumer_lag_records\{partition="(\d+)"\} (\S+)$', metrics, re.M
        )
    }


async def _committed_and_ends(
    broker: str, group: str, topic: str, n: int
) -> tuple[dict[int, int], dict[int, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(n)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return (
            {tp.partition: committed[tp].offset for tp in tps if tp in committed},
            {tp.partition: ends[tp] for tp in tps},
        )
    finally:
        await consumer.stop()
        await admin.close()


def test_lag_is_zero_after_a_restart_that_has_caught_up(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """400 generated tickets on 2 partitions, processed; the worker is stopped and started
    again: once ready, committed offsets equal end offsets and every lag series says 0 (it
    said each partition's full size: records processed were counted from this run only)."""
    topics = new_topics("lag", partitions=2)
    history = write_jsonl(tmp_path / "h.jsonl", generate_history(400, seed=7))
    done = cli("publish", str(history), *topics.flags(), broker=kafka_bootstrap)
    assert done.returncode == 0, done.stderr.decode()
    first = Worker(kafka_bootstrap, topics, tmp_path / "w1.log").start()
    try:
        first.wait_ready(partitions=2, timeout=90)
        deadline = time.monotonic() + 90
        while True:
            committed, ends = asyncio.run(
                _committed_and_ends(kafka_bootstrap, topics.app_id, topics.input, 2)
            )
            if committed == ends:
                break
            assert time.monotonic() < deadline, first.log_tail()
            time.sleep(0.5)
        assert sum(ends.values()) > 1000
    finally:
        first.stop()
    second = Worker(kafka_bootstrap, topics, tmp_path / "w2.log").start()
    try:
        second.wait_ready(partitions=2, timeout=90)
        deadline = time.monotonic() + 30
        while set(lag := _lag_series(second.metrics())) != {0, 1}:
            assert time.monotonic() < deadline, second.metrics()
            time.sleep(0.5)
        assert lag == {0: 0.0, 1: 0.0}, (lag, ends)
        committed, ends_now = asyncio.run(
            _committed_and_ends(kafka_bootstrap, topics.app_id, topics.input, 2)
        )
        assert committed == ends_now == ends
    finally:
        second.stop()


def _opened_and_breached(bootstrap: str, topics: Topics, tmp_path: Path) -> list[str]:
    """Publish one severity-1 ticket and a tick past its deadline; the SLA event types."""
    events = [
        {"event_id": "s1", "ticket_id": "S", "type": "ticket.opened",
         "occurred_at": "2026-03-02T09:00:00Z", "severity": 1},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "t.jsonl", events)
    done = cli("publish", str(path), "--tick", "2026-04-01T00:00:00Z", *topics.flags(),
               broker=bootstrap)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    records = read_topic(bootstrap, topics.output, expect=1, timeout=60, settle=2.0)
    return [e["type"] for e in sla_events(records)]


def test_a_worker_started_while_the_broker_is_down_waits_for_it(tmp_path: Path) -> None:
    """The broker is down before `escalator run` starts and stays down 12 s (an attempt to
    reach a stopped broker fails at once: this is many attempts, not one slow one); it comes
    back within --connect-timeout 60. The worker must have retried (logged), still be running,
    then take its partition and process a ticket (opened + breach). Without the start-up
    retry it exits 1 at its first attempt."""
    broker = LocalKafka(data_dir=tmp_path / "kafka").start()
    bootstrap = broker.bootstrap_servers
    broker.stop()
    topics = new_topics("startup", partitions=1)
    worker = Worker(bootstrap, topics, tmp_path / "worker.log", extra=["--connect-timeout", "60"])
    try:
        worker.start()
        time.sleep(12)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        assert "unreachable" not in worker.log_path.read_text(errors="replace")
        broker.start()
        worker.wait_ready(partitions=1, timeout=90)
        assert "sla.breached" in _opened_and_breached(bootstrap, topics, tmp_path), (
            worker.log_tail()
        )
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        broker.stop()


def test_a_worker_gives_up_on_a_broker_down_past_the_connect_timeout(tmp_path: Path) -> None:
    """The broker stays down: with --connect-timeout 8 the worker keeps trying for 8 s, then
    exits 1 (not 0: a supervisor must see it) naming the broker address and "unreachable", in
    no more than 8 s plus a generous 40 s margin for a loaded machine."""
    broker = LocalKafka(data_dir=tmp_path / "kafka").start()
    bootstrap = broker.bootstrap_servers
    broker.stop()
    topics = new_topics("giveup", partitions=1)
    worker = Worker(bootstrap, topics, tmp_path / "worker.log", extra=["--connect-timeout", "8"])
    try:
        started = time.monotonic()
        worker.start()
        assert worker.proc is not None
        time.sleep(4)
        assert worker.proc.poll() is None, "gave up before --connect-timeout\n" + worker.log_tail()
        code = worker.proc.wait(48)
        took = time.monotonic() - started
        assert code == 1, worker.log_tail()
        assert took >= 8, took
        log = worker.log_path.read_text(errors="replace")
        assert f"Kafka broker {bootstrap} unreachable after" in log, log
    finally:
        worker.stop()
