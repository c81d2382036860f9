"""The Faust worker: the input topic folded into per-ticket states, one partition at a time.

Data flow for a batch of records of input partition p (all inside p's Kafka transaction under
`exactly_once`): the consumer hands the fetched batch to `Engine._on_batch` ->
`PartitionEngine.process_batch` (fires p's due timers, applies each event, all or nothing per
record) -> SLA events to `sla-events` partition p, rejected records (original bytes) to the
dead-letter topic partition p, each changed ticket's state once to changelog partition p.
Everything a record causes goes to partition p of each topic, because faust-streaming keys its
transactional producers by source partition ("{app}-{group}-{p}").

Everything that touches Faust's internals is in `streams.engine.faust_batch` (the batch
consumer, the commit lock, the transactional producers, the recovery hooks).

Timers: every owned partition has a `PartitionEngine` with a `TimerIndex`, re-armed from the
changelog when the partition is assigned (`Engine.recover`). In `wall` mode a ticker writes a
`clock.tick` to partition p whenever p's earliest timer is due, so timer emission runs through
the same consume-transform-produce path as events (exactly once, replayable after a crash) and
costs nothing on partitions with nothing due.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, cast

import faust
import orjson
import prometheus_client
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from deploy.logs import record_fields
from events.cloudevents import sla_event_headers, source_of
from events.codec import sanitise
from events.instants import SECOND, Micros, format_instant
from streams.engine import faust_batch
from streams.engine.health import BrokerHealth, quiet_repeats
from streams.engine.processor import (
    DEFAULT_ALLOWED_LATENESS,
    BatchResult,
    ClockMode,
    PartitionEngine,
)
from streams.engine.topics import PRODUCER_MAX_REQUEST_BYTES, dead_letter
from streams.sla.replay import DEFAULT_MAX_DELAY
from streams.sla.rules import Policy

log = logging.getLogger("escalator.engine")

TABLE_NAME = "sla-state"
PRODUCER_BATCH_BYTES = 512 * 1024
"""Bytes per partition per produce request. A partition has one batch in flight at a time
(idempotent producer), so the 16 KiB default capped output at one small batch per round trip."""


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
    max_delay: Micros = DEFAULT_MAX_DELAY
    """Bounded out-of-orderness of the event-time watermark (event clock; wall clock in a
    backlog), microseconds."""
    allowed_lateness: Micros = DEFAULT_ALLOWED_LATENESS
    """Wall clock: how far the watermark trails the wall time when caught up, microseconds."""

    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.broker.split(",") if s.strip()]


def wall_now() -> Micros:
    return time.time_ns() // 1000


class Metrics:
    """Prometheus series of one worker, in a registry of its own (several apps per test run).

    Updated once per batch (counters by the batch's totals), gauges once a second and on
    every scrape. No `_created` series (`disable_created_metrics`).
    """

    def __init__(self, policy: Policy) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        events_in = Counter(
            "escalator_events_in", "Input records processed, by kind", ["kind"], registry=r
        )
        self.events_in = {kind: events_in.labels(kind) for kind in ("event", "tick", "invalid")}
        self.sla_out = Counter(
            "escalator_sla_events_out", "SLA events produced, by type", ["type"], registry=r
        )
        self._sla_out: dict[str, Any] = {}
        self.dead_letters = Counter(
            "escalator_dead_letters", "Input records sent to the dead-letter topic", registry=r
        )
        self.timer_faults = Counter(
            "escalator_timer_faults",
            "Tickets whose timer raised in the core, disarmed until their next event",
            registry=r,
        )
        self.open_tickets = Gauge(
            "escalator_open_tickets",
            "Tickets on owned partitions that are neither resolved nor closed",
            registry=r,
        )
        self.tickets_in_state = Gauge(
            "escalator_tickets_in_state",
            "Tickets with state on owned partitions (open, resolved and not yet closed)",
            registry=r,
        )
        self.tickets_with_timers = Gauge(
            "escalator_tickets_with_timers",
            "Tickets with at least one pending timer on owned partitions",
            registry=r,
        )
        self.owned_partitions = Gauge(
            "escalator_owned_partitions", "Input partitions this worker owns", registry=r
        )
        self.late_events = Counter(
            "escalator_late_events",
            "Ticket events dated before their partition's watermark when they came",
            registry=r,
        )
        self.retractions = Counter(
            "escalator_retractions",
            "sla.retracted corrections produced (a late event changed a fired timer)",
            registry=r,
        )
        self.beyond_horizon = Counter(
            "escalator_beyond_horizon",
            "Late events rejected as older than the correction horizon (dead-lettered)",
            registry=r,
        )
        self.lateness = Histogram(
            "escalator_timer_lateness_seconds",
            "Wall time of emission minus due_at, for live timers (wall clock, partition caught "
            "up, due since it caught up): a backlog's overdue timers are not counted",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 60.0),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "escalator_consumer_lag_records",
            "Input records not yet processed, in records, by input partition",
            ["partition"],
            registry=r,
        )
        Info("escalator_build", "Versions this worker runs", registry=r).info(
            {
                "version": version("escalator"),
                "faust_streaming": version("faust-streaming"),
                "aiokafka": version("aiokafka"),
                "policy": policy.name,
                "policy_version": policy.version,
            }
        )

    def count_batch(self, result: BatchResult) -> None:
        if result.events:
            self.events_in["event"].inc(result.events)
        if result.ticks:
            self.events_in["tick"].inc(result.ticks)
        if result.invalid:
            self.events_in["invalid"].inc(result.invalid)
        if result.dead_letters:
            self.dead_letters.inc(len(result.dead_letters))
        if result.faults:
            self.timer_faults.inc(len(result.faults))
        if result.late:
            self.late_events.inc(result.late)
        if result.retracted:
            self.retractions.inc(result.retracted)
        if result.beyond_horizon:
            self.beyond_horizon.inc(result.beyond_horizon)
        for kind, count in result.out_types.items():
            child = self._sla_out.get(kind)
            if child is None:
                child = self._sla_out[kind] = self.sla_out.labels(kind)
            child.inc(count)


class Engine:
    """The imperative shell: Faust app, topics, table, batch handler, ticker and web views."""

    def __init__(self, config: EngineConfig, policy: Policy) -> None:
        faust_batch.check_faust_version()
        self.config = config
        self.policy = policy
        self.metrics = Metrics(policy)
        self.partitions: dict[int, PartitionEngine] = {}
        self.offsets: dict[int, int] = {}
        self._recovery_started: float | None = None
        self._tick_producer: AIOKafkaProducer | None = None
        self.broker = BrokerHealth(config.bootstrap_list())
        self._changelog_reader: AIOKafkaConsumer | None = None
        self._tids: dict[int, str] = {}
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
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
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
        faust_batch.install_batch_path(app, self.input, self._on_batch)
        self.table = faust_batch.RecoveryTable(
            app,
            name=TABLE_NAME,
            default=None,
            beacon=app.tables.beacon,
            partitions=cfg.partitions,
            schema=faust.Schema(**raw),
            key_type=bytes,
            value_type=bytes,
        )
        self.table.hooks = self
        app.tables.add(self.table)
        if cfg.clock == "wall":
            app.timer(interval=cfg.tick_interval, name="ticker")(self._tick)
        app.timer(interval=1.0, name="gauges")(self._update_gauges)
        app.timer(interval=2.0, name="broker-probe")(self._probe_broker)
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

    # -- the batch path

    async def _on_batch(self, batches: dict[int, list[Any]]) -> None:
        """Process one fetch, partition by partition; a failed send ends the process.

        Like a SIGKILL: the open transaction is aborted when the partition's next owner starts,
        and the batch is processed again from the last committed offset. A graceful stop
        would commit the transaction with part of this batch's output in it.
        """
        try:
            for partition, records in batches.items():
                await self._process(partition, records)
        except Exception:
            first = next(iter(batches.values()))[0]
            log.critical(
                "cannot produce the output of a batch from %s[%d]@%d; exiting",
                first.topic,
                first.partition,
                first.offset,
                exc_info=True,
                extra=record_fields(first),
            )
            logging.shutdown()
            os._exit(70)

    def _partition_engine(self, p: int) -> PartitionEngine:
        cfg = self.config
        return PartitionEngine(p, self.policy, cfg.clock, cfg.max_delay, cfg.allowed_lateness)

    def _behind(self, p: int, last_offset: int) -> int:
        """Records of input partition p after `last_offset`, from the fetched high watermark."""
        try:
            high = self.app.consumer.highwater(TP(self.config.input_topic, p))
        except Exception:
            return 0
        return max(high - last_offset - 1, 0) if high is not None else 0

    def _producer(self, partition: int) -> Any:
        if not self.config.exactly_once:
            return faust_batch.plain_producer(self.app)
        tid = self._tids.get(partition)
        if tid is None:
            tid = faust_batch.transactional_id(self.app, self.config.input_topic, partition)
            self._tids[partition] = tid
        return faust_batch.transactional_producer(self.app, tid)

    async def _process(self, p: int, records: list[Any]) -> None:
        """One partition's records: fold them, then produce everything into p's transaction."""
        engine = self.partitions.get(p)
        if engine is None:
            engine = self.partitions[p] = self._partition_engine(p)
        now = wall_now()
        behind = self._behind(p, records[-1].offset)
        result = engine.process_batch([r.value for r in records], now, behind)
        self.offsets[p] = records[-1].offset
        producer = self._producer(p)
        send = producer.send
        cfg = self.config
        output = cfg.output_topic
        source = self._ce_source
        for key, value, event in result.output:
            await send(
                output, value, key=key, partition=p, headers=sla_event_headers(event, source)
            )
        for position, stage, reason in result.dead_letters:
            await self._dead_letter(send, records[position], stage, reason)
        changelog = self.table.changelog_topic_name
        for key, state in result.changelog:
            await send(changelog, state, key=key, partition=p)
        for ticket_id, reason in result.faults:
            log.error("ticket %s on partition %d: timer failed (%s); disarmed until its next "
                      "event", sanitise(ticket_id), p, reason)  # fmt: skip
        self.metrics.count_batch(result)
        if result.timer_dues and cfg.clock == "wall":
            observe = self.metrics.lateness.observe
            for due in result.timer_dues:
                observe(max((now - due) / SECOND, 0.0))

    async def _dead_letter(self, send: Any, record: Any, stage: str, reason: str) -> None:
        key, value, headers = dead_letter(
            record.key, record.value, reason, stage, record.topic, record.partition, record.offset
        )
        await send(
            self.config.dlq_topic, value, key=key, partition=record.partition, headers=headers
        )
        # Ids only: reasons name fields and ticket ids, never free text.
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            reason[:300],
            extra=record_fields(record, event_id=_event_id(record.value, stage)),
        )

    # -- partition ownership and recovery

    def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
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
        self.partitions.pop(partition, None)
        self._tids.pop(partition, None)
        with contextlib.suppress(KeyError):
            self.metrics.consumer_lag.remove(str(partition))

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
        engines = {p: self._partition_engine(p) for p in wanted}
        records = 0
        pending = {tp for tp in tps if ends[tp] > 0}
        last_log = started
        while pending:
            batches = await reader.getmany(timeout_ms=500, max_records=20_000)
            for tp, batch in batches.items():
                engine = engines[tp.partition]
                for record in batch:
                    engine.load(record.key.decode(), record.value)
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

    def on_recovered(self, active_tps: Any) -> None:
        changelog = self.table.changelog_topic_name
        active = sorted(tp.partition for tp in active_tps if tp.topic == changelog)
        for p in list(self.partitions):
            if p not in active:
                self._forget(p)
        for p in active:
            if p not in self.partitions:
                self.partitions[p] = self._partition_engine(p)
        took = time.monotonic() - (self._recovery_started or time.monotonic())
        for p in active:
            engine = self.partitions[p]
            head = engine.index.peek()
            log.info(
                "partition %d recovered: %d tickets in state, %d open, %d with timers, next due %s",
                p,
                len(engine.states),
                engine.open_tickets,
                len(engine.index),
                format_instant(head[0]) if head else "-",
            )
        log.info(
            "recovery complete in %.2f s: %d partitions, %d tickets",
            took,
            len(active),
            sum(len(e.states) for e in self.partitions.values()),
        )
        self.ready = True

    # -- wall clock

    async def _tick(self) -> None:
        """Write a clock.tick to each owned partition whose earliest timer is due.

        Never raises (an exception would end the worker): while the broker is down the tick
        producer cannot start or send; it is dropped and made again at the next tick, and the
        timers fire once ticks go through (late, never lost: they stay in the index).
        """
        now = wall_now()
        due = [p for p, e in self.partitions.items() if (d := e.next_due()) and d <= now]
        if not due or not self.ready:
            return
        try:
            producer = await self._ticks()
            body = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(now)})
            for p in due:
                await producer.send(self.config.input_topic, body, partition=p)
        except Exception as exc:
            log.error("cannot write clock ticks (%s); retrying", type(exc).__name__)
            producer, self._tick_producer = self._tick_producer, None
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _ticks(self) -> AIOKafkaProducer:
        if self._tick_producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.config.bootstrap_list(), linger_ms=0, acks=1
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._tick_producer = producer
        return self._tick_producer

    async def _probe_broker(self) -> None:
        quiet_repeats()  # after Faust has set up logging; idempotent
        await self.broker.probe()

    # -- observability

    async def _progress(self) -> None:
        """Every 10 s, log the offset processed per owned partition (ids and counts only)."""
        if self.offsets:
            log.info(
                "progress: last offsets %s, %d open tickets, %d with timers",
                dict(sorted(self.offsets.items())),
                self._open_tickets(),
                sum(len(e.index) for e in self.partitions.values()),
            )

    async def _update_gauges(self) -> None:
        m = self.metrics
        m.open_tickets.set(self._open_tickets())
        m.tickets_in_state.set(sum(len(e.states) for e in self.partitions.values()))
        m.tickets_with_timers.set(sum(len(e.index) for e in self.partitions.values()))
        m.owned_partitions.set(len(self.partitions))
        consumer = self.app.consumer
        for p in list(self.partitions):
            try:
                high = consumer.highwater(TP(self.config.input_topic, p))
            except Exception:
                continue
            if high is not None:
                m.consumer_lag.labels(str(p)).set(max(high - self.offsets.get(p, -1) - 1, 0))

    def _open_tickets(self) -> int:
        return sum(e.open_tickets for e in self.partitions.values())

    async def _metrics_view(self, web: Any, request: Any) -> Any:
        await self._update_gauges()
        return web.bytes(
            generate_latest(self.metrics.registry),
            content_type="text/plain; version=0.0.4",
        )

    async def _health_view(self, web: Any, request: Any) -> Any:
        """200 `ok`; 503 `recovering` (state being read) or `degraded` (broker unreachable)."""
        status = "ok" if self.ready else "recovering"
        if not self.broker.reachable:
            status = "degraded"
        body = {
            "status": status,
            "broker": {
                "reachable": self.broker.reachable,
                "down_since": self.broker.down_since,
                "error": self.broker.error,
            },
            "clock": self.config.clock,
            "partitions": sorted(self.partitions),
            "open_tickets": self._open_tickets(),
            "tickets_in_state": sum(len(e.states) for e in self.partitions.values()),
            "policy": self.policy.ref(),
        }
        return web.json(body, status=200 if status == "ok" else 503)

    async def stop_extras(self) -> None:
        await self.broker.close()
        if self._tick_producer is not None:
            await self._tick_producer.stop()
            self._tick_producer = None
        if self._changelog_reader is not None:
            await self._changelog_reader.stop()
            self._changelog_reader = None


def build_engine(config: EngineConfig, policy: Policy) -> Engine:
    return Engine(config, policy)


def _event_id(value: bytes | None, stage: str) -> str | None:
    """The event id of a record the core rejected (it decoded, so it has one), for the log."""
    if stage != "rejected" or value is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        event_id = orjson.loads(value).get("event_id")
        return event_id if isinstance(event_id, str) else None
    return None
