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

log = logging.getLogger("escalator.engine")


class BrokerUnavailable(RuntimeError):
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
    bootstrap: str, names: Iterable[str], partitions: int, timeout: float = 30.0
) -> dict[str, int]:
    """Create missing topics with `partitions` partitions; returns every topic's count."""
    wanted = list(dict.fromkeys(names))
    admin = await _admin(bootstrap, time.monotonic() + timeout)
    try:
        existing = await partition_counts(admin, wanted)
        missing = [n for n in wanted if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, partitions, 1) for n in missing], timeout_ms=10_000
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


async def check_broker(bootstrap: str, timeout: float = 30.0) -> None:
    admin = await _admin(bootstrap, time.monotonic() + timeout)
    await admin.close()
