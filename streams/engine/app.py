"""The worker: the input topic folded into per-ticket states, one partition at a time.

The engine owns a consume-transform-produce loop on aiokafka (the shape of
`projections.projector`): a consumer in the group `app_id` (read_committed, no auto-commit), a
rebalance listener, and one transactional producer per owned input partition. For the records
of input partition p: `PartitionEngine.process_batch` (fires p's due timers, applies each
event, all or nothing per record) -> SLA events to `sla-events` partition p, rejected records
(original bytes) to the dead-letter topic partition p, each changed ticket's state to changelog
partition p, and the input offset after the last record, all in p's open transaction, which is
committed every `commit_interval` seconds (and before any revocation or stop).

Who owns what (the engine README has the table): the consumer's position is ours, set once per
assignment from the committed offset read after the fence; offsets are committed only by
`send_offsets_to_transaction` inside the transaction that holds their output; recovery reads
the changelog partition to its end before the partition's first record is processed.

Timers: every owned partition has a `PartitionEngine` with a `TimerIndex`, re-armed from the
changelog when the partition is assigned. In `wall` mode an alarm (`loop.call_later`) is set at
the owned partitions' next due instant; when it rings, each caught-up partition whose timers
are due fires them (`PartitionEngine.fire_due`) into its own transaction, with the changed
states on the changelog, and that transaction is committed at once: a timer's output and the
state that says it fired commit or abort together (exactly once; docs/engine-internals.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import orjson
import prometheus_client
from aiohttp import web
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from base.logs import quiet_repeats, record_fields
from events.cloudevents import sla_event_headers, source_of
from events.codec import sanitise
from events.instants import SECOND, Micros, format_instant
from streams.engine.health import BrokerHealth
from streams.engine.policy_topic import PolicyFollower, apply_records, open_book, rollout_record
from streams.engine.processor import (
    BatchResult,
    PartitionEngine,
)
from streams.engine.settings import EngineSettings
from streams.engine.topics import PRODUCER_MAX_REQUEST_BYTES, dead_letter
from streams.sla.rules import Policy
from streams.sla.versions import BEGINNING, PolicyBook

log = logging.getLogger("escalator.engine")

TABLE_NAME = "sla-state"
PRODUCER_BATCH_BYTES = 512 * 1024
"""Bytes per partition per produce request. A partition has one batch in flight at a time
(idempotent producer), so the 16 KiB default capped output at one small batch per round trip."""
FETCH_MAX_RECORDS = 10_000
"""Records per `getmany`: enough to amortise a loop turn, small enough to keep a turn short."""
EXIT_OUTPUT_FAILED = 70
"""Exit status when a transaction cannot be completed (EX_SOFTWARE): see `Engine._fail`."""


def changelog_topic(app_id: str) -> str:
    """`<app-id>-sla-state-changelog`: the name the Faust-based worker used, so a state written
    by it is recovered as is."""
    return f"{app_id}-{TABLE_NAME}-changelog"


def transactional_id(app_id: str, ticket_topic: str, partition: int) -> str:
    """One transactional id per input partition: a new owner of the partition fences the
    previous one (KIP-98 zombie fencing) and aborts its open transaction."""
    return f"{app_id}-{ticket_topic}-{partition}"


POLICY_POLL_INTERVAL = 0.2
"""Seconds between reads of the policy topic while running."""


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
        self.policy_kept = Counter(
            "escalator_policy_kept_tickets",
            "Tickets a rollout did not move: they stay on the version that attached them "
            "(its severity or a running metric is not in the new version), by version",
            ["version"],
            registry=r,
        )
        self.policy_versions = Gauge(
            "escalator_policy_versions",
            "Policy versions this worker knows (its base version and the policy topic's)",
            registry=r,
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
        if result.dead_letters or result.expired:
            self.dead_letters.inc(len(result.dead_letters) + len(result.expired))
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


@dataclass(slots=True)
class _Parked:
    """An input record parked in a ticket's state (`BatchResult.expired`), as `_dead_letter`
    reads a consumer record: its original key is the ticket id (the input's key)."""

    key: bytes
    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class _Owned:
    """One owned input partition: its fold, its transactional producer, its position."""

    engine: PartitionEngine
    producer: AIOKafkaProducer | None
    """The partition's transactional producer (None with `--at-least-once`)."""
    next_offset: int
    """The input offset of the next record to process."""
    committed: int = -1
    """The input offset last committed for the partition (its offsets are sent again only
    when they moved: a transaction of timer output alone carries none)."""
    pending: list[asyncio.Future[Any]] | None = None
    """Delivery futures of the open transaction's records; None while none is open."""
    not_before: Micros = 0
    """Wall time before which the alarm does not fire this partition again (not caught up
    yet, or a timer call failed)."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.engine.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.engine.on_assigned(list(assigned))


class Engine:
    """The imperative shell: consumer, per-partition transactions, recovery, ticker, web."""

    def __init__(self, settings: EngineSettings, policy: Policy) -> None:
        self.settings = settings
        """The worker's settings (`escalator run`: flags and environment)."""
        self.changelog = changelog_topic(settings.app_id)
        """The state changelog: compacted, co-partitioned with the input."""
        self.policy_topic = settings.policy_topic_of(settings.app_id)
        """The policy topic (`streams.engine.policy_topic`) read before processing and
        followed while running; "" for a single-file start (the `--policy` file only)."""
        self.max_delay: Micros = round(settings.max_delay * SECOND)
        """Bounded out-of-orderness of the event-time watermark, microseconds."""
        self.allowed_lateness: Micros = round(settings.allowed_lateness * SECOND)
        """Wall clock: how far the watermark trails the wall time when caught up, microseconds."""
        self.servers = [s.strip() for s in settings.broker.split(",") if s.strip()]
        """The bootstrap servers, one per item."""
        self.policy = policy
        self.metrics = Metrics(policy)
        self.owned: dict[int, _Owned] = {}
        """Partitions assigned, recovered and positioned: only these are processed."""
        self._retained: dict[int, tuple[PartitionEngine, int, int]] = {}
        """Revoked partitions' folds, next input offsets and changelog end offsets, reused if
        the partition comes back with both unchanged (nobody else processed a record or fired
        a timer on it meanwhile: timer output moves only the changelog)."""
        self.ready = False
        self.broker = BrokerHealth(self.servers)
        self.consumer: AIOKafkaConsumer | None = None
        self._plain: AIOKafkaProducer | None = None
        """At-least-once output producer (no transactions)."""
        self._wake = asyncio.Event()
        """Set by the alarm: some owned partition has timers to fire."""
        self._alarm: asyncio.TimerHandle | None = None
        self._changelog_reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        """Held while a batch is processed or transactions are committed, and by the rebalance
        listener: a rebalance never sees a transaction holding part of a batch."""
        self._txn_started: float | None = None
        self._stopping = asyncio.Event()
        self._ce_source = source_of(settings.app_id)
        self.book: PolicyBook | None = None
        """The versions read from the policy topic (None: single-file start)."""
        self._follower: PolicyFollower | None = None
        self._kept_logged: set[str] = set()
        """Versions whose kept tickets have been logged (once per version)."""
        self.policy_file: tuple[str, str] | None = None
        """(file name, TOML text) of the `--policy` version, to register on the policy topic
        when it is not there (`escalator run` sets it; None: never registered)."""

    # -- lifecycle

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or until the broker is unreachable at start-up
        for `connect_timeout` seconds (exit 1). A transaction that cannot complete ends the
        process with `EXIT_OUTPUT_FAILED`."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        runner = await self._serve_web()
        tasks: list[asyncio.Task[None]] = []
        try:
            consumer = await self._start_consumer()
            if consumer is None:
                return 1
            self.consumer = consumer
            if self.policy_topic:
                await self._read_policies()
                tasks.append(
                    asyncio.ensure_future(self._every(POLICY_POLL_INTERVAL, self._follow_policies))
                )
            consumer.subscribe([self.settings.ticket_topic], listener=_Listener(self))
            quiet_repeats()
            tasks = [
                asyncio.ensure_future(self._every(1.0, self._update_gauges)),
                asyncio.ensure_future(self._every(2.0, self.broker.probe)),
                asyncio.ensure_future(self._every(10.0, self._progress)),
            ]
            tasks.append(asyncio.ensure_future(self._timers()))
            await self._consume(consumer)
            return 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._shutdown()
            await runner.cleanup()

    async def _start_consumer(self) -> AIOKafkaConsumer | None:
        """Start the group consumer, retrying until `connect_timeout` (None after that)."""
        cfg = self.settings
        deadline = time.monotonic() + cfg.connect_timeout
        attempt = 0
        while True:
            attempt += 1
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.servers,
                group_id=cfg.app_id,
                client_id=f"{cfg.app_id}-worker",
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                session_timeout_ms=int(cfg.session_timeout * 1000),
                heartbeat_interval_ms=int(cfg.heartbeat_interval * 1000),
                rebalance_timeout_ms=int(cfg.rebalance_timeout * 1000),
                max_poll_interval_ms=max(300_000, int(cfg.rebalance_timeout * 1000)),
                fetch_max_wait_ms=max(10, int(cfg.commit_interval * 1000)),
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            try:
                await consumer.start()
                return consumer
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                if time.monotonic() >= deadline or self._stopping.is_set():
                    log.error(
                        "Kafka broker %s unreachable after %d attempts (%s); exiting",
                        cfg.broker, attempt, type(exc).__name__,
                    )  # fmt: skip
                    return None
                log.warning("broker not reachable yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(0.5 * attempt, 3.0))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """The loop: fetch, fold and produce into each partition's open transaction, commit
        every `commit_interval`."""
        interval = self.settings.commit_interval
        stopping = self._stopping
        while not stopping.is_set():
            wait = interval
            if self._txn_started is not None:
                wait = max(0.0, interval - (time.monotonic() - self._txn_started))
            batches = await consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=FETCH_MAX_RECORDS
            )
            async with self._lock:
                try:
                    if batches:
                        await self._process_all(batches)
                        self._arm()
                    if (
                        self._txn_started is not None
                        and time.monotonic() - self._txn_started >= interval
                    ):
                        await self._commit_all()
                except Exception:
                    self._fail(batches)

    async def _read_policies(self) -> None:
        """Before any input: the policy topic to its end (every version and rollout); the
        worker's own version is written there if the topic lacks it (`open_book`)."""
        topic = self.policy_topic
        follower = PolicyFollower(self.servers, topic)
        self._follower = follower
        book, register = open_book(self.policy, await follower.catch_up(), wall_now())
        if register is not None and self.policy_file is not None:
            source, text = self.policy_file
            value = rollout_record(register, self.policy, source, text, wall_now())
            producer = AIOKafkaProducer(
                bootstrap_servers=self.servers, acks="all",
                enable_idempotence=True,
            )  # fmt: skip
            await producer.start()
            try:
                await producer.send_and_wait(
                    topic, value, key=register.version.encode(), partition=0
                )
            finally:
                await _stop(producer)
        self.book = book
        self.policy = book.newest
        self.metrics.policy_versions.set(len(book.entries))
        log.info(
            "policy topic %r read: %d versions, newest %s (%s)",
            topic, len(book.entries), self.policy.version, self.policy.digest[:19],
        )  # fmt: skip

    async def _follow_policies(self) -> None:
        """While running: new versions from the policy topic; every partition switches at
        each rollout's instant (its tickets are armed for it now)."""
        if self._follower is None or self.book is None:
            return
        values = await self._follower.poll()
        if not values:
            return
        async with self._lock:
            apply_records(self.book, values)
            self.policy = self.book.newest
            for owned in self.owned.values():
                owned.engine.set_policy(self.policy)
            for engine, _, _ in self._retained.values():
                engine.set_policy(self.policy)
            self.metrics.policy_versions.set(len(self.book.entries))
            self._arm()

    async def _shutdown(self) -> None:
        """Commit the open transactions, leave the group, close every client."""
        async with self._lock:
            try:
                await self._commit_all()
            except Exception:
                self._fail({})
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        for owned in self.owned.values():
            await _stop(owned.producer)
        self.owned.clear()
        await self.broker.close()
        if self._alarm is not None:
            self._alarm.cancel()
        await _stop(self._plain)
        if self._changelog_reader is not None:
            with contextlib.suppress(Exception):
                await self._changelog_reader.stop()
        if self._follower is not None:
            await self._follower.close()

    def _fail(self, batches: dict[Any, list[Any]]) -> None:
        """A send or commit failed: end the process at once, like a SIGKILL.

        The open transactions are aborted by the broker when the partitions' next owner (this
        worker restarted, or another) initialises their transactional ids, and their records
        are processed again from the committed offsets. A graceful stop would try to commit.
        """
        first = next((records[0] for records in batches.values() if records), None)
        log.critical(
            "cannot complete the transaction of a batch%s; exiting",
            "" if first is None else f" from {first.topic}[{first.partition}]@{first.offset}",
            exc_info=True,
            extra={} if first is None else record_fields(first),
        )
        logging.shutdown()
        os._exit(EXIT_OUTPUT_FAILED)

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("background job %s failed; retrying", getattr(job, "__name__", job))

    # -- the batch path

    async def _process_all(self, batches: dict[Any, list[Any]]) -> None:
        work = []
        for tp, records in batches.items():
            owned = self.owned.get(tp.partition)
            if owned is None or tp.topic != self.settings.ticket_topic or not records:
                continue  # fetched before a revocation, or before the partition was ready
            if records[0].offset < owned.next_offset:
                records = [r for r in records if r.offset >= owned.next_offset]
                if not records:
                    continue
            work.append(self._process(tp.partition, owned, records))
        if work:
            await asyncio.gather(*work)

    def _behind(self, p: int, last_offset: int, unknown: int = 0) -> int:
        """Records of input partition p after `last_offset`, from the last fetch's stable
        offset (read_committed); `unknown` before any fetch of p."""
        end = self._end_offset(p)
        return max(end - last_offset - 1, 0) if end is not None else unknown

    def _end_offset(self, p: int) -> int | None:
        if self.consumer is None:
            return None
        tp = TopicPartition(self.settings.ticket_topic, p)
        try:
            end = self.consumer.last_stable_offset(tp)
            if end is None:
                end = self.consumer.highwater(tp)
        except Exception:
            return None
        return end if isinstance(end, int) else None

    async def _process(self, p: int, owned: _Owned, records: list[Any]) -> None:
        """One partition's records: fold them, then hand everything to p's transaction."""
        producer = await self._open(owned)
        now = wall_now()
        last = records[-1].offset
        result = owned.engine.process_batch(
            [r.value for r in records], now, self._behind(p, last), [r.offset for r in records]
        )
        owned.next_offset = last + 1
        await self._produce(p, owned, producer, result, records, now)

    async def _open(self, owned: _Owned) -> AIOKafkaProducer:
        """The producer of a partition's output, its transaction begun if none is open (the
        at-least-once producer without transactions)."""
        producer = owned.producer
        if producer is None:
            producer = await self._plain_producer()
        elif owned.pending is None:
            await producer.begin_transaction()
            owned.pending = []
        if self._txn_started is None:
            self._txn_started = time.monotonic()
        return producer

    async def _produce(
        self,
        p: int,
        owned: _Owned,
        producer: AIOKafkaProducer,
        result: BatchResult,
        records: list[Any],
        now: Micros,
    ) -> None:
        """Hand a turn's output to p's open transaction (or the at-least-once producer)."""
        cfg = self.settings
        pending = owned.pending
        if pending is None:
            pending = owned.pending = []
        send = producer.send
        output = cfg.sla_topic
        source = self._ce_source
        for key, value, event in result.output:
            pending.append(
                await send(
                    output, value, key=key, partition=p, headers=sla_event_headers(event, source)
                )
            )
        for position, stage, reason in result.dead_letters:
            pending.append(await self._dead_letter(send, records[position], stage, reason))
        for key, value, reason, offset in result.expired:  # parked, then the watermark passed
            parked = _Parked(key, value, cfg.ticket_topic, p, offset)
            pending.append(await self._dead_letter(send, parked, "expired", reason))
        changelog = self.changelog
        for key, state in result.changelog:
            pending.append(await send(changelog, state, key=key, partition=p))
        for ticket_id, kept_version, reason in result.kept:
            self.metrics.policy_kept.labels(kept_version).inc()
            if kept_version not in self._kept_logged:
                self._kept_logged.add(kept_version)
                log.warning("policy version %s: ticket %s (and any others counted in "
                            "escalator_policy_kept_tickets) stays on the version that attached "
                            "it: %s", kept_version, sanitise(ticket_id), reason)  # fmt: skip
        for ticket_id, reason in result.faults:
            log.error("ticket %s on partition %d: timer failed (%s); disarmed until its next "
                      "event", sanitise(ticket_id), p, reason)  # fmt: skip
        self.metrics.count_batch(result)
        if result.timer_dues and cfg.clock == "wall":
            observe = self.metrics.lateness.observe
            for due in result.timer_dues:
                observe(max((now - due) / SECOND, 0.0))

    async def _commit_all(self) -> None:
        """Commit every open transaction with its input offset (in parallel); at-least-once:
        wait for delivery, then commit the offsets."""
        self._txn_started = None
        work = [
            self._commit(p, owned) for p, owned in self.owned.items() if owned.pending is not None
        ]
        if work:
            await asyncio.gather(*work)

    async def _commit(self, p: int, owned: _Owned) -> None:
        pending, owned.pending = owned.pending or [], None
        await asyncio.gather(*pending)
        offset = owned.next_offset
        offsets = {TopicPartition(self.settings.ticket_topic, p): offset}
        if owned.producer is None:
            if offset != owned.committed:
                assert self.consumer is not None
                await self.consumer.commit(offsets)
                owned.committed = offset
            return
        if offset != owned.committed:
            await owned.producer.send_offsets_to_transaction(offsets, self.settings.app_id)
        await owned.producer.commit_transaction()
        owned.committed = offset

    async def _dead_letter(
        self, send: Any, record: Any, stage: str, reason: str
    ) -> asyncio.Future[Any]:
        key, value, headers = dead_letter(
            record.key, record.value, reason, stage, record.topic, record.partition, record.offset
        )
        delivery: asyncio.Future[Any] = await send(
            self.settings.dlq_topic, value, key=key, partition=record.partition, headers=headers
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
        return delivery

    # -- partition ownership and recovery

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Before a rebalance: commit the open transactions, stop the revoked partitions'
        producers; keep their folds (with the changelog's end offsets after our last commit)
        in case they come back unchanged."""
        async with self._lock:
            try:
                await self._commit_all()
            except Exception:
                self._fail({})
            mine = [
                tp.partition
                for tp in revoked
                if tp.topic == self.settings.ticket_topic and tp.partition in self.owned
            ]
            ends = await self._changelog_ends(mine)
            for p in mine:
                owned = self.owned.pop(p)
                await _stop(owned.producer)
                if p in ends:
                    self._retained[p] = (owned.engine, owned.next_offset, ends[p])
                with contextlib.suppress(KeyError):
                    self.metrics.consumer_lag.remove(str(p))
            self.ready = False
            self._arm()
        log.info("rebalance: revoked input partitions %s", sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Fence, recover and position each assigned partition before any record of it is
        processed. Failing that within `rebalance_timeout` (the broker gone again), exit."""
        cfg = self.settings
        wanted = sorted(tp.partition for tp in assigned if tp.topic == cfg.ticket_topic)
        started = time.monotonic()
        deadline = started + max(cfg.rebalance_timeout, cfg.connect_timeout)
        async with self._lock:
            for p in list(self._retained):
                if p not in wanted:
                    del self._retained[p]
            while True:
                try:
                    await self._take(wanted)
                    break
                except (KafkaError, OSError) as exc:
                    if time.monotonic() >= deadline:
                        log.critical("cannot take partitions %s (%s); exiting", wanted,
                                     type(exc).__name__)  # fmt: skip
                        logging.shutdown()
                        os._exit(EXIT_OUTPUT_FAILED)
                    log.warning("taking partitions %s failed (%s); retrying", wanted,
                                type(exc).__name__)  # fmt: skip
                    await asyncio.sleep(1.0)
            self._retained.clear()
            self.ready = True
            self._arm()
        took = time.monotonic() - started
        for p in wanted:
            engine = self.owned[p].engine
            head = engine.index.peek()
            log.info(
                "partition %d recovered: %d tickets in state, %d open, %d with timers, next due %s",
                p, len(engine.states), engine.open_tickets, len(engine.index),
                format_instant(head[0]) if head else "-",
            )  # fmt: skip
        log.info(
            "rebalance: owning input partitions %s; recovery complete in %.2f s, %d tickets",
            wanted, took, sum(len(o.engine.states) for o in self.owned.values()),
        )  # fmt: skip

    async def _take(self, wanted: list[int]) -> None:
        """Fence (transactional producer per partition), read the committed offsets after the
        fence, reuse an unchanged retained fold or recover it from the changelog, seek."""
        cfg = self.settings
        consumer = self.consumer
        assert consumer is not None
        producers: dict[int, AIOKafkaProducer | None] = {}
        try:
            for p in wanted:
                producers[p] = await self._fence(p) if not cfg.at_least_once else None
            committed: dict[int, int] = {}
            for p in wanted:
                tp = TopicPartition(cfg.ticket_topic, p)
                offset = await consumer.committed(tp)
                if offset is None:
                    offset = (await consumer.beginning_offsets([tp]))[tp]
                committed[p] = offset
            engines: dict[int, PartitionEngine] = {}
            to_recover = []
            retained = [p for p in wanted if p in self._retained]
            ends = await self._changelog_ends(retained)  # after the fence: nothing in flight
            for p in wanted:
                kept = self._retained.get(p)
                if kept is not None and kept[1] == committed[p] and kept[2] == ends.get(p):
                    engines[p] = kept[0]
                else:
                    to_recover.append(p)
            engines.update(await self._recover(to_recover))
        except BaseException:
            for producer in producers.values():
                await _stop(producer)
            raise
        for p in wanted:
            tp = TopicPartition(cfg.ticket_topic, p)
            consumer.seek(tp, committed[p])
            self.owned[p] = _Owned(engines[p], producers[p], committed[p], committed[p])

    async def _fence(self, p: int) -> AIOKafkaProducer:
        """Start p's transactional producer. Its id's InitProducerId completes only once the
        previous owner's open transaction is aborted (or its commit finished), and fences that
        owner: a zombie can no longer write or commit offsets for p."""
        producer = self._output_producer(
            transactional_id(self.settings.app_id, self.settings.ticket_topic, p)
        )
        try:
            await producer.start()  # returns once it has its producer id: the fence is done
        except BaseException:
            await _stop(producer)
            raise
        return producer

    async def _recovery_consumer(self) -> AIOKafkaConsumer:
        if self._changelog_reader is None:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self.servers,
                isolation_level="read_committed",
                enable_auto_commit=False,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
            )
            await reader.start()
            self._changelog_reader = reader
        return self._changelog_reader

    async def _changelog_ends(self, partitions: list[int]) -> dict[int, int]:
        """The end offsets of changelog partitions (read_committed: past our committed
        transactions' markers); {} if the broker does not answer (nothing is retained then)."""
        if not partitions:
            return {}
        changelog = self.changelog
        tps = [TopicPartition(changelog, p) for p in partitions]
        try:
            reader = await self._recovery_consumer()
            ends = await reader.end_offsets(tps)
        except (KafkaError, OSError) as exc:
            log.warning("changelog end offsets unavailable (%s): the partitions will be "
                        "recovered if they come back", type(exc).__name__)  # fmt: skip
            return {}
        return {tp.partition: ends[tp] for tp in tps}

    async def _recover(self, wanted: list[int]) -> dict[int, PartitionEngine]:
        """Read changelog partitions to their end (read_committed): states + timers.

        Exact by construction: the reader's position passes commit and abort markers, so
        reaching the end offset means every committed record has been applied.
        """
        if not wanted:
            return {}
        started = time.monotonic()
        reader = await self._recovery_consumer()
        changelog = self.changelog
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
        for engine in engines.values():
            engine.set_policy(self.policy)  # arm open tickets for a pending rollout
        took = time.monotonic() - started
        log.info(
            "read %d changelog records of partitions %s in %.2f s (%.0f records/s)",
            records,
            wanted,
            took,
            records / took if took > 0 else 0.0,
        )
        return engines

    def _partition_engine(self, p: int) -> PartitionEngine:
        cfg = self.settings
        return PartitionEngine(
            p, self.policy, cfg.clock, self.max_delay, self.allowed_lateness, cfg.storm_limit
        )

    # -- producers outside transactions

    def _output_producer(self, transactional_id: str | None) -> AIOKafkaProducer:
        """An idempotent producer for SLA events, dead letters and changelog records
        (transactional when `transactional_id` is given); not started."""
        return AIOKafkaProducer(
            bootstrap_servers=self.servers,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=PRODUCER_BATCH_BYTES,
            max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        )

    async def _plain_producer(self) -> AIOKafkaProducer:
        if self._plain is None:
            producer = self._output_producer(None)
            await producer.start()
            self._plain = producer
        return self._plain

    # -- timers at their instant

    def _arm(self) -> None:
        """Set the alarm at the earliest instant an owned partition has timers to fire
        (`PartitionEngine.next_fire`, or later while it may not fire yet: `not_before`)."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        when: Micros | None = None
        for owned in self.owned.values():
            due = owned.engine.next_fire()
            if due is not None:
                due = max(due, owned.not_before)
                if when is None or due < when:
                    when = due
        if when is None:
            return
        delay = max(0.0, (when - wall_now()) / SECOND)
        self._alarm = asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _timers(self) -> None:
        """Fire timers when the alarm rings (`_fire_due`), then set it again."""
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            async with self._lock:
                try:
                    await self._fire_due()
                except Exception:
                    self._fail({})
                self._arm()

    async def _fire_due(self) -> None:
        """Each owned partition whose timers are due fires them into its transaction
        (`PartitionEngine.fire_due`), and those transactions are committed at once.

        Wall clock: only a caught-up partition fires here (nothing fetched or on the broker
        behind its last record: a backlog fires its timers as its records are processed, in
        event time). While the broker is unreachable nothing fires: the timers stay in the
        index and fire once it answers again (late, never lost)."""
        now = wall_now()
        if not self.ready or not self.broker.reachable:
            for owned in self.owned.values():
                owned.not_before = now + SECOND
            return
        wall = self.settings.clock == "wall"
        fired: list[tuple[int, _Owned]] = []
        for p, owned in self.owned.items():
            due = owned.engine.next_fire()
            if due is None or due > now or owned.not_before > now:
                continue
            if wall and self._behind(p, owned.next_offset - 1, unknown=1) > 0:
                owned.not_before = now + SECOND // 20  # its records fire its timers
                continue
            result = owned.engine.fire_due(now)
            if result.dead_letters:  # a fault outside any ticket's timer, all undone
                log.error("partition %d: firing timers failed (%s); retrying in 1 s", p,
                          result.dead_letters[0][2])  # fmt: skip
                owned.not_before = now + SECOND
                continue
            if result.output or result.changelog or result.expired:
                await self._produce(p, owned, await self._open(owned), result, [], now)
                fired.append((p, owned))
        if fired:
            await asyncio.gather(*(self._commit(p, owned) for p, owned in fired))
            if all(owned.pending is None for owned in self.owned.values()):
                self._txn_started = None

    # -- observability

    async def _progress(self) -> None:
        """Every 10 s, log the next offset per owned partition (ids and counts only)."""
        if self.owned:
            log.info(
                "progress: next offsets %s, %d open tickets, %d with timers",
                {p: o.next_offset for p, o in sorted(self.owned.items())},
                self._open_tickets(),
                sum(len(o.engine.index) for o in self.owned.values()),
            )

    async def _update_gauges(self) -> None:
        m = self.metrics
        engines = [o.engine for o in self.owned.values()]
        m.open_tickets.set(self._open_tickets())
        m.tickets_in_state.set(sum(len(e.states) for e in engines))
        m.tickets_with_timers.set(sum(len(e.index) for e in engines))
        m.owned_partitions.set(len(self.owned))
        for p, owned in list(self.owned.items()):
            end = self._end_offset(p)
            if end is not None:
                m.consumer_lag.labels(str(p)).set(max(end - owned.next_offset, 0))

    def _open_tickets(self) -> int:
        return sum(o.engine.open_tickets for o in self.owned.values())

    async def _serve_web(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_view)
        app.router.add_get("/health", self._health_view)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.host, self.settings.port).start()
        return runner

    async def _metrics_view(self, request: web.Request) -> web.Response:
        await self._update_gauges()
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def _versions(self) -> list[dict[str, Any]]:
        """The versions known, base first: label, digest, mode and instant (None: the base)."""
        assert self.book is not None
        return [
            {
                "version": rollout.version,
                "digest": rollout.digest,
                "mode": rollout.mode,
                "at": None if rollout.instant == BEGINNING else format_instant(rollout.instant),
            }
            for rollout, _ in self.book.entries
        ]

    async def _health_view(self, request: web.Request) -> web.Response:
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
            "clock": self.settings.clock,
            "partitions": sorted(self.owned),
            "open_tickets": self._open_tickets(),
            "tickets_in_state": sum(len(o.engine.states) for o in self.owned.values()),
            "policy": self.policy.ref(),
            "policy_versions": [] if self.book is None else self._versions(),
        }
        return web.json_response(
            body, status=200 if status == "ok" else 503, dumps=lambda o: orjson.dumps(o).decode()
        )


async def _stop(client: Any) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            await client.stop()


def build_engine(settings: EngineSettings, policy: Policy) -> Engine:
    return Engine(settings, policy)


def _event_id(value: bytes | None, stage: str) -> str | None:
    """The event id of a record the core rejected (it decoded, so it has one), for the log."""
    if stage not in ("rejected", "expired") or value is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        event_id = orjson.loads(value).get("event_id")
        return event_id if isinstance(event_id, str) else None
    return None
