"""The Kafka shell of the projections: consume both topics, hand batches to the Store.

All logic lives in `projections.store` / `projections.model`; this module only moves records.
Offsets are owned by the database (stored with the rows), not by Kafka: on every partition
assignment the consumer seeks to the stored offset, so a crash between the DB commit and a
Kafka commit cannot re-apply or skip anything. Kafka commits are made too, purely so that
lag shows up in the usual tools.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from projections.db import Database
from projections.schema import migrate, truncate
from projections.store import Kind, Record, Store
from streams.sla.rules import Policy

log = logging.getLogger("escalator.projections")


@dataclass(frozen=True, slots=True)
class Topics:
    tickets: str = "ticket-events"
    sla: str = "sla-events"

    def kind(self, topic: str) -> Kind:
        return "ticket" if topic == self.tickets else "sla"


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, resume each partition exactly after the last record the DB holds."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.projector.seek_stored(list(assigned))


class Projector:
    """Consumer group on ticket-events and sla-events maintaining the read models."""

    def __init__(
        self,
        db_target: str,
        policy: Policy,
        bootstrap: str,
        topics: Topics | None = None,
        group_id: str = "escalator-projections",
        max_records: int = 2000,
    ) -> None:
        self.db = Database(db_target)
        migrate(self.db)
        self.store = Store(self.db, policy)
        self.bootstrap = bootstrap
        self.topics = topics or Topics()
        self.group_id = group_id
        self.max_records = max_records
        self.consumer: AIOKafkaConsumer | None = None
        self.lag_stale_after = 30.0
        """Seconds after which a lag measure no longer counts (the loop is stuck)."""
        self.metadata_max_age_ms = 5000
        """How often the consumer refreshes cluster metadata: a subscribed topic created after
        the start is picked up within this (aiokafka's default, 5 minutes, left the SLA
        events of a topic created later unprojected for that long)."""
        self._missing: list[str] = []
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at: float | None = None
        self._applying = asyncio.Lock()
        """Held while a batch is applied and while a rebalance seeks: a seek never reads the
        stored offsets in the middle of a batch (which would re-deliver that batch)."""

    def _consumer(self, group: str | None) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            metadata_max_age_ms=self.metadata_max_age_ms,
        )

    def lag(self) -> dict[tuple[str, int], int] | None:
        """Records between this projector's position and the end (last stable offset) of each
        partition it owns, as measured after its last poll; None when it is not running, has
        not measured yet, or the measure is older than `lag_stale_after` seconds."""
        if self.consumer is None or self._lag_at is None:
            return None
        if time.monotonic() - self._lag_at > self.lag_stale_after:
            return None
        return dict(self._lag)

    def missing_topics(self) -> list[str]:
        """Subscribed topics the cluster's metadata does not have (yet), as of the last poll:
        while one is missing the projector is not caught up, whatever the lag says."""
        return list(self._missing) if self.consumer is not None else []

    async def _measure_lag(self) -> None:
        assert self.consumer is not None
        topics = (self.topics.tickets, self.topics.sla)
        self._missing = [t for t in topics if not self.consumer.partitions_for_topic(t)]
        lag: dict[tuple[str, int], int] = {}
        assigned = self.consumer.assignment()
        if not assigned:  # not in the group yet
            return
        for tp in assigned:
            end = self.consumer.last_stable_offset(tp)
            if end is None:  # nothing fetched for it yet: unknown, so not caught up
                return
            lag[(tp.topic, tp.partition)] = max(end - await self.consumer.position(tp), 0)
        self._lag, self._lag_at = lag, time.monotonic()

    async def seek_stored(self, partitions: list[TopicPartition]) -> None:
        assert self.consumer is not None
        async with self._applying:
            stored = await asyncio.to_thread(self.store.offsets)
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    async def _apply(self, batches: dict[TopicPartition, list[object]]) -> int:
        """One DB transaction per (topic, partition) batch, off the event loop."""
        assert self.consumer is not None
        total = 0
        for tp, messages in batches.items():
            records = [
                Record(tp.topic, tp.partition, m.offset, m.value)  # type: ignore[attr-defined]
                for m in messages
            ]
            if not records:
                continue
            async with self._applying:
                if self.consumer.assignment() and tp not in self.consumer.assignment():
                    continue  # revoked meanwhile: its new owner resumes from the DB offset
                total += await asyncio.to_thread(
                    self.store.apply_batch, self.topics.kind(tp.topic), records
                )
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until `stop` is set (or forever); every batch is applied before the next."""
        stop = stop or asyncio.Event()
        self.consumer = self._consumer(self.group_id)
        await self.consumer.start()
        try:
            self.consumer.subscribe(
                [self.topics.tickets, self.topics.sla], listener=_SeekToStored(self)
            )
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=300, max_records=self.max_records)
                if not batches:
                    await self._measure_lag()
                    continue
                await self._apply(batches)
                await self._measure_lag()
                try:
                    await self.consumer.commit(
                        {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
                    )
                except KafkaError as exc:  # informational only: the DB holds the real offsets
                    log.info("kafka offset commit skipped: %s", type(exc).__name__)
        finally:
            await self.consumer.stop()
            self.consumer = None
            self._lag_at = None

    async def rebuild(self, idle_ms: int = 0) -> int:
        """Empty the tables and replay both topics from their start up to their current end.

        Uses manual assignment (no group), so a rebuild never disturbs a live group's members.
        """
        await asyncio.to_thread(truncate, self.db)
        self.consumer = self._consumer(None)
        await self.consumer.start()
        total = 0
        try:
            partitions: list[TopicPartition] = []
            for topic in (self.topics.tickets, self.topics.sla):
                for p in sorted(await self._partitions(topic)):
                    partitions.append(TopicPartition(topic, p))
            if not partitions:
                return 0
            self.consumer.assign(partitions)
            await self.consumer.seek_to_beginning(*partitions)
            ends: dict[TopicPartition, int] = await self.consumer.end_offsets(partitions)
            while True:
                pending = [tp for tp in partitions if await self.consumer.position(tp) < ends[tp]]
                if not pending:
                    break
                batches = await self.consumer.getmany(
                    *pending, timeout_ms=500, max_records=self.max_records
                )
                total += await self._apply(batches)
        finally:
            await self.consumer.stop()
            self.consumer = None
        return total

    async def _partitions(self, topic: str) -> set[int]:
        """The topic's partitions, from the cluster metadata (an unassigned consumer has none)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        found = {int(p["partition"]) for d in described for p in d.get("partitions") or []}
        if not found:
            log.warning("topic %s has no partitions (missing?)", topic)
        return found

    def close(self) -> None:
        self.db.close()
