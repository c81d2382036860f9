"""The notifier: a consumer group on `sla-events` delivering each event to its channels.

At least once, offsets committed only after delivery: a batch's offsets are committed when
every event in it has been delivered to every channel its rules name, or dead-lettered. A
crash re-delivers what was not committed, with the same idempotency key (the event id).

Per channel, a failed try is retried with exponential backoff and full jitter
(`delay = uniform(0, min(max_backoff, backoff * 2**try))`); after `attempts` tries, or at once
for a failure no retry can fix (HTTP 4xx other than 408/409/425/429, SMTP 5xx), the event goes
to that channel's dead-letter topic `<dlq prefix><channel>` with its original bytes and the
reason in headers. One slow channel delays the commit, never another channel's delivery.

Events of one ticket are delivered in order (a PagerDuty trigger before its resolve); other
tickets' events go out concurrently. The notifier also reads `ticket-events` for
`ticket.resolved`/`ticket.closed`, to resolve the ticket's PagerDuty incidents.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)

from streams.notify.channels import DeliveryFailed, send
from streams.notify.rules import PagerDutyChannel, Rules, pagerduty_metrics, route
from streams.notify.settings import NotifySettings

log = logging.getLogger("escalator.notify")

REASON_HEADER = "escalator.reason"
RESOLVING_TYPES = frozenset({"ticket.resolved", "ticket.closed"})


def backoff_delay(channel: Any, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(max_backoff, backoff * 2**(attempt-1))) seconds."""
    return rng.uniform(0, min(channel.max_backoff, channel.backoff * 2 ** (attempt - 1)))


class Notifier:
    def __init__(self, settings: NotifySettings, rules: Rules) -> None:
        self.settings = settings
        self.rules = rules
        self.environ = dict(settings.environ)
        self.rng = random.Random()
        self.delivered: OrderedDict[tuple[str, str], None] = OrderedDict()
        """(event id, channel) delivered by this process: a rebalance re-reading them skips."""
        self.semaphore = asyncio.Semaphore(settings.concurrency)
        self.stats = {"delivered": 0, "dead_lettered": 0, "retries": 0, "events": 0}
        self.pagerduty = {
            name: pagerduty_metrics(rules, name)
            for name, channel in rules.channels.items()
            if isinstance(channel, PagerDutyChannel)
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._abandoned = False

    # -- lifecycle

    async def start(self) -> None:
        topics = [self.settings.sla_topic]
        if self.pagerduty:
            topics.append(self.settings.ticket_topic)
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.settings.broker,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.broker, acks="all", enable_idempotence=True
        )
        self._session = aiohttp.ClientSession()
        await self._producer.start()
        await self._consumer.start()

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
        """Consume, deliver, commit, until `request_stop`."""
        assert self._consumer is not None
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(timeout_ms=200, max_records=self.settings.batch)
            if not batches:
                continue
            await asyncio.gather(*(self._partition(records) for records in batches.values()))
            if self._abandoned:
                # Stopping cut a retry short: nothing of this batch is committed, so whoever
                # owns the partition next delivers the rest again, with the same keys.
                break
            try:
                await self._consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in batches.items()}
                )
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance took partitions away: their new owner re-delivers what we could
                # not commit (same idempotency keys). Not a reason to stop.
                log.warning("offsets not committed (%s); redelivery follows", type(exc).__name__)

    # -- processing

    async def _partition(self, records: list[Any]) -> None:
        """One partition's records: per ticket in order, tickets concurrently."""
        by_ticket: dict[bytes | None, list[Any]] = {}
        for record in records:
            by_ticket.setdefault(record.key, []).append(record)
        await asyncio.gather(*(self._ticket(rs) for rs in by_ticket.values()))

    async def _ticket(self, records: list[Any]) -> None:
        for record in records:
            await self._record(record)

    async def _record(self, record: Any) -> None:
        try:
            event = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            log.warning("skipped a record that is not a JSON object at %s[%d]@%d",
                        record.topic, record.partition, record.offset)  # fmt: skip
            return
        if record.topic == self.settings.ticket_topic:
            await self._resolve(event, record)
            return
        self.stats["events"] += 1
        channels = route(self.rules, event)
        await asyncio.gather(
            *(self._deliver(name, event, record.value, record) for name in channels)
        )

    async def _resolve(self, event: dict[str, Any], record: Any) -> None:
        if event.get("type") not in RESOLVING_TYPES or not isinstance(event.get("ticket_id"), str):
            return
        jobs = []
        for name, metrics in self.pagerduty.items():
            for metric in metrics:
                resolve = {
                    "type": "pagerduty.resolve",
                    "event_id": f"{event.get('event_id')}:{metric}",
                    "ticket_id": event["ticket_id"],
                    "metric": metric,
                }
                jobs.append(self._deliver(name, resolve, orjson.dumps(resolve), record))
        await asyncio.gather(*jobs)

    async def _deliver(self, name: str, event: dict[str, Any], raw: bytes, record: Any) -> None:
        key = (str(event.get("event_id")), name)
        if key in self.delivered:
            return
        channel = self.rules.channels[name]
        assert self._session is not None
        reason = "not tried"
        for attempt in range(1, channel.attempts + 1):
            try:
                async with self.semaphore:
                    await asyncio.wait_for(
                        send(self._session, name, channel, event, raw, self.environ),
                        channel.timeout,
                    )
            except DeliveryFailed as exc:
                reason = str(exc)
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
                if await self._stopped_within(backoff_delay(channel, attempt, self.rng)):
                    self._abandoned = True  # not delivered, not dead-lettered, not committed
                    return
        await self._dead_letter(name, raw, record, f"{reason} (after {attempt} tries)", attempt)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait out a backoff delay; True as soon as a stop is requested (SIGTERM)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _remember(self, key: tuple[str, str]) -> None:
        self.delivered[key] = None
        if len(self.delivered) > 100_000:
            self.delivered.popitem(last=False)

    async def _dead_letter(
        self, name: str, raw: bytes, record: Any, reason: str, attempts: int
    ) -> None:
        assert self._producer is not None
        headers = [
            (REASON_HEADER, reason.encode()),
            ("escalator.channel", name.encode()),
            ("escalator.attempts", str(attempts).encode()),
            ("escalator.source.topic", str(record.topic).encode()),
            ("escalator.source.partition", str(record.partition).encode()),
            ("escalator.source.offset", str(record.offset).encode()),
        ]
        topic = self.settings.dlq_prefix + name
        delay = 0.5
        while True:  # a broker outage holds the partition here; nothing is lost or skipped
            try:
                await self._producer.send_and_wait(topic, raw, key=record.key, headers=headers)
                break
            except KafkaError as exc:
                log.error("dead-lettering to %s failed (%s); retrying", topic, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.stats["dead_lettered"] += 1
        log.warning("dead-lettered to %s: %s[%d]@%d: %s", topic, record.topic,
                    record.partition, record.offset, reason)  # fmt: skip
