"""The Faust worker: one agent folds the input topic into a per-ticket table, per partition.

Data flow for a record on input partition p (all inside p's Kafka transaction under
`exactly_once`): decode -> `PartitionEngine.process` (fires p's due timers, applies the event)
-> state writes to the table and its changelog partition p -> SLA events to `sla-events`
partition p -> a rejected record, with its original bytes, to the dead-letter topic partition p.
Everything a record causes goes to partition p of each topic, because faust-streaming keys
its transactional producers by source partition ("{app}-{group}-{p}").

Two deviations from stock Faust usage, both for exactness:
- The table's memory store is written directly and the changelog record is produced with
  `await` through p's transactional producer, instead of `table[key] = value` whose changelog
  send goes through a background buffer that a transaction commit does not wait for.
- Faust commits from background tasks at any await point; `Engine` wraps the consumer's
  `commit` in a lock that the agent holds from the start of a batch of records until it has
  acked them all, so a transaction never contains half of a batch's output, nor output of an
  unacked record.

Timers: every owned partition has a `PartitionEngine` with a `TimerIndex`, re-armed from the
changelog records Faust replays on assignment (`SlaTable.apply_changelog_batch`). In `wall`
mode a ticker writes a `clock.tick` to partition p whenever p's earliest timer is due, so timer
emission runs through the same consume-transform-produce path as events (exactly once,
replayable after a crash) and costs nothing on partitions with nothing due.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from events.cloudevents import sla_event_headers, source_of
from events.instants import SECOND, Micros, format_instant, parse_instant
from streams.engine.processor import ClockMode, PartitionEngine, RecordResult
from streams.engine.topics import PRODUCER_MAX_REQUEST_BYTES, dead_letter
from streams.sla.rules import Policy

log = logging.getLogger("escalator.engine")

TABLE_NAME = "sla-state"
BATCH = 1000
"""Most records processed (and acked) together; see `Engine._fold`."""
BATCH_WAIT = 0.005
"""Seconds a batch waits for more records before it is processed."""
TIMER_TYPES = frozenset(
    {"sla.warning", "sla.breached", "ticket.escalated", "customer.notification_required"}
)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything a worker needs; the CLI fills it from flags and the environment."""

    broker: str
    app_id: str = "escalator"
    input_topic: str = "ticket-events"
    output_topic: str = "sla-events"
    dlq_topic: str = "ticket-events-dlq"
    partitions: int = 8
    clock: ClockMode = "wall"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    data_dir: str = "escalator-data"
    exactly_once: bool = True
    tick_interval: float = 0.2
    commit_interval: float = 0.2
    session_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    rebalance_timeout: float = 20.0

    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.broker.split(",") if s.strip()]


def wall_now() -> Micros:
    return time.time_ns() // 1000


class Metrics:
    """Prometheus series of one worker, in a registry of its own (several apps per test run)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "escalator_events_in", "Input records processed, by kind", ["kind"], registry=r
        )
        self.sla_out = Counter(
            "escalator_sla_events_out", "SLA events produced, by type", ["type"], registry=r
        )
        self.dead_letters = Counter(
            "escalator_dead_letters", "Input records sent to the dead-letter topic", registry=r
        )
        self.open_tickets = Gauge(
            "escalator_open_tickets", "Tickets with state on owned partitions", registry=r
        )
        self.armed_timers = Gauge(
            "escalator_armed_timers", "Tickets with a pending timer on owned partitions", registry=r
        )
        self.owned_partitions = Gauge(
            "escalator_owned_partitions", "Input partitions this worker owns", registry=r
        )
        self.lateness = Histogram(
            "escalator_timer_lateness_seconds",
            "Wall time of emission minus due_at, for timer-driven SLA events (wall clock)",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 60.0),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "escalator_consumer_lag", "Input records not yet processed", ["partition"], registry=r
        )


class SlaTable(faust.Table[bytes, bytes]):
    """The per-ticket state table; tells the engine what recovery replays and what moves."""

    engine: Engine | None = None

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.engine is not None:
            self.engine.on_changelog(events)

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.engine is not None:
            self.engine.on_rebalance(assigned, revoked, newly_assigned)
            await self.engine.prepare_recovery(assigned)

    def persisted_offset(self, tp: Any) -> int | None:
        """Tell Faust its recovery has nothing to read: the engine reads the changelog itself.

        Faust's own recovery cannot tell, under transactions, whether the records it has
        fetched have all been applied, and may declare recovery complete with part of a
        partition unread; `Engine.recover` reads each partition to its end offset instead.
        """
        if self.engine is not None:
            end = self.engine.changelog_ends.get(tp)
            if end is not None:
                return end - 1
        offset: int | None = super().persisted_offset(tp)
        return offset

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        if self.engine is not None:
            await self.engine.recover(active_tps)
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.engine is not None:
            self.engine.on_recovered(active_tps)


class Engine:
    """The imperative shell: Faust app, topics, table, agent, ticker and web views."""

    def __init__(self, config: EngineConfig, policy: Policy) -> None:
        self.config = config
        self.policy = policy
        self.metrics = Metrics()
        self.partitions: dict[int, PartitionEngine] = {}
        self.offsets: dict[int, int] = {}
        self._recovery_started: float | None = None
        self._processing = asyncio.Lock()
        self._tick_producer: AIOKafkaProducer | None = None
        self._changelog_reader: AIOKafkaConsumer | None = None
        self.changelog_ends: dict[Any, int] = {}
        self.ready = False
        self._ce_source = source_of(config.app_id)
        cfg = config
        self.app: Any = faust.App(
            cfg.app_id,
            broker=[f"kafka://{server}" for server in cfg.bootstrap_list()],
            store="memory://",
            processing_guarantee="exactly_once" if cfg.exactly_once else "at_least_once",
            topic_partitions=cfg.partitions,
            topic_replication_factor=1,
            table_standby_replicas=0,
            broker_commit_interval=cfg.commit_interval,
            broker_session_timeout=cfg.session_timeout,
            broker_heartbeat_interval=cfg.heartbeat_interval,
            broker_rebalance_timeout=cfg.rebalance_timeout,
            consumer_auto_offset_reset="earliest",
            recovery_consistency_check=False,
            web_enabled=True,
            web_port=cfg.web_port,
            web_bind=cfg.web_host,
            web_host=cfg.web_host,
            datadir=cfg.data_dir,
            autodiscover=False,
            producer_linger_ms=5,
            producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        )
        app = self.app
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.input = app.topic(cfg.input_topic, partitions=cfg.partitions, **raw)
        self.output = app.topic(cfg.output_topic, partitions=cfg.partitions, **raw)
        self.dlq = app.topic(cfg.dlq_topic, partitions=cfg.partitions, **raw)
        self.table = SlaTable(
            app,
            name=TABLE_NAME,
            default=None,
            beacon=app.tables.beacon,
            partitions=cfg.partitions,
            schema=faust.Schema(**raw),
            key_type=bytes,
            value_type=bytes,
        )
        self.table.engine = self
        app.tables.add(self.table)
        self._commit_locked = False
        app.agent(self.input, name="fold")(self._fold)
        if cfg.clock == "wall":
            app.timer(interval=cfg.tick_interval, name="ticker")(self._tick)
        app.timer(interval=1.0, name="gauges")(self._update_gauges)
        app.timer(interval=10.0, name="progress")(self._progress)
        engine = self

        async def metrics(view: Any, request: Any) -> Any:
            return await engine._metrics_view(view, request)

        async def health(view: Any, request: Any) -> Any:
            return await engine._health_view(view, request)

        app.page("/metrics")(metrics)
        app.page("/health")(health)

        async def close(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            await engine.stop_extras()

        app.on_before_shutdown.connect(cast(Any, close))

    # -- exactness plumbing

    def _install_commit_lock(self) -> None:
        """Serialise Faust's background commits with record processing (see module doc).

        Installed at the first rebalance, not in `__init__`: touching `app.consumer` before the
        Worker exists would freeze `app.in_transaction` to False.
        """
        if self._commit_locked:
            return
        self._commit_locked = True
        consumer = self.app.consumer
        original = consumer.commit
        lock = self._processing

        async def commit(*args: Any, **kwargs: Any) -> Any:
            async with lock:
                return await original(*args, **kwargs)

        consumer.commit = commit
        if self.config.exactly_once:
            self._commit_transactions_concurrently()

    def _commit_transactions_concurrently(self) -> None:
        """Commit the partitions' transactions in parallel rather than one after the other.

        Same steps as faust-streaming's `Producer.commit_transactions` (offsets into the
        transaction, commit, begin the next), but the per-partition round trips overlap, so
        the agent waits for one commit's latency instead of one per owned partition.
        """
        producer = self.app.producer

        async def one(tid: str, offsets: Any, group_id: str, start_new: bool) -> None:
            async with producer._trn_locks[tid]:
                txn = producer._transaction_producers.get(tid)
                if txn is None:
                    log.warning("commit for unknown transaction %s", tid)
                    return
                await txn.send_offsets_to_transaction(offsets, group_id)
                await txn.commit_transaction()
                if start_new:
                    await txn.begin_transaction()

        async def commit_transactions(
            tid_to_offset_map: Any, group_id: str, start_new_transaction: bool = True
        ) -> None:
            await asyncio.gather(
                *(
                    one(tid, offsets, group_id, start_new_transaction)
                    for tid, offsets in tid_to_offset_map.items()
                )
            )

        producer.commit_transactions = commit_transactions

    def _store(self) -> Any:
        """The table's in-memory dict (memory store), written without Faust's buffered send."""
        store = self.table.data
        return getattr(store, "data", store)

    def _transactional_id(self, partition: int) -> str | None:
        if not self.config.exactly_once:
            return None
        group = self.app.assignor.group_for_topic(self.config.input_topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Produce into partition p's transaction (or plainly, at-least-once)."""
        return await self.app.producer.send(
            topic,
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=self._transactional_id(partition),
        )

    # -- the agent

    async def _fold(self, stream: Any) -> None:
        """Process records in batches; a batch's output and its acks stay together.

        `take_events` hands over what has arrived (up to BATCH records, waiting at most
        BATCH_WAIT seconds). The commit lock is held from the first record of a batch until all
        of it is acked, so a transaction never holds part of a batch's output, nor output of
        unacked records. A batch whose processing has started is finished (shielded) before
        the agent stops: Faust would otherwise ack the whole batch when the agent is cancelled.
        """
        async for events in stream.take_events(BATCH, within=BATCH_WAIT):
            async with self._processing:
                work = asyncio.ensure_future(self._process_or_exit(events))
                try:
                    await asyncio.shield(work)
                except asyncio.CancelledError:
                    await work
                    _ack(events)
                    raise
                _ack(events)

    async def _process_or_exit(self, events: list[Any]) -> None:
        """A failed send (fenced producer, broker gone) ends the process at once.

        Like a SIGKILL: the open transaction is aborted when the partition's next owner starts,
        and the batch is processed again from the last committed offset. A graceful stop
        would commit the transaction with part of this batch's output in it.
        """
        message = events[0].message
        try:
            await self._process_batch([event.message for event in events])
        except Exception:
            log.critical(
                "cannot produce the output of a batch from %s[%d]@%d; exiting",
                message.topic,
                message.partition,
                message.offset,
                exc_info=True,
            )
            logging.shutdown()
            os._exit(70)

    async def _process_batch(self, messages: list[Any]) -> None:
        """Process each record; table writes go to the changelog once per ticket, at the end.

        The memory store is updated record by record (later records read it); the changelog is
        compacted, so only a ticket's last state in the batch needs producing, into the same
        transaction as the records' SLA events, before the batch is acked.
        """
        writes: dict[tuple[int, bytes], bytes | None] = {}
        for message in messages:
            await self._process(message, writes)
        changelog = self.table.changelog_topic_name
        for (partition, key), value in writes.items():
            await self._send(changelog, key, value, partition)

    async def _process(self, message: Any, writes: dict[tuple[int, bytes], bytes | None]) -> None:
        p: int = message.partition
        engine = self.partitions.get(p)
        if engine is None:
            engine = self.partitions[p] = PartitionEngine(p, self.policy, self.config.clock)
        data = self._store()
        now = wall_now()
        try:
            result = engine.process(message.value, lambda t: data.get(t.encode()), now)
        except Exception as exc:  # a bug in the core must not stop the partition
            log.exception(
                "internal error on %s[%d]@%d; dead-lettered", message.topic, p, message.offset
            )
            result = RecordResult("invalid", rejected=f"internal error: {type(exc).__name__}")
        self.offsets[p] = message.offset
        self.metrics.events_in.labels(result.kind).inc()
        for ticket_id, value in result.writes.items():
            key = ticket_id.encode()
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            writes[p, key] = value
        for record in result.emitted:
            await self._send(
                self.config.output_topic,
                record["ticket_id"].encode(),
                orjson.dumps(record),
                p,
                sla_event_headers(record, self._ce_source),
            )
            self.metrics.sla_out.labels(record["type"]).inc()
        if result.emitted and self.config.clock == "wall":
            self._observe_lateness(result, now)
        if result.rejected is not None:
            await self._dead_letter(message, result)

    def _observe_lateness(self, result: RecordResult, now: Micros) -> None:
        for record in result.emitted:
            if record["type"] in TIMER_TYPES:
                late = (now - parse_instant(record["due_at"])) / SECOND
                self.metrics.lateness.observe(max(late, 0.0))

    async def _dead_letter(self, message: Any, result: RecordResult) -> None:
        reason = result.rejected or ""
        stage = "decode" if result.kind == "invalid" else "rejected"
        key, value, headers = dead_letter(
            message.key, message.value, reason, stage, message.topic, message.partition,
            message.offset,
        )  # fmt: skip
        await self._send(self.config.dlq_topic, key, value, message.partition, headers)
        self.metrics.dead_letters.inc()
        # Ids only: reasons name fields and ticket ids, never free text.
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            reason[:300],
        )

    # -- partition ownership and recovery

    def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        self._install_commit_lock()
        topic = self.config.input_topic
        owned = sorted(tp.partition for tp in assigned if tp.topic == topic)
        gone = {tp.partition for tp in revoked if tp.topic == topic} - set(owned)
        new = sorted(tp.partition for tp in newly_assigned if tp.topic == topic)
        for p in gone:
            self._forget(p)
        self.ready = False
        self._recovery_started = time.monotonic()
        log.info(
            "rebalance: owning input partitions %s (new: %s, revoked: %s)", owned, new, sorted(gone)
        )

    def _forget(self, partition: int) -> None:
        """Drop a revoked partition's index and states; its new owner recovers them."""
        engine = self.partitions.pop(partition, None)
        if engine is None:
            return
        data = self._store()
        for ticket_id in engine.keys:
            data.pop(ticket_id.encode(), None)

    async def _recovery_consumer(self) -> AIOKafkaConsumer:
        if self._changelog_reader is None:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self.config.bootstrap_list(),
                isolation_level="read_committed",
                enable_auto_commit=False,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            await reader.start()
            self._changelog_reader = reader
        return self._changelog_reader

    async def prepare_recovery(self, assigned: Any) -> None:
        """Note the end offset of every assigned changelog partition (see `recover`)."""
        changelog = self.table.changelog_topic_name
        tps = [TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic == changelog]
        self.changelog_ends = {}
        if not tps:
            return
        reader = await self._recovery_consumer()
        ends = await reader.end_offsets(tps)
        self.changelog_ends = {TP(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def recover(self, active_tps: Any) -> None:
        """Read newly owned changelog partitions to their end (read_committed): states + timers.

        Runs before Faust resumes the input partitions. Exact by construction: the reader's
        position passes commit and abort markers, so reaching the end offset means every
        committed record has been applied.
        """
        changelog = self.table.changelog_topic_name
        wanted = sorted(
            tp.partition
            for tp in active_tps
            if tp.topic == changelog and tp.partition not in self.partitions
        )
        if not wanted:
            return
        started = time.monotonic()
        reader = await self._recovery_consumer()
        tps = [TopicPartition(changelog, p) for p in wanted]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        engines = {p: PartitionEngine(p, self.policy, self.config.clock) for p in wanted}
        data = self._store()
        records = 0
        pending = {tp for tp in tps if ends[tp] > 0}
        last_log = started
        while pending:
            batches = await reader.getmany(timeout_ms=500, max_records=20_000)
            for tp, batch in batches.items():
                engine = engines[tp.partition]
                for record in batch:
                    key, value = record.key, record.value
                    if value is None:
                        data.pop(key, None)
                    else:
                        data[key] = value
                    engine.load(key.decode(), value)
                records += len(batch)
            for tp in list(pending):
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if time.monotonic() - last_log > 5:
                last_log = time.monotonic()
                log.info("recovering partitions %s: %d changelog records read", wanted, records)
        reader.assign([])
        self.partitions.update(engines)
        took = time.monotonic() - started
        log.info(
            "read %d changelog records of partitions %s in %.2f s (%.0f records/s)",
            records,
            wanted,
            took,
            records / took if took > 0 else 0.0,
        )

    def on_changelog(self, events: list[Any]) -> None:
        """Recovery replays changelog records: re-arm each ticket's next timer."""
        for event in events:
            message = event.message
            p = message.partition
            engine = self.partitions.get(p)
            if engine is None:
                engine = self.partitions[p] = PartitionEngine(p, self.policy, self.config.clock)
            key = message.key
            engine.load(key.decode() if isinstance(key, bytes) else str(key), message.value)

    def on_recovered(self, active_tps: Any) -> None:
        changelog = self.table.changelog_topic_name
        active = sorted(tp.partition for tp in active_tps if tp.topic == changelog)
        for p in list(self.partitions):
            if p not in active:
                self._forget(p)
        for p in active:
            if p not in self.partitions:
                self.partitions[p] = PartitionEngine(p, self.policy, self.config.clock)
        took = time.monotonic() - (self._recovery_started or time.monotonic())
        for p in active:
            engine = self.partitions[p]
            head = engine.index.peek()
            log.info(
                "partition %d recovered: %d tickets, %d armed timers, next due %s",
                p,
                len(engine.keys),
                len(engine.index),
                format_instant(head[0]) if head else "-",
            )
        log.info(
            "recovery complete in %.2f s: %d partitions, %d tickets",
            took,
            len(active),
            sum(len(e.keys) for e in self.partitions.values()),
        )
        self.ready = True

    # -- wall clock

    async def _tick(self) -> None:
        """Write a clock.tick to each owned partition whose earliest timer is due."""
        now = wall_now()
        due = [p for p, e in self.partitions.items() if (h := e.index.peek()) and h[0] <= now]
        if not due or not self.ready:
            return
        producer = await self._ticks()
        body = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(now)})
        for p in due:
            await producer.send(self.config.input_topic, body, partition=p)

    async def _ticks(self) -> AIOKafkaProducer:
        if self._tick_producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.config.bootstrap_list(), linger_ms=0, acks=1
            )
            await producer.start()
            self._tick_producer = producer
        return self._tick_producer

    # -- observability

    async def _progress(self) -> None:
        """Every 10 s, log the offset processed per owned partition (ids and counts only)."""
        if self.offsets:
            log.info(
                "progress: last offsets %s, %d open tickets, %d armed timers",
                dict(sorted(self.offsets.items())),
                sum(len(e.keys) for e in self.partitions.values()),
                sum(len(e.index) for e in self.partitions.values()),
            )

    async def _update_gauges(self) -> None:
        m = self.metrics
        m.open_tickets.set(sum(len(e.keys) for e in self.partitions.values()))
        m.armed_timers.set(sum(len(e.index) for e in self.partitions.values()))
        m.owned_partitions.set(len(self.partitions))
        consumer = self.app.consumer
        for p in list(self.partitions):
            try:
                high = consumer.highwater(TP(self.config.input_topic, p))
            except Exception:
                continue
            if high is not None:
                m.consumer_lag.labels(str(p)).set(max(high - self.offsets.get(p, -1) - 1, 0))

    async def _metrics_view(self, web: Any, request: Any) -> Any:
        await self._update_gauges()
        return web.bytes(
            generate_latest(self.metrics.registry),
            content_type="text/plain; version=0.0.4",
        )

    async def _health_view(self, web: Any, request: Any) -> Any:
        body = {
            "status": "ok" if self.ready else "recovering",
            "clock": self.config.clock,
            "partitions": sorted(self.partitions),
            "open_tickets": sum(len(e.keys) for e in self.partitions.values()),
            "policy": self.policy.ref(),
        }
        return web.json(body, status=200 if self.ready else 503)

    async def stop_extras(self) -> None:
        if self._tick_producer is not None:
            await self._tick_producer.stop()
            self._tick_producer = None
        if self._changelog_reader is not None:
            await self._changelog_reader.stop()
            self._changelog_reader = None


def build_engine(config: EngineConfig, policy: Policy) -> Engine:
    return Engine(config, policy)


def _ack(events: list[Any]) -> None:
    """Mark records processed: their offsets may now go into the next commit."""
    for event in events:
        event.ack()
