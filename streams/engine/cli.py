"""`escalator run | publish | tail`: the streaming engine's command-line shell.

Flags fall back to environment variables so a container or a test can configure a worker
without a long command line: KAFKA_BOOTSTRAP_SERVERS, ESCALATOR_INPUT_TOPIC,
ESCALATOR_OUTPUT_TOPIC, ESCALATOR_DLQ_TOPIC, ESCALATOR_PARTITIONS, ESCALATOR_CLOCK,
ESCALATOR_POLICY, ESCALATOR_WEB_PORT, ESCALATOR_DATA_DIR, ESCALATOR_APP_ID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import orjson

from events.instants import format_instant, parse_instant

DEFAULT_BROKER = "localhost:9092"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        default=_env("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BROKER),
        help="bootstrap servers host:port[,host:port] (env KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--input-topic", default=_env("ESCALATOR_INPUT_TOPIC", "ticket-events"))
    parser.add_argument("--output-topic", default=_env("ESCALATOR_OUTPUT_TOPIC", "sla-events"))
    parser.add_argument("--dlq-topic", default=_env("ESCALATOR_DLQ_TOPIC", "ticket-events-dlq"))
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(_env("ESCALATOR_PARTITIONS", "8")),
        help="partitions of each topic when it is created (env ESCALATOR_PARTITIONS)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying an unreachable broker before giving up",
    )


def register(subparsers: Any) -> None:
    """Add `run`, `publish` and `tail` to the `escalator` command."""
    run = subparsers.add_parser("run", help="run a stream-processing worker")
    _add_common(run)
    run.add_argument(
        "--clock",
        choices=("wall", "event"),
        default=_env("ESCALATOR_CLOCK", "wall"),
        help="wall: timers fire by the wall clock; event: by event/tick time",
    )
    run.add_argument(
        "--policy",
        default=os.environ.get("ESCALATOR_POLICY"),
        help="SLA policy TOML file (default: the shipped policy)",
    )
    run.add_argument("--web-port", type=int, default=int(_env("ESCALATOR_WEB_PORT", "6066")))
    run.add_argument("--web-host", default=_env("ESCALATOR_WEB_HOST", "127.0.0.1"))
    run.add_argument("--data-dir", default=_env("ESCALATOR_DATA_DIR", "escalator-data"))
    run.add_argument(
        "--app-id",
        default=_env("ESCALATOR_APP_ID", "escalator"),
        help="consumer group, transactional id and changelog prefix",
    )
    run.add_argument(
        "--at-least-once",
        action="store_true",
        help="no Kafka transactions (duplicates possible after a crash)",
    )
    run.add_argument(
        "--commit-interval",
        type=float,
        default=0.2,
        help="seconds between transaction commits (output latency)",
    )
    run.add_argument(
        "--tick-interval", type=float, default=0.2, help="seconds between wall-clock timer checks"
    )
    run.add_argument("--session-timeout", type=float, default=10.0)
    run.add_argument("--heartbeat-interval", type=float, default=1.0)
    run.add_argument("--rebalance-timeout", type=float, default=20.0)
    run.add_argument("--loglevel", default=_env("ESCALATOR_LOGLEVEL", "info"))
    run.set_defaults(func=cmd_run)

    publish = subparsers.add_parser(
        "publish", help="publish JSONL ticket events to the input topic, keyed by ticket id"
    )
    _add_common(publish)
    publish.add_argument("file", help="JSONL file, or - for standard input")
    publish.add_argument(
        "--tick",
        metavar="TIME",
        help="then send clock.tick at TIME (RFC 3339 or 'now') to every partition",
    )
    publish.set_defaults(func=cmd_publish)

    tail = subparsers.add_parser("tail", help="print SLA events as JSON lines (read_committed)")
    _add_common(tail)
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


# ---------------------------------------------------------------------------------------------
# run


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Start a worker; exits non-zero if the policy is invalid or the broker unreachable."""
    from streams.engine.app import EngineConfig, build_engine
    from streams.engine.topics import BrokerUnavailable, ensure_topics, topic_limits
    from streams.sla.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(f"escalator run: {exc}", file=sys.stderr)
        return 2
    topics = (args.input_topic, args.output_topic, args.dlq_topic)
    try:
        counts = asyncio.run(
            ensure_topics(
                args.broker,
                topics,
                args.partitions,
                args.connect_timeout,
                topic_limits(*topics),
            )
        )
    except BrokerUnavailable as exc:
        print(f"escalator run: {exc}", file=sys.stderr)
        return 1
    partitions = counts.get(args.input_topic, args.partitions)
    short = [t for t in topics[1:] if counts.get(t, 0) < partitions]
    if short:
        print(
            f"escalator run: topics {short} have fewer partitions than {args.input_topic!r} "
            f"({partitions}); output goes to the input record's partition",
            file=sys.stderr,
        )
        return 2
    config = EngineConfig(
        broker=args.broker,
        app_id=args.app_id,
        input_topic=args.input_topic,
        output_topic=args.output_topic,
        dlq_topic=args.dlq_topic,
        partitions=partitions,
        clock=args.clock,
        web_port=args.web_port,
        web_host=args.web_host,
        data_dir=args.data_dir,
        exactly_once=not args.at_least_once,
        tick_interval=args.tick_interval,
        commit_interval=args.commit_interval,
        session_timeout=args.session_timeout,
        heartbeat_interval=args.heartbeat_interval,
        rebalance_timeout=args.rebalance_timeout,
    )
    engine = build_engine(config, policy)
    from streams.engine.faust_batch import quiet_worker

    logging.getLogger("escalator").setLevel(args.loglevel.upper())
    print(
        f"escalator run: app {config.app_id!r}, {config.input_topic!r} -> "
        f"{config.output_topic!r} (dead letters {config.dlq_topic!r}), {partitions} partitions, "
        f"{config.clock} clock, policy {policy.name} {policy.version}, "
        f"{'exactly-once' if config.exactly_once else 'at-least-once'}, "
        f"http://{config.web_host}:{config.web_port}/metrics",
        file=sys.stderr,
        flush=True,
    )
    worker = quiet_worker(engine.app, args.loglevel)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


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
                args.broker,
                [args.input_topic],
                args.partitions,
                args.connect_timeout,
                topic_limits(args.input_topic),
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
        sent, ticks = asyncio.run(publish_lines(args.broker, args.input_topic, lines, tick))
    print(f"published {sent} records and {ticks} ticks to {args.input_topic}", file=sys.stderr)
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

    try:
        asyncio.run(check_broker(args.broker, args.connect_timeout))
    except BrokerUnavailable as exc:
        print(f"escalator tail: {exc}", file=sys.stderr)
        return 1
    topic = args.dlq_topic if args.dlq else args.output_topic
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            tail_records(
                args.broker,
                topic,
                args.from_beginning,
                args.max,
                args.timeout,
                sys.stdout.buffer,
                args.dlq,
            )
        )
    return 0
