"""Issue #10 section 1: a record too large to copy is still dead-lettered, never a crash loop.

The issue's input: an invalid record of about 1.01 MB (valid JSON, `severity` 9, a 1 MB extra
field). `escalator publish` refuses it (over the end-to-end limit); produced by another client
it reaches the worker, which dead-letters a truncated copy with its coordinates and the reason
and goes on with the next record.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from events.instants import parse_instant
from streams.engine.topics import (
    MAX_RECORD_BYTES,
    TRUNCATED_COPY_BYTES,
    dead_letter,
    ensure_topics,
    topic_limits,
)
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from tests.engine.helpers import Worker, cli, new_topics, read_topic, sla_events, write_jsonl

HUGE = orjson.dumps(
    {
        "event_id": "huge",
        "ticket_id": "H",
        "type": "ticket.opened",
        "occurred_at": "2026-12-01T10:00:00Z",
        "severity": 9,
        "description": "x" * 1_010_000,
    }
)
VALID = orjson.dumps(
    {
        "event_id": "v1",
        "ticket_id": "V",
        "type": "ticket.opened",
        "occurred_at": "2026-12-01T10:00:00Z",
        "severity": 1,
    }
)
TICK = b'{"type":"clock.tick","occurred_at":"2026-12-12T00:00:00Z"}'


def test_dead_letter_copy_is_truncated_only_when_too_large() -> None:
    key, value, headers = dead_letter(b"H", HUGE, "field 'severity': too big", "decode", "in", 3, 7)
    assert value == HUGE[:TRUNCATED_COPY_BYTES] and key == b"H"
    found = dict(headers)
    assert found["escalator.truncated"] == str(len(HUGE)).encode()
    assert found["escalator.source.partition"] == b"3"
    assert found["escalator.source.offset"] == b"7"
    assert found["escalator.reason"] == b"field 'severity': too big"
    _, value, headers = dead_letter(b"V", VALID, "r" * 5000, "decode", "in", 0, 0)
    assert value == VALID and "escalator.truncated" not in dict(headers)
    assert len(dict(headers)["escalator.reason"]) == 1000


async def _produce(broker: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, max_request_size=4 * MAX_RECORD_BYTES)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


@pytest.mark.kafka
def test_publish_refuses_it_and_the_input_topic_limit_stops_bigger(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = new_topics("oversize-pub", partitions=1)
    path = write_jsonl(tmp_path / "huge.jsonl", [HUGE, VALID])
    done = cli("publish", str(path), *topics.flags(), broker=kafka_bootstrap)
    assert done.returncode == 1
    assert (
        f"line 1: {len(HUGE)} bytes, over the limit of {MAX_RECORD_BYTES}" in done.stderr.decode()
    )
    assert [r.value for r in read_topic(kafka_bootstrap, topics.input, expect=1)] == [VALID]
    with pytest.raises(KafkaError):  # the broker holds other clients to the same limit
        asyncio.run(_produce(kafka_bootstrap, topics.input, [VALID + b" " * 1_100_000]))


@pytest.mark.kafka
def test_the_worker_dead_letters_a_truncated_copy_and_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = new_topics("oversize", partitions=1)
    limits = topic_limits(topics.input, topics.output, topics.dlq)
    asyncio.run(ensure_topics(kafka_bootstrap, [topics.input, topics.output, topics.dlq], 1,
                              configs=limits))  # fmt: skip
    asyncio.run(_produce(kafka_bootstrap, topics.input, [HUGE, VALID, TICK]))
    worker = Worker(kafka_bootstrap, topics, tmp_path / "worker.log", clock="event").start()
    try:
        worker.wait_ready(partitions=1)
        until = parse_instant("2026-12-12T00:00:00Z")
        reference = list(Replayer(load_policy()).run([HUGE, VALID], until))
        assert len(reference) >= 3
        records = read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=90)
        assert sla_events(records) == reference, worker.log_tail()
        [letter] = read_topic(kafka_bootstrap, topics.dlq, expect=1, timeout=30, settle=1.0)
        headers = dict(letter.headers)
        assert letter.value == HUGE[:TRUNCATED_COPY_BYTES]
        assert headers["escalator.truncated"] == str(len(HUGE)).encode()
        assert headers["escalator.source.offset"] == b"0"
        assert headers["escalator.reason"].startswith(b"field 'severity'")
        assert worker.health() is not None, worker.log_tail()
    finally:
        worker.stop()
