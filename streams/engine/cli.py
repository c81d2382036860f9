"""`escalator run | publish | tail`: the streaming engine's command-line shell.

Settings come from streams/engine/settings.py (EngineSettings, ClientSettings): the same flag and
environment names as every other service (`--broker`/KAFKA_BOOTSTRAP_SERVERS,
`--ticket-topic`/ESCALATOR_TICKET_TOPIC, `--port`/ESCALATOR_PORT, ...; README table).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import orjson

from base.settings import SettingsError, add_flags, service_settings
from events.instants import format_instant, parse_instant
from streams.engine.settings import ClientSettings, EngineSettings

log = logging.getLogger("escalator.engine")


def register(subparsers: Any) -> None:
    """Add `run`, `publish` and `tail` to the `escalator` command."""
    run = subparsers.add_parser("run")
    add_flags(run, EngineSettings)
    run.set_defaults(func=cmd_run)

    publish = subparsers.add_parser("publish")
    add_flags(publish, ClientSettings)
    publish.add_argument("file", help="JSONL file, or - for standard input")
    publish.add_argument(
        "--tick",
        metavar="TIME",
        help="then send clock.tick at TIME (RFC 3339 or 'now') to every partition",
    )
    publish.set_defaults(func=cmd_publish)

    tail = subparsers.add_parser("tail")
    add_flags(tail, ClientSettings)
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=int, default=None, help="stop after N records")
    tail.add_argument(
        "--timeout", type=float, default=None, help="stop after this many seconds (exit 0)"
    )
    tail.add_argument(
        "--dlq",
        action="store_true",
        help="tail the dead-letter topic: records with reason and headers",
    )
    tail.set_defaults(func=cmd_tail)


def _settings(command: str, model: type[Any], args: argparse.Namespace) -> Any:
    """The command's settings, or None after printing which flag/variable is invalid."""
    try:
        return service_settings(model, args)
    except SettingsError as exc:
        print(f"escalator {command}: {exc}", file=sys.stderr)
        return None


# ---------------------------------------------------------------------------------------------
# run


def cmd_run(args: argparse.Namespace) -> int:
    """Start a worker; exits non-zero if the policy is invalid or the broker unreachable."""
    from streams.engine.app import build_engine, changelog_topic
    from streams.engine.topics import BrokerUnavailable, ensure_topics, topic_limits
    from streams.sla.policy import PolicyError, load_policy

    settings: EngineSettings | None = _settings("run", EngineSettings, args)
    if settings is None:
        return 2
    try:
        policy = load_policy(settings.policy)
    except PolicyError as exc:
        print(f"escalator run: {exc}", file=sys.stderr)
        return 2
    topics = (settings.ticket_topic, settings.sla_topic, settings.dlq_topic)
    changelog = changelog_topic(settings.app_id)
    configs = topic_limits(*topics, changelog)
    configs[changelog]["cleanup.policy"] = "compact"
    try:
        counts = asyncio.run(
            ensure_topics(
                settings.broker,
                (*topics, changelog),
                settings.partitions,
                settings.connect_timeout,
                configs,
            )
        )
    except BrokerUnavailable as exc:
        print(f"escalator run: {exc}", file=sys.stderr)
        return 1
    policy_topic = settings.policy_topic_of(settings.app_id)
    if policy_topic:
        from streams.engine.policy_topic import POLICY_TOPIC_CONFIG

        try:
            asyncio.run(
                ensure_topics(
                    settings.broker,
                    (policy_topic,),
                    1,
                    settings.connect_timeout,
                    {policy_topic: dict(POLICY_TOPIC_CONFIG)},
                )
            )
        except BrokerUnavailable as exc:
            print(f"escalator run: {exc}", file=sys.stderr)
            return 1
    partitions = counts.get(settings.ticket_topic, settings.partitions)
    short = [t for t in (*topics[1:], changelog) if counts.get(t, 0) < partitions]
    if short:
        print(
            f"escalator run: topics {short} have fewer partitions than "
            f"{settings.ticket_topic!r} ({partitions}); output goes to the input record's "
            "partition",
            file=sys.stderr,
        )
        return 2
    engine = build_engine(settings, policy)
    engine.policy_file = policy_file(settings.policy)
    log.info(
        "worker starting: %r -> %r (dead letters %r), %d partitions, %s clock, policy %s %s, "
        "%s, http://%s:%d/metrics",
        settings.ticket_topic,
        settings.sla_topic,
        settings.dlq_topic,
        partitions,
        settings.clock,
        policy.name,
        policy.version,
        "at-least-once" if settings.at_least_once else "exactly-once",
        settings.host,
        settings.port,
        extra={"app_id": settings.app_id},
    )
    return asyncio.run(engine.run())


# ---------------------------------------------------------------------------------------------
# publish


def _open_input(name: str) -> BinaryIO:
    return sys.stdin.buffer if name == "-" else open(name, "rb")


def _key_of(line: bytes) -> bytes | None:
    """The ticket id as the record key; None for a line that is not a JSON object with one."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    ticket = obj.get("ticket_id") if isinstance(obj, dict) else None
    return ticket.encode() if isinstance(ticket, str) and ticket else None


class _Lines:
    """The non-blank lines of a stream; lines over `MAX_RECORD_BYTES` are refused and counted."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.refused = 0

    def __iter__(self) -> Iterator[bytes]:
        from streams.engine.topics import MAX_RECORD_BYTES

        for number, raw in enumerate(self.stream, start=1):
            line = raw.rstrip(b"\r\n")
            if len(line) > MAX_RECORD_BYTES:
                self.refused += 1
                print(
                    f"escalator publish: line {number}: {len(line)} bytes, over the limit of "
                    f"{MAX_RECORD_BYTES}; not published",
                    file=sys.stderr,
                )
            elif line.strip():
                yield line


async def publish_lines(
    broker: str, topic: str, lines: Iterable[bytes], tick: int | None = None
) -> tuple[int, int]:
    """Produce lines keyed by ticket id (in order per key), then ticks; returns counts."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from streams.engine.topics import INPUT_TOPIC_MAX_BYTES

    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=INPUT_TOPIC_MAX_BYTES,
    )
    await producer.start()
    sent = ticks = 0
    try:
        pending = []
        for line in lines:
            pending.append(await producer.send(topic, line, key=_key_of(line)))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        if tick is not None:
            body = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(tick)})
            partitions = await producer.partitions_for(topic)
            await asyncio.gather(
                *[await producer.send(topic, body, partition=p) for p in sorted(partitions)]
            )
            ticks = len(partitions)
    finally:
        await producer.stop()
    return sent, ticks


def cmd_publish(args: argparse.Namespace) -> int:
    from streams.engine.topics import BrokerUnavailable, ensure_topics, topic_limits

    settings: ClientSettings | None = _settings("publish", ClientSettings, args)
    if settings is None:
        return 2

    tick: int | None = None
    if args.tick is not None:
        try:
            tick = time.time_ns() // 1000 if args.tick == "now" else parse_instant(args.tick)
        except ValueError as exc:
            print(f"escalator publish: --tick: {exc}", file=sys.stderr)
            return 2
    try:
        asyncio.run(
            ensure_topics(
                settings.broker,
                [settings.ticket_topic],
                settings.partitions,
                settings.connect_timeout,
                topic_limits(settings.ticket_topic),
            )
        )
    except BrokerUnavailable as exc:
        print(f"escalator publish: {exc}", file=sys.stderr)
        return 1
    try:
        stream = _open_input(args.file)
    except OSError as exc:
        print(f"escalator publish: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    lines = _Lines(stream)
    with stream:
        sent, ticks = asyncio.run(
            publish_lines(settings.broker, settings.ticket_topic, lines, tick)
        )
    print(f"published {sent} records and {ticks} ticks to {settings.ticket_topic}", file=sys.stderr)
    return 1 if lines.refused else 0


# ---------------------------------------------------------------------------------------------
# tail


def _dlq_line(record: Any) -> bytes:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    return orjson.dumps(
        {
            "partition": record.partition,
            "offset": record.offset,
            "reason": headers.get("escalator.reason"),
            "headers": headers,
            "key": record.key.decode(errors="replace") if record.key is not None else None,
            "value": record.value.decode(errors="replace") if record.value is not None else None,
        }
    )


async def tail_records(
    broker: str,
    topic: str,
    from_beginning: bool,
    max_records: int | None,
    timeout: float | None,
    out: Any,
    dlq: bool = False,
) -> int:
    """Print committed records of every partition of `topic` until `max_records`/`timeout`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    count = 0
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        deadline = None if timeout is None else time.monotonic() + timeout
        while max_records is None or count < max_records:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                break
            batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=1000)
            for record in (r for records in batches.values() for r in records):
                if max_records is not None and count >= max_records:
                    break
                out.write((_dlq_line(record) if dlq else record.value) + b"\n")
                count += 1
            out.flush()
    finally:
        await consumer.stop()
    return count


def cmd_tail(args: argparse.Namespace) -> int:
    from streams.engine.topics import BrokerUnavailable, check_broker

    settings: ClientSettings | None = _settings("tail", ClientSettings, args)
    if settings is None:
        return 2
    try:
        asyncio.run(check_broker(settings.broker, settings.connect_timeout))
    except BrokerUnavailable as exc:
        print(f"escalator tail: {exc}", file=sys.stderr)
        return 1
    topic = settings.dlq_topic if args.dlq else settings.sla_topic
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            tail_records(
                settings.broker,
                topic,
                args.from_beginning,
                args.max,
                args.timeout,
                sys.stdout.buffer,
                args.dlq,
            )
        )
    return 0


# ---------------------------------------------------------------------------------------------
# policy publish


def register_policy_publish(policy_commands: Any) -> None:
    """Add `escalator policy publish FILE --mode MODE [--at TIME]` (issue #22)."""
    from events.rollouts import ROLLOUT_MODES
    from streams.engine.settings import PolicyPublishSettings

    publish = policy_commands.add_parser(
        "publish",
        help="publish a policy version to the policy topic; running workers switch at --at",
        description="Checks the file as `escalator policy check` does (a file with errors is "
        "refused), then writes it to the compacted policy topic, keyed by its version. Every "
        "worker reads the topic before it processes input and follows it while running: the "
        "version takes effect at --at (event time: the watermark on the event clock, the wall "
        "clock on the wall clock), the same instant for every worker and partition.",
    )
    add_flags(publish, PolicyPublishSettings)
    publish.add_argument("file", help="policy TOML")
    publish.add_argument(
        "--mode",
        required=True,
        choices=ROLLOUT_MODES,
        help="new-tickets: tickets opened from --at on use it, open tickets finish on theirs; "
        "open-tickets: open tickets move to it at --at too (unfired timers recomputed)",
    )
    publish.add_argument(
        "--at", metavar="TIME", default="now", help="RFC 3339 instant, or 'now' (default)"
    )
    publish.set_defaults(func=cmd_policy_publish)


def cmd_policy_publish(args: argparse.Namespace) -> int:
    """Check, then publish; 2 for a refused file or flag, 1 if the broker is unreachable."""
    import tomllib
    from pathlib import Path

    from events.rollouts import PolicyRollout
    from streams.engine.policy_topic import POLICY_TOPIC_CONFIG, PolicyFollower, decode_rollout
    from streams.engine.settings import PolicyPublishSettings
    from streams.engine.topics import BrokerUnavailable, ensure_topics
    from streams.sla.cli import describe_policy
    from streams.sla.policy import PolicyError, check_policy, load_policy

    settings: PolicyPublishSettings | None = _settings(
        "policy publish", PolicyPublishSettings, args
    )
    if settings is None:
        return 2
    topic = settings.policy_topic_of(settings.app_id)
    if not topic:
        print("escalator policy publish: --policy-topic is empty", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"escalator policy publish: refused: {exc}", file=sys.stderr)
        return 2
    print(describe_policy(policy))
    for warning in check_policy(policy):
        print(f"warning: {warning}")
    text = Path(args.file).read_text(encoding="utf-8-sig")
    if _uses_ical(tomllib.loads(text)):
        print(
            f"escalator policy publish: refused: {args.file}: a calendar's 'ical' file is not "
            "carried by the topic; give its closures in the policy file",
            file=sys.stderr,
        )
        return 2
    try:
        instant = time.time_ns() // 1000 if args.at == "now" else parse_instant(args.at)
    except ValueError as exc:
        print(f"escalator policy publish: --at: {exc}", file=sys.stderr)
        return 2
    record = PolicyRollout(
        version=policy.version,
        digest=policy.digest,
        name=policy.name,
        mode=args.mode,
        at=format_instant(instant),
        published_at=format_instant(time.time_ns() // 1000),
        source=Path(args.file).name,
        text=text,
    )
    try:
        asyncio.run(
            ensure_topics(
                settings.broker, (topic,), 1, settings.connect_timeout,
                {topic: dict(POLICY_TOPIC_CONFIG)},
            )
        )  # fmt: skip
    except BrokerUnavailable as exc:
        print(f"escalator policy publish: {exc}", file=sys.stderr)
        return 1

    async def publish() -> str | None:
        from aiokafka import AIOKafkaProducer

        follower = PolicyFollower([settings.broker], topic)
        try:
            published = await follower.catch_up()
        finally:
            await follower.close()
        latest: int | None = None
        for value in published:
            try:
                known = decode_rollout(value)
            except ValueError:
                continue  # a worker skips it too
            if known.version == policy.version:
                if known.digest != policy.digest:
                    return (
                        f"version {policy.version!r} is already published with other "
                        "content; give the file a new 'version'"
                    )
                return f"version {policy.version!r} is already published (at {known.at})"
            known_at = parse_instant(known.at)
            latest = known_at if latest is None else max(latest, known_at)
        if latest is not None and instant < latest:
            return (
                f"--at {format_instant(instant)} is before the latest rollout's instant "
                f"({format_instant(latest)}): rollouts take effect in order"
            )
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.broker, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            value = orjson.dumps(record.model_dump(mode="json"))
            await producer.send_and_wait(topic, value, key=policy.version.encode(), partition=0)
        finally:
            await producer.stop()
        return None

    refused = asyncio.run(publish())
    if refused is not None:
        print(f"escalator policy publish: refused: {refused}", file=sys.stderr)
        return 2
    print(
        f"published {policy.name} {policy.version} ({policy.digest}) to {topic!r}: "
        f"{args.mode} at {record.at}"
    )
    return 0


def _uses_ical(raw: dict[str, Any]) -> bool:
    """Whether a policy file's calendars read an iCalendar file (`ical`)."""
    tables = [raw.get("calendar"), *dict(raw.get("calendars") or {}).values()]
    return any(isinstance(table, dict) and "ical" in table for table in tables)


def policy_file(path: str | None) -> tuple[str, str] | None:
    """(file name, TOML text) of the worker's `--policy` (the shipped default when None), for
    the worker to register its version on the policy topic; None when it cannot be carried
    there (an `ical` file, or unreadable: `load_policy` has read it already, so rarely)."""
    import tomllib
    from importlib import resources
    from pathlib import Path

    from streams.sla.policy import DEFAULT_POLICY_RESOURCE

    try:
        if path is None:
            name = DEFAULT_POLICY_RESOURCE
            text = resources.files("streams.sla").joinpath(name).read_text()
        else:
            name, text = Path(path).name, Path(path).read_text(encoding="utf-8-sig")
        if _uses_ical(tomllib.loads(text)):
            return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return name, text
