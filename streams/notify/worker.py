"""The notifier: a consumer group on `sla-events` delivering each event to its channels.

Per-channel progress: every channel has its own lane, and in it each ticket its own queue, so
a ticket's events reach a channel in order (a PagerDuty trigger before its resolve) while other
tickets, and every other channel, go on: a slow or hanging channel delays only itself. Each
lane runs at most `concurrency` tries at once. Fetching pauses only when one channel has
`backlog` deliveries waiting (memory stays bounded; a hanging channel reaches that only after
its tries have timed out that many times).

At least once: a partition's offset is committed up to, not including, its first record with a
delivery still pending in any channel; so a crash re-delivers what no commit covered, with the
same idempotency key (the event id), in the same per-ticket order.

Per channel, a failed try is retried with exponential backoff and full jitter
(`delay = uniform(0, min(max_backoff, backoff * 2**try))`), or after the receiver's
`Retry-After` when that is longer (capped at the channel's `max_retry_after`); after
`attempts` tries, or at once for a failure no retry can fix (HTTP 4xx other than
408/409/425/429, SMTP 5xx, a message that cannot be built), the event goes to that channel's
dead-letter topic `<dlq prefix><channel>` with its original bytes and the reason in headers.

PagerDuty channels trigger and resolve by `streams.notify.incidents` (from `sla-events` only);
the open incidents are kept in a compacted topic `<consumer group>-incidents` (key: channel and
ticket), written before the record's offset can be committed and read back at every partition
assignment, so a restart or a rebalance resolves what an earlier process triggered.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)

from streams.notify import actions, incidents
from streams.notify.channels import DeliveryFailed, send
from streams.notify.rules import (
    Channel,
    JsmChannel,
    PagerDutyChannel,
    Rules,
    ZammadChannel,
    ZendeskChannel,
    route,
)
from streams.notify.settings import NotifySettings

log = logging.getLogger("escalator.notify")

REASON_HEADER = "escalator.reason"


def backoff_delay(channel: Any, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(max_backoff, backoff * 2**(attempt-1))) seconds."""
    return rng.uniform(0, min(channel.max_backoff, channel.backoff * 2 ** (attempt - 1)))


def retry_delay(channel: Channel, attempt: int, rng: random.Random, asked: float | None) -> float:
    """Seconds before the next try: the backoff, or the receiver's Retry-After (RFC 9110
    §10.2.3) when longer, which is capped at `channel.max_retry_after`."""
    delay = backoff_delay(channel, attempt, rng)
    if asked is not None:
        delay = max(delay, min(asked, channel.max_retry_after))
    return delay


@dataclass(slots=True)
class _Job:
    """One SLA record for one channel; `routed`: a rule names the channel (PagerDuty also
    sees resolving events no rule routes to it)."""

    channel: str
    event: dict[str, Any]
    record: Any
    tp: TopicPartition
    routed: bool


class _Progress:
    """Per partition: offsets with deliveries pending, and the offset that may be committed."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, OrderedDict[int, int]] = {}
        self.fetched: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def add(self, tp: TopicPartition, offset: int, jobs: int) -> None:
        if jobs:
            self.pending.setdefault(tp, OrderedDict())[offset] = jobs
        self.committed.setdefault(tp, offset)  # where this process started: nothing to commit
        self.fetched[tp] = offset + 1

    def done(self, tp: TopicPartition, offset: int) -> None:
        pending = self.pending.get(tp)
        if pending is None or offset not in pending:
            return  # a revoked partition's
        pending[offset] -= 1
        if not pending[offset]:
            del pending[offset]

    def due(self) -> dict[TopicPartition, int]:
        """Partitions whose commit point moved: the first pending offset, or past the last."""
        out = {}
        for tp, fetched in self.fetched.items():
            pending = self.pending.get(tp)
            point = next(iter(pending)) if pending else fetched
            if point > self.committed.get(tp, -1):
                out[tp] = point
        return out

    def forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self.pending.pop(tp, None)
            self.fetched.pop(tp, None)
            self.committed.pop(tp, None)


class _Lane:
    """One channel: a queue per (partition, ticket), drained in order by one task each."""

    def __init__(self, concurrency: int) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.queues: dict[tuple[TopicPartition, bytes | None], deque[_Job]] = {}
        self.tasks: dict[tuple[TopicPartition, bytes | None], asyncio.Task[None]] = {}
        self.waiting = 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.notifier._incidents_loaded.clear()
        await self.notifier._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.notifier._load_incidents()
        self.notifier._incidents_loaded.set()


class Notifier:
    def __init__(self, settings: NotifySettings, rules: Rules) -> None:
        self.settings = settings
        self.rules = rules
        self.environ = dict(settings.environ)
        self.rng = random.Random()
        self.delivered: OrderedDict[tuple[str, str], None] = OrderedDict()
        """(event id, channel) delivered by this process: a rebalance re-reading them skips."""
        self.stats = {
            "delivered": 0,
            "dead_lettered": 0,
            "retries": 0,
            "events": 0,
            "skipped": 0,
            "already_done": 0,
        }
        """`skipped`: ticket actions for another vendor's ticket; `already_done`: ticket
        actions whose note the ticket already had (a redelivery)."""
        self.zammad_ids = actions.ZammadIds()
        self.lanes = {name: _Lane(settings.concurrency) for name in rules.channels}
        self.pagerduty = [
            name
            for name, channel in rules.channels.items()
            if isinstance(channel, PagerDutyChannel)
        ]
        self.incidents_topic = f"{settings.consumer_group}-incidents"
        self.incidents: dict[tuple[str, str], incidents.Open] = {}
        """(channel, ticket id) -> the ticket's open incidents (streams.notify.incidents)."""
        self.progress = _Progress()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._paused = False
        self._incident_parts = 0
        self._incidents_loaded = asyncio.Event()
        """Set once the incidents are read after an assignment (aiokafka may hand out records
        of the new assignment while the listener still runs: PagerDuty jobs wait for it)."""

    # -- lifecycle

    async def start(self) -> None:
        if self.pagerduty:
            from streams.engine.topics import ensure_topics

            counts = await ensure_topics(
                self.settings.broker,
                [self.incidents_topic],
                self.settings.partitions,
                self.settings.connect_timeout,
                {self.incidents_topic: {"cleanup.policy": "compact"}},
            )
            self._incident_parts = counts[self.incidents_topic]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.broker,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await self.start_delivery()
        await self._consumer.start()
        self._consumer.subscribe([self.settings.sla_topic], listener=_Rebalance(self))

    async def start_delivery(self) -> None:
        """What delivering needs without consuming (also `notify redeliver`): the producer of
        dead letters and the HTTP session."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.broker, acks="all", enable_idempotence=True
        )
        self._session = aiohttp.ClientSession()
        await self._producer.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._session is not None:
            await self._session.close()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume, hand each record to its channels' lanes, commit what is done, until
        `request_stop`; then abandon what is in flight (not committed: redelivered later)."""
        assert self._consumer is not None
        try:
            while not self._stopping.is_set():
                self._flow_control()
                batches = await self._consumer.getmany(
                    timeout_ms=200, max_records=self.settings.batch
                )
                for tp, records in batches.items():
                    for record in records:
                        self._dispatch(tp, record)
                await self._commit()
        finally:
            await self._cancel(None)
            await self._commit()

    # -- records to lanes

    def _flow_control(self) -> None:
        """Pause fetching while a channel has `backlog` deliveries waiting; resume below."""
        assert self._consumer is not None
        full = any(lane.waiting >= self.settings.backlog for lane in self.lanes.values())
        if full:
            self._consumer.pause(*self._consumer.assignment())  # new partitions too
            if not self._paused:
                log.warning("a channel has %d deliveries waiting: fetching paused",
                            self.settings.backlog)  # fmt: skip
        elif self._paused:
            self._consumer.resume(*self._consumer.assignment())
        self._paused = full

    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        try:
            event = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            log.warning("skipped a record that is not a JSON object at %s[%d]@%d",
                        record.topic, record.partition, record.offset)  # fmt: skip
            self.progress.add(tp, record.offset, 0)
            return
        if event.get("type") == "policy.activated":  # an audit record, not an alert
            self.progress.add(tp, record.offset, 0)
            return
        self.stats["events"] += 1
        routed = route(self.rules, event)
        names = dict.fromkeys(routed)
        if event.get("type") in incidents.RESOLVING:
            names.update(dict.fromkeys(self.pagerduty))
        self.progress.add(tp, record.offset, len(names))
        for name in names:
            self._enqueue(_Job(name, event, record, tp, name in routed))

    def _enqueue(self, job: _Job) -> None:
        lane = self.lanes[job.channel]
        key = (job.tp, job.record.key)
        queue = lane.queues.setdefault(key, deque())
        queue.append(job)
        lane.waiting += 1
        if key not in lane.tasks:
            lane.tasks[key] = asyncio.create_task(self._drain(lane, key))

    async def _drain(self, lane: _Lane, key: tuple[TopicPartition, bytes | None]) -> None:
        """One ticket's jobs for one channel, in order."""
        queue = lane.queues[key]
        try:
            while queue:
                job = queue[0]
                await self._job(job)
                queue.popleft()
                lane.waiting -= 1
                self.progress.done(job.tp, job.record.offset)
        finally:
            if lane.tasks.get(key) is asyncio.current_task():
                del lane.tasks[key]
                if not queue:
                    del lane.queues[key]

    async def _job(self, job: _Job) -> None:
        if job.channel in self.pagerduty:
            await self._pagerduty(job)
        elif job.routed:
            await self._deliver(job.channel, job.event, job.record.value, job.record)

    async def _pagerduty(self, job: _Job) -> None:
        """Trigger or resolve by `incidents.step`; the incidents kept before the job is done."""
        await self._incidents_loaded.wait()
        ticket = job.event.get("ticket_id")
        if not isinstance(ticket, str):
            if job.routed:
                await self._deliver(job.channel, job.event, job.record.value, job.record)
            return
        where = (job.channel, ticket)
        before = self.incidents.get(where, {})
        actions, after = incidents.step(before, job.event, job.routed)
        for action, metric in actions:
            if action == "trigger":
                await self._deliver(job.channel, job.event, job.record.value, job.record)
                continue
            resolve = {
                "type": "pagerduty.resolve",
                "event_id": f"{job.event.get('event_id')}:resolve:{metric}",
                "ticket_id": ticket,
                "metric": metric,
            }
            await self._deliver(job.channel, resolve, orjson.dumps(resolve), job.record)
        if after != before:
            await self._keep_incidents(where, after)

    # -- delivery

    async def _deliver(self, name: str, event: dict[str, Any], raw: bytes, record: Any) -> None:
        key = (str(event.get("event_id")), name)
        if key in self.delivered:
            return
        channel = self.rules.channels[name]
        lane = self.lanes[name]
        assert self._session is not None
        reason = "not tried"
        for attempt in range(1, channel.attempts + 1):
            asked: float | None = None
            try:
                async with lane.semaphore:
                    await asyncio.wait_for(self._try(name, channel, event, raw), channel.timeout)
            except actions.Skipped:
                self._remember(key)
                self.stats["skipped"] += 1
                return
            except DeliveryFailed as exc:
                reason = str(exc)
                asked = exc.retry_after
                if not exc.retryable:
                    break
            except TimeoutError:
                reason = f"timed out after {channel.timeout:g} s"
            except (aiohttp.ClientError, OSError, Exception) as exc:  # network, SMTP
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            else:
                self._remember(key)
                self.stats["delivered"] += 1
                return
            if attempt < channel.attempts:
                self.stats["retries"] += 1
                await asyncio.sleep(retry_delay(channel, attempt, self.rng, asked))
        await self._dead_letter(name, raw, record, f"{reason} (after {attempt} tries)", attempt)

    async def _try(self, name: str, channel: Channel, event: dict[str, Any], raw: bytes) -> None:
        """One try: a ticket action (streams.notify.actions) or a message (channels.send)."""
        assert self._session is not None
        if isinstance(channel, ZendeskChannel | JsmChannel | ZammadChannel):
            writes = await actions.perform(
                self._session, channel, event, self.environ, self.zammad_ids
            )
            if not writes:
                self.stats["already_done"] += 1
            return
        await send(self._session, name, channel, event, raw, self.environ)

    def _remember(self, key: tuple[str, str]) -> None:
        self.delivered[key] = None
        if len(self.delivered) > 100_000:
            self.delivered.popitem(last=False)

    async def _dead_letter(
        self, name: str, raw: bytes, record: Any, reason: str, attempts: int
    ) -> None:
        headers = [
            (REASON_HEADER, reason.encode()),
            ("escalator.channel", name.encode()),
            ("escalator.attempts", str(attempts).encode()),
            ("escalator.source.topic", str(record.topic).encode()),
            ("escalator.source.partition", str(record.partition).encode()),
            ("escalator.source.offset", str(record.offset).encode()),
        ]
        await self._produce(self.settings.dlq_prefix + name, raw, record.key, headers)
        self.stats["dead_lettered"] += 1
        log.warning("dead-lettered to %s: %s[%d]@%d: %s", self.settings.dlq_prefix + name,
                    record.topic, record.partition, record.offset, reason)  # fmt: skip

    async def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send and wait; a broker outage holds this lane here: nothing is lost or skipped."""
        assert self._producer is not None
        delay = 0.5
        while True:
            try:
                await self._producer.send_and_wait(topic, value, key=key, headers=headers)
                return
            except KafkaError as exc:
                log.error("writing to %s failed (%s); retrying", topic, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # -- PagerDuty incidents

    async def _keep_incidents(self, where: tuple[str, str], after: incidents.Open) -> None:
        key = orjson.dumps(list(where))
        await self._produce(self.incidents_topic, orjson.dumps(after) if after else None, key)
        if after:
            self.incidents[where] = after
        else:
            self.incidents.pop(where, None)

    async def _load_incidents(self) -> None:
        """Read the incidents topic to its end (a partition may come from another process)."""
        if not self.pagerduty:
            return
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.broker, enable_auto_commit=False)
        await reader.start()
        try:
            parts = [TopicPartition(self.incidents_topic, p) for p in range(self._incident_parts)]
            reader.assign(parts)
            await reader.seek_to_beginning(*parts)
            ends = await reader.end_offsets(parts)
            loaded: dict[tuple[str, str], incidents.Open] = {}
            while [tp for tp, end in ends.items() if await reader.position(tp) < end]:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    for r in records:
                        channel, ticket = orjson.loads(r.key)
                        if r.value is None:
                            loaded.pop((channel, ticket), None)
                        else:
                            loaded[(channel, ticket)] = orjson.loads(r.value)
        finally:
            await reader.stop()
        self.incidents = loaded

    # -- offsets

    async def _commit(self) -> None:
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        due = {tp: o for tp, o in self.progress.due().items() if tp in assigned}
        if not due:
            return
        try:
            await self._consumer.commit(due)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took partitions away: their new owner re-delivers what we could
            # not commit (same idempotency keys). Not a reason to stop.
            log.warning("offsets not committed (%s); redelivery follows", type(exc).__name__)
            return
        self.progress.committed.update(due)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Before a rebalance: stop the lanes of the partitions going away (their new owner
        redelivers from the commit), commit what they finished, forget them."""
        await self._cancel(revoked)
        await self._commit()
        self.progress.forget(revoked)

    async def _cancel(self, tps: set[TopicPartition] | None) -> None:
        """Cancel the lanes' tasks of `tps` (None: all) and wait for them to end."""
        tasks = []
        for lane in self.lanes.values():
            for key, task in list(lane.tasks.items()):
                if tps is None or key[0] in tps:
                    task.cancel()
                    tasks.append(task)
                    lane.waiting -= len(lane.queues.pop(key, ()))
                    del lane.tasks[key]
        await asyncio.gather(*tasks, return_exceptions=True)
