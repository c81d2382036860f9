"""Broker checks and topic creation shared by `run`, `publish`, `tail` and the tests.

The worker refuses to start against an unreachable broker after a bounded wait (a clear error
beats Faust retrying forever), and creates its three topics with the same partition count:
everything a record on input partition p causes is written to partition p of each topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError, TopicAlreadyExistsError  # type: ignore[import-untyped]

from base.errors import EscalatorError

log = logging.getLogger("escalator.engine")

MAX_RECORD_BYTES = 1_000_000
"""The largest input record (value) the system takes, end to end.

`escalator publish` refuses a bigger line, the input topic is created with a broker limit
just above it (`INPUT_TOPIC_MAX_BYTES`: a record batch also carries its key and framing), and
the worker's producer and dead-letter topic take a copy of any record the input topic holds.
"""
INPUT_TOPIC_MAX_BYTES = MAX_RECORD_BYTES + 16_384
"""`max.message.bytes` of the input topic (a batch of one record with its key and headers)."""
PRODUCER_MAX_REQUEST_BYTES = 2 * MAX_RECORD_BYTES
"""The worker producer's `max_request_size`, and `max.message.bytes` of its output topics:
a dead-letter copy of the largest input record, with its headers, always fits."""
DEAD_LETTER_COPY_BYTES = MAX_RECORD_BYTES
"""A record longer than this (from a topic created without our limit) is dead-lettered with
only its first `TRUNCATED_COPY_BYTES` and a header saying so: it is never lost, never
retried forever."""
TRUNCATED_COPY_BYTES = 64 * 1024
REASON_HEADER = "escalator.reason"
MAX_REASON_BYTES = 1_000


def dead_letter(
    key: bytes | None,
    value: bytes | None,
    reason: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead-letter copy of input record `topic[partition]@offset`.

    The copy holds the original bytes, unless key and value exceed `DEAD_LETTER_COPY_BYTES`:
    then the first `TRUNCATED_COPY_BYTES` of the value, the key cut to 1 KiB, and the header
    `escalator.truncated` with the original value length. The reason header is cut to
    `MAX_REASON_BYTES` (reasons name fields and ids, never free text: `events.codec`).
    """
    headers = [
        (REASON_HEADER, reason.encode()[:MAX_REASON_BYTES]),
        ("escalator.stage", stage.encode()),
        ("escalator.source.topic", topic.encode()),
        ("escalator.source.partition", str(partition).encode()),
        ("escalator.source.offset", str(offset).encode()),
    ]
    size = len(key or b"") + len(value or b"")
    if size > DEAD_LETTER_COPY_BYTES:
        original = len(value or b"")
        headers.append(("escalator.truncated", str(original).encode()))
        key = None if key is None else key[:1024]
        value = None if value is None else value[:TRUNCATED_COPY_BYTES]
    return key, value, headers


class BrokerUnavailable(EscalatorError, RuntimeError):
    """No broker answered within the allotted time."""


async def _admin(bootstrap: str, deadline: float) -> AIOKafkaAdminClient:
    """A started admin client, retrying until `deadline` (monotonic seconds)."""
    attempt = 0
    last: Exception | None = None
    while True:
        attempt += 1
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            return admin
        except (KafkaError, OSError) as exc:
            last = exc
            await admin.close()
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                f"Kafka broker {bootstrap} unreachable after {attempt} attempts: {last}"
            )
        await asyncio.sleep(min(1.0 * attempt, 3.0))


async def partition_counts(admin: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Partition counts of those of `names` that exist (listing first: a metadata request
    for a missing topic would let the broker auto-create it with its default count)."""
    present = set(await admin.list_topics())
    asked = [n for n in names if n in present]
    if not asked:
        return {}
    found: dict[str, int] = {}
    for item in await admin.describe_topics(asked):
        if item.get("error_code", 0) == 0 and item.get("partitions"):
            found[item["topic"]] = len(item["partitions"])
    return found


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    timeout: float = 30.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> dict[str, int]:
    """Create missing topics with `partitions` partitions; returns every topic's count.

    `configs` gives topic configs by name (e.g. `topic_limits`); existing topics are left as
    they are.
    """
    configs = configs or {}
    wanted = list(dict.fromkeys(names))
    admin = await _admin(bootstrap, time.monotonic() + timeout)
    try:
        existing = await partition_counts(admin, wanted)
        missing = [n for n in wanted if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, partitions, 1, topic_configs=configs.get(n, {})) for n in missing],
                    timeout_ms=10_000,
                )
            for _ in range(50):
                existing = await partition_counts(admin, wanted)
                if all(n in existing for n in wanted):
                    break
                await asyncio.sleep(0.1)
            log.info("created topics %s with %d partitions", missing, partitions)
        return existing
    finally:
        await admin.close()


def topic_limits(input_topic: str, *outputs: str) -> dict[str, dict[str, str]]:
    """Per-topic `max.message.bytes`: the input's record limit, room for copies on outputs."""
    limits = {name: {"max.message.bytes": str(PRODUCER_MAX_REQUEST_BYTES)} for name in outputs}
    limits[input_topic] = {"max.message.bytes": str(INPUT_TOPIC_MAX_BYTES)}
    return limits


async def check_broker(bootstrap: str, timeout: float = 30.0) -> None:
    admin = await _admin(bootstrap, time.monotonic() + timeout)
    await admin.close()
