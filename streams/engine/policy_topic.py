"""The policy topic (issue #22): published policy versions, read by every worker.

A compacted topic with one partition, keyed by version label, holding `PolicyRollout`
records (`events.rollouts`): the version's TOML text, its digest, its mode and instant.
`escalator policy publish` writes it; a worker reads it to its end before it processes any
input (so a new or restarted worker times every ticket by the version that attached it),
then polls it while running and switches at each new rollout's instant. Records are applied
in topic order; one that does not parse, whose digest is not its text's, or that `PolicyBook`
refuses is logged and skipped (nothing stops the worker).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from pydantic import ValidationError

from events.instants import Micros, format_instant, parse_rfc3339
from events.rollouts import PolicyRollout
from streams.sla.policy import PolicyError, parse_policy
from streams.sla.rules import Policy
from streams.sla.versions import PolicyBook, Rollout

log = logging.getLogger("escalator.engine")

POLICY_TOPIC: Final = "escalator-policies"
"""The default policy topic (`--policy-topic`, ESCALATOR_POLICY_TOPIC)."""
POLICY_TOPIC_CONFIG: Final = {"cleanup.policy": "compact", "max.message.bytes": str(1024 * 1024)}


def decode_rollout(value: bytes | None) -> PolicyRollout:
    """A policy topic record. Raises ValueError naming what is wrong."""
    if value is None:
        raise ValueError("empty record (a deleted version)")
    try:
        return PolicyRollout.model_validate(orjson.loads(value))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"not a policy rollout record: {exc}") from None


def add_rollout(book: PolicyBook, record: PolicyRollout) -> str | None:
    """Compile a record's policy and add its rollout; returns why it is refused (None: added
    or already known)."""
    try:
        policy = parse_policy(record.text, record.source)
    except PolicyError as exc:
        return str(exc)
    if policy.version != record.version or policy.digest != record.digest:
        return (
            f"version {record.version!r}: the record's version or digest is not its text's "
            f"({policy.version!r}, {policy.digest[:19]})"
        )
    try:
        instant = parse_rfc3339(record.at)
    except ValueError as exc:
        return f"field 'at': {exc}"
    return book.add(Rollout(record.version, record.digest, instant, record.mode), policy)


def apply_records(book: PolicyBook, values: list[bytes | None]) -> int:
    """Add the records' rollouts to `book` in order; returns how many were refused (logged)."""
    refused = 0
    for value in values:
        try:
            record = decode_rollout(value)
        except ValueError as exc:
            log.error("policy topic: record skipped: %s", str(exc)[:300])
            refused += 1
            continue
        reason = add_rollout(book, record)
        if reason is not None:
            log.error("policy topic: version %r skipped: %s", record.version, reason[:300])
            refused += 1
        else:
            log.info(
                "policy topic: version %s (%s) %s at %s",
                record.version,
                record.digest[:19],
                record.mode,
                record.at,
            )
    return refused


class PolicyFollower:
    """Reads the policy topic: to its end once (`catch_up`), then whatever is new (`poll`)."""

    def __init__(self, broker: list[str], topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self._consumer: Any = None

    async def _reader(self) -> Any:
        if self._consumer is None:
            from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.broker, enable_auto_commit=False, group_id=None
            )
            await consumer.start()
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            self._consumer = consumer
        return self._consumer

    async def catch_up(self) -> list[bytes | None]:
        """Every record up to the topic's end offset now."""
        from aiokafka import TopicPartition

        consumer = await self._reader()
        tp = TopicPartition(self.topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes | None] = []
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=500)
            for records in batches.values():
                values.extend(record.value for record in records)
        return values

    async def poll(self) -> list[bytes | None]:
        """Records published since the last call (none: an empty list, at once)."""
        consumer = await self._reader()
        batches = await consumer.getmany(timeout_ms=0)
        return [record.value for records in batches.values() for record in records]

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                await consumer.stop()
            except Exception:  # closing: nothing left to do with it
                log.debug("policy topic reader did not stop cleanly", exc_info=True)


def open_book(
    own: Policy, values: list[bytes | None], now: Micros
) -> tuple[PolicyBook, Rollout | None]:
    """A worker's versions at start: the topic's, the first being the base (it times every
    ticket opened before the next rollout), then the worker's own `--policy` version if the
    topic does not have it: the base of an empty topic, else a `new-tickets` rollout at `now`
    (or at the latest rollout's instant, if later), as after a restart with an edited file.
    Returns the book and the rollout the worker must write to the topic (None: none)."""
    records: list[PolicyRollout] = []
    for value in values:
        try:
            records.append(decode_rollout(value))
        except ValueError as exc:
            log.error("policy topic: record skipped: %s", str(exc)[:300])
    book: PolicyBook | None = None
    rest: list[bytes | None] = []
    for index, record in enumerate(records):
        try:
            base = parse_policy(record.text, record.source)
        except PolicyError as exc:
            log.error("policy topic: version %r skipped: %s", record.version, str(exc)[:300])
            continue
        book = PolicyBook(base)
        rest = [orjson.dumps(r.model_dump(mode="json")) for r in records[index + 1 :]]
        break
    if book is None:
        return PolicyBook(own), Rollout(own.version, own.digest, 0, "new-tickets")
    apply_records(book, rest)
    known = book.version(own.version)
    if known is not None:
        if known.digest != own.digest:
            log.error(
                "the --policy file's version %s is on the policy topic with other content "
                "(%s); running the topic's", own.version, known.digest[:19],
            )  # fmt: skip
        return book, None
    at = max(now, book.entries[-1][0].instant)
    rollout = Rollout(own.version, own.digest, at, "new-tickets")
    refused = book.add(rollout, own)
    if refused is not None:  # pragma: no cover - a new label at the latest instant is taken
        log.error("the --policy file's version %s: %s", own.version, refused)
        return book, None
    log.warning(
        "the --policy file's version %s is not on the policy topic: it takes effect for tickets "
        "opened from %s on (new-tickets); open tickets stay on their versions",
        own.version, format_instant(at),
    )  # fmt: skip
    return book, rollout


def rollout_record(rollout: Rollout, policy: Policy, source: str, text: str, now: Micros) -> bytes:
    """A policy topic record (`PolicyRollout`) as JSON bytes."""
    record = PolicyRollout(
        version=rollout.version,
        digest=rollout.digest,
        name=policy.name,
        mode=rollout.mode,
        at=format_instant(max(rollout.instant, 0)),
        published_at=format_instant(now),
        source=source,
        text=text,
    )
    return orjson.dumps(record.model_dump(mode="json"))
