"""The test broker is a real Kafka: groups, transactions and read_committed work."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]

from deploy.kafka_local import TopicFactory, unique_name

pytestmark = pytest.mark.kafka


async def _drain(consumer: Any, want: int, timeout: float = 30.0) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < want and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            records.extend(batch)
    return records


async def test_broker_describes_a_kraft_cluster(kafka_bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    assert cluster["brokers"], cluster
    assert cluster["controller_id"] >= 0


async def test_round_trip_through_a_consumer_group(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topic = await kafka_topics.create("roundtrip", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(30):
            await producer.send(topic, key=f"ticket-{i % 5}".encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    group = unique_name("roundtrip-group")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records = await _drain(consumer, 30)
        await consumer.commit()
        assigned = consumer.assignment()
        committed = {tp.partition: await consumer.committed(tp) for tp in assigned}
    finally:
        await consumer.stop()

    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(30))
    assert len(assigned) == 3
    # per-key order kept (same key -> same partition)
    by_key: dict[bytes, list[int]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(int(r.value[1:]))
    assert all(v == sorted(v) for v in by_key.values())
    assert sum(c or 0 for c in committed.values()) == 30

    # A second member of the same group resumes from the committed offsets.
    again = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await again.start()
    try:
        leftovers = await _drain(again, 1, timeout=3.0)
    finally:
        await again.stop()
    assert leftovers == []


async def test_transactions_commit_and_abort_under_read_committed(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topic = await kafka_topics.create("tx", partitions=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("tx-producer")
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1", key=b"a")
            await producer.send_and_wait(topic, b"committed-2", key=b"b")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted-1", key=b"a")
        await producer.send_and_wait(topic, b"aborted-2", key=b"b")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-3", key=b"a")
    finally:
        await producer.stop()

    async def read(isolation: str, want: int, timeout: float) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=unique_name(f"tx-{isolation}"),
            auto_offset_reset="earliest",
            isolation_level=isolation,
        )
        await consumer.start()
        try:
            return [r.value for r in await _drain(consumer, want, timeout)]
        finally:
            await consumer.stop()

    committed = await read("read_committed", 3, 30.0)
    # wait a little longer for anything that should not be there
    committed += await read("read_committed", 4, 2.0) if len(committed) != 3 else []
    assert sorted(committed) == [b"committed-1", b"committed-2", b"committed-3"]

    everything = await read("read_uncommitted", 5, 30.0)
    assert sorted(everything) == [
        b"aborted-1",
        b"aborted-2",
        b"committed-1",
        b"committed-2",
        b"committed-3",
    ]


async def test_transactional_consume_transform_produce(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    """Exactly-once shape the engine relies on: offsets committed inside the transaction."""
    source, sink = await asyncio.gather(
        kafka_topics.create("eos-in", partitions=1), kafka_topics.create("eos-out")
    )
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await plain.start()
    try:
        for i in range(5):
            await plain.send_and_wait(source, f"in-{i}".encode())
    finally:
        await plain.stop()

    group = unique_name("eos-group")
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("eos-tx")
    )
    await consumer.start()
    await producer.start()
    try:
        records = await _drain(consumer, 5)
        assert len(records) == 5
        async with producer.transaction():
            for r in records:
                await producer.send(sink, r.value.replace(b"in", b"out"))
            await producer.send_offsets_to_transaction(
                {TopicPartition(source, 0): records[-1].offset + 1}, group
            )
        # The commit markers land asynchronously after EndTxn returns: poll.
        committed = None
        deadline = time.monotonic() + 15
        while committed != 5 and time.monotonic() < deadline:
            committed = await consumer.committed(TopicPartition(source, 0))
            if committed != 5:
                await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        await consumer.stop()
    assert committed == 5

    reader = AIOKafkaConsumer(
        sink,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name("eos-reader"),
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await reader.start()
    try:
        out = [r.value for r in await _drain(reader, 5)]
    finally:
        await reader.stop()
    assert out == [f"out-{i}".encode() for i in range(5)]


def test_topic_factory_works_from_sync_tests(kafka_topics: TopicFactory) -> None:
    first = kafka_topics("sync", partitions=2)
    second = kafka_topics("sync", partitions=2)
    assert first != second
    assert first.startswith("topic_factory_works_from_sync_tests-sync-")
