"""`escalator notify redeliver`: send dead-lettered notifications again.

Reads a channel's dead-letter topic (`<dlq prefix><channel>`, every channel of the rules file
unless `--channel` names some) from its start up to its end as it is when the command starts,
keeps the records that match every filter given (dead-lettered within `--since`/`--until`, by
the record's Kafka timestamp, i.e. when it was dead-lettered; `--event-id`, repeatable), and
delivers each again through the notifier's own delivery (`Notifier._deliver`): the same
message, the same idempotency key (the SLA event id: `Idempotency-Key`, `Message-ID`, a
ticket action's note marker), the same retries, `Retry-After` and dead-lettering. So a
record redelivered twice, or redelivered after a first try that in fact landed, writes no
second note; a record that fails again is dead-lettered again with the new reason.

Records are delivered one at a time in the topic's order (a ticket's events keep their order).
The dead-letter topic is not changed (Kafka topics are append-only): a later run with the same
filters sends the same records again, harmlessly by the keys above.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from streams.notify.rules import Rules
from streams.notify.settings import NotifySettings
from streams.notify.worker import Notifier


@dataclass(frozen=True)
class Selection:
    """Which dead letters to send again; None or empty: no filter on that."""

    channels: list[str] = field(default_factory=list)
    since_ms: int | None = None
    until_ms: int | None = None
    """Kafka timestamps (Unix milliseconds), `since` inclusive, `until` exclusive."""
    event_ids: frozenset[str] = frozenset()

    def wants(self, timestamp_ms: int, event: Any) -> bool:
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and timestamp_ms >= self.until_ms:
            return False
        if self.event_ids:
            return isinstance(event, dict) and str(event.get("event_id")) in self.event_ids
        return True


async def dead_letters(broker: str, topic: str, timeout: float = 10.0) -> list[Any]:
    """Every record of `topic` from its start to its end as of now."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, isolation_level="read_committed"
    )
    await reader.start()
    try:
        found = reader.partitions_for_topic(topic)
        for _ in range(20):  # a fresh consumer may not have the topic's metadata yet
            if found:
                break
            await reader._client.force_metadata_update()  # as `escalator tail` does
            await asyncio.sleep(0.1)
            found = reader.partitions_for_topic(topic)
        parts = [TopicPartition(topic, p) for p in sorted(found or ())]
        if not parts:
            return []
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        ends = await reader.end_offsets(parts)
        out: list[Any] = []
        while [tp for tp, end in ends.items() if await reader.position(tp) < end]:
            batches = await reader.getmany(*parts, timeout_ms=int(timeout * 1000))
            if not batches:
                break
            for tp, records in batches.items():
                out.extend(r for r in records if r.offset < ends[tp])
        out.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        return out
    finally:
        await reader.stop()


async def redeliver(
    settings: NotifySettings, rules: Rules, selection: Selection
) -> dict[str, dict[str, int]]:
    """Send the selected dead letters again; per channel: records read, matched, delivered
    (or found done), dead-lettered again, skipped (another vendor's ticket)."""
    names = selection.channels or list(rules.channels)  # the caller checked the names
    notifier = Notifier(settings, rules)
    await notifier.start_delivery()
    report: dict[str, dict[str, int]] = {}
    try:
        for name in names:
            records = await dead_letters(settings.broker, settings.dlq_prefix + name)
            counts = {"read": len(records), "matched": 0, "delivered": 0, "dead_lettered": 0,
                      "skipped": 0}  # fmt: skip
            for record in records:
                try:
                    event = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(event, dict) or not selection.wants(record.timestamp, event):
                    continue
                counts["matched"] += 1
                before = dict(notifier.stats)
                await notifier._deliver(name, event, record.value, record)
                for stat in ("delivered", "dead_lettered", "skipped"):
                    counts[stat] += notifier.stats[stat] - before[stat]
            report[name] = counts
    finally:
        await notifier.stop()
    return report
