"""Everything the engine takes from faust-streaming's and mode's internals, in one place.

Checked against faust-streaming == 0.15.3 (mode-streaming 0.7.1, aiokafka 0.14.0), the exact
version pinned in pyproject.toml; `check_faust_version` refuses any other, and a test says so.

Why internals at all: a Faust agent costs 4 asyncio tasks, 11 callbacks and 3 loop turns per
record (`Consumer._drain_messages` -> `Service.wait_first` per record, Stream, Event, channel
queues, sensors), which capped the engine at about a fifth of a bare transactional aiokafka
loop. Here the consumer hands each fetched batch of the input topic straight to the engine
(`BatchConsumer`), and Faust keeps doing what it does well: worker lifecycle, group membership
and rebalancing, one transactional producer per input partition, offset commits inside those
transactions, the table's changelog topic and its co-partitioned assignment, the web server.

What is overridden, and why each piece is still needed:
- `BatchConsumer._drain_messages`: input-topic records go to `on_batch` as one
  {partition: records} map per fetch; records of any other topic take Faust's own path.
- `BatchConsumer.commit` holds the batch lock: Faust commits from background tasks (the commit
  timer, a rebalance, shutdown), and a transaction must never commit part of a batch's output.
  A batch that has started is finished (shielded from cancellation) before the drain task
  stops, so a shutdown commit cannot catch it half-way either.
- `BatchConsumer._new_offset` / `_filter_tps_with_pending_acks`: the offset to commit is the
  one after a partition's last processed record, set once per batch (no per-record acks).
- `ConcurrentCommitProducer.commit_transactions`: the same steps as Faust's (offsets into the
  transaction, commit, begin the next) with the partitions' round trips overlapping.
- `transactional_producer`: the aiokafka producer of a partition's transaction, looked up
  once per batch (Faust's `Producer.send` looks it up, takes a lock and fires a signal per
  record).
- `RecoveryTable.persisted_offset`: Faust's changelog reader is not used (under transactions
  it may declare recovery done before every fetched record is applied); the engine reads each
  newly owned changelog partition itself, to its end offset, before Faust resumes the input.
- `quiet_worker`: Faust's worker at a level of `warn` or above adds a progress-spinner log
  handler and sets the root logger to DEBUG, so aiokafka then formats a debug line per send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from importlib.metadata import version
from typing import Any, Protocol, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

FAUST_VERSION = "0.15.3"
"""The faust-streaming release this module was read against and tested with."""

log = logging.getLogger("escalator.engine")

BatchHandler = Callable[[dict[int, list[Any]]], Awaitable[None]]
"""Processes {input partition: aiokafka ConsumerRecords in offset order}, produces their
output into each partition's transaction, and returns once it is all handed to the producers."""


def check_faust_version(installed: str | None = None) -> None:
    """Refuse a faust-streaming other than the one this module was checked against.

    Raises RuntimeError naming both versions and what to do.
    """
    found = installed if installed is not None else version("faust-streaming")
    if found != FAUST_VERSION:
        raise RuntimeError(
            f"faust-streaming {found} is installed, but streams/engine/faust_batch.py uses "
            f"Faust internals checked against faust-streaming {FAUST_VERSION} only: install "
            f"faust-streaming=={FAUST_VERSION}, or re-check that module against {found} and "
            "update FAUST_VERSION and the pin in pyproject.toml"
        )


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, handing each fetched batch of one topic to a handler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_lock = asyncio.Lock()
        self._to_commit: dict[TP, int] = {}
        self._next_offset: dict[TP, int] = {}

    # -- the hot path

    async def _drain_messages(self, fetcher: Any) -> None:
        transport = cast(BatchTransport, self.transport)
        topic = transport.batch_topic
        handler = transport.on_batch
        assert handler is not None, "BatchTransport.on_batch is not set"
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust's getmany: records fetched while the flow is stopped (a
                    # rebalance) are dropped and the partitions re-read from the committed
                    # offsets.
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek to committed offsets failed: %r", exc)
                    continue
                generation = self.app.consumer_generation_id
                batches: dict[int, list[Any]] = {}
                tps: dict[int, TP] = {}
                for tp, batch in records.items():
                    if active is not None and tp not in active:
                        continue
                    if tp.topic != topic:
                        await self._deliver_one_by_one(tp, batch)
                        continue
                    start = self._next_offset.get(tp)
                    if start is not None and batch[0].offset < start:
                        batch = [r for r in batch if r.offset >= start]
                    if batch:
                        batches[tp.partition] = batch
                        tps[tp.partition] = tp
                if batches:
                    await self._run(handler, tps, batches, generation)
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                log.info("Consumer shutting down for user cancel.")
                return
            raise

    async def _run(
        self,
        handler: BatchHandler,
        tps: dict[int, TP],
        batches: dict[int, list[Any]],
        generation: int,
    ) -> None:
        async with self._batch_lock:
            if (
                not self.flow_active
                or self.should_stop
                or generation != self.app.consumer_generation_id
            ):
                return  # a rebalance began: re-read from the committed offsets
            work = asyncio.ensure_future(handler(batches))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                await work
                self._processed(tps, batches)
                raise
            self._processed(tps, batches)

    def _processed(self, tps: dict[int, TP], batches: dict[int, list[Any]]) -> None:
        read_offset = self._read_offset
        for partition, batch in batches.items():
            tp = tps[partition]
            last: int = batch[-1].offset
            self._to_commit[tp] = self._next_offset[tp] = last + 1
            read_offset[tp] = last

    async def _deliver_one_by_one(self, tp: TP, batch: list[Any]) -> None:
        """Faust's own per-record path, for any topic but the batch topic."""
        for record in batch:
            message = self._to_message(tp, record)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = record.offset

    # -- commits

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        async with self._batch_lock:
            done: bool = await super().commit(topics, start_new_transaction=start_new_transaction)
            return done

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        mine = [
            tp for tp in self._to_commit if topics is None or tp in topics or tp.topic in topics
        ]
        yield from mine
        for tp in super()._filter_tps_with_pending_acks(topics):
            if tp not in self._to_commit:
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        offset = self._to_commit.pop(tp, None)
        if offset is not None:
            return offset
        found: int | None = super()._new_offset(tp)
        return found

    # -- positions

    async def perform_seek(self) -> None:
        self._next_offset.clear()
        self._to_commit.clear()
        await super().perform_seek()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._next_offset.pop(tp, None)
            self._to_commit.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class ConcurrentCommitProducer(faust_aiokafka.Producer):
    """Commits the partitions' transactions in parallel rather than one after the other."""

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[TP, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        async def one(tid: str, offsets: Mapping[TP, int]) -> None:
            async with self._trn_locks[tid]:
                txn = self._transaction_producers.get(tid)
                if txn is None:
                    log.warning("commit for unknown transaction %s", tid)
                    return
                await txn.send_offsets_to_transaction(offsets, group_id)
                await txn.commit_transaction()
                if start_new_transaction:
                    await txn.begin_transaction()

        await asyncio.gather(*(one(tid, offs) for tid, offs in tid_to_offset_map.items()))


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
    Producer = ConcurrentCommitProducer

    batch_topic: str = ""
    on_batch: BatchHandler | None = None


def install_batch_path(app: faust.App, topic: Any, on_batch: BatchHandler) -> None:
    """Make `app`'s consumer hand batches of `topic` to `on_batch` (call before the worker
    starts; `topic` is an `app.topic(...)`, subscribed here without an agent)."""
    conf = app.conf
    consumer_transport = BatchTransport(conf.broker_consumer, app)
    consumer_transport.batch_topic = topic.get_topic_name()
    consumer_transport.on_batch = on_batch
    app.transport = consumer_transport
    app.producer_transport = BatchTransport(conf.broker_producer, app)
    app.topics.add(topic)


def transactional_id(app: faust.App, topic: str, partition: int) -> str:
    """Faust's transactional id for records caused by `topic`'s `partition`."""
    group = app.assignor.group_for_topic(topic)
    return f"{app.conf.id}-{group}-{partition}"


def transactional_producer(app: faust.App, tid: str) -> Any:
    """The aiokafka producer of a transaction Faust has begun; KeyError if there is none
    (the partition was revoked, or its producer fenced)."""
    return cast(Any, app.producer)._transaction_producers[tid]


def plain_producer(app: faust.App) -> Any:
    """The app's non-transactional aiokafka producer (at-least-once mode)."""
    return cast(Any, app.producer)._producer


class RecoveryHooks(Protocol):
    """What the engine does at rebalances; `RecoveryTable` calls it."""

    changelog_ends: dict[Any, int]

    def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None: ...

    async def prepare_recovery(self, assigned: Any) -> None: ...

    async def recover(self, active_tps: Any) -> None: ...

    def on_recovered(self, active_tps: Any) -> None: ...


class RecoveryTable(faust.Table[bytes, bytes]):
    """The state table: declares the changelog topic (compacted, co-partitioned with the
    input) and tells the engine about rebalances; its memory store is never written."""

    hooks: RecoveryHooks | None = None

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.hooks is not None:
            self.hooks.on_rebalance(assigned, revoked, newly_assigned)
            await self.hooks.prepare_recovery(assigned)

    def persisted_offset(self, tp: Any) -> int | None:
        """Tell Faust its recovery has nothing to read: the engine reads the changelog itself."""
        if self.hooks is not None:
            end = self.hooks.changelog_ends.get(tp)
            if end is not None:
                return end - 1
        offset: int | None = super().persisted_offset(tp)
        return offset

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        if self.hooks is not None:
            await self.hooks.recover(active_tps)
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.hooks is not None:
            self.hooks.on_recovered(active_tps)


def changelog_tp(topic: str, partition: int) -> TP:
    return TP(topic, partition)


def quiet_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """A Faust worker that leaves logging as the service set it up (deploy.logs: text or
    JSON, at `loglevel`): no handlers of its own, no spinner turning the root logger to
    DEBUG, which costs an aiokafka debug line per record produced."""
    worker = faust.Worker(
        app, loglevel=loglevel, redirect_stdouts=False, quiet=True, override_logging=False
    )
    worker.spinner = None
    return worker


def assigned_partitions(tps: Iterable[Any], topic: str) -> list[int]:
    return sorted(tp.partition for tp in tps if tp.topic == topic)
