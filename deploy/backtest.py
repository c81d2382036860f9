"""`escalator backtest`: a policy change tried on the last N days of real tickets.

The comparison itself is the SLA core's (`streams.sla.backtest`); this command chooses the
history (issue #22): a JSONL file (`--input`), the projections database (`--from-db`: the
tickets reported in the last `--days` days, each with the events its stored state applied),
or the ticket topic (`--from-topic`: the records of the last `--days` days, by record
timestamp, of the tickets opened in them). It lives here, on the top floor, because it reads
the projections' database and Kafka, which the SLA core never imports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import orjson

from events.codec import InvalidEvent, decode_ticket_event
from events.instants import DAY, Micros, parse_instant
from streams.sla.cli import add_backtest_parser, run_backtest
from streams.sla.parking import as_json


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backtest = add_backtest_parser(commands)
    source = backtest.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", help="JSONL ticket events, or - for stdin")
    source.add_argument(
        "--from-db",
        metavar="DB",
        help="the projections database (SQLite file or postgresql:// DSN): tickets reported "
        "in the last --days days",
    )
    source.add_argument(
        "--from-topic",
        metavar="TOPIC",
        help="the ticket topic (with --broker): records of the last --days days",
    )
    backtest.add_argument(
        "--days", type=float, default=30.0, help="how far back --from-db/--from-topic read"
    )
    backtest.add_argument(
        "--broker",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers for --from-topic (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    backtest.set_defaults(func=_backtest)


def _backtest(args: argparse.Namespace) -> int:
    def read() -> list[bytes]:
        if args.days <= 0:
            raise ValueError("--days: must be more than 0")
        end = parse_instant(args.until) if args.until else time.time_ns() // 1000
        since = end - round(args.days * DAY)
        if args.from_db is not None:
            return from_db(args.from_db, since)
        if args.from_topic is not None:
            return asyncio.run(from_topic(args.broker, args.from_topic, since))
        try:
            if args.input == "-":
                import sys

                return sys.stdin.buffer.readlines()
            with open(args.input, "rb") as source:
                return source.readlines()
        except OSError as exc:
            raise OSError(f"--input: cannot read {args.input}: {exc.strerror}") from None

    return run_backtest(args, read)


def from_db(target: str, since: Micros) -> list[bytes]:
    """Every applied event of the tickets reported since `since`, as contract JSON lines in
    event-time order (from each ticket's stored state). ValueError if there is no database."""
    from projections.cli import DatabaseMissing, open_existing
    from streams.sla import state_codec

    try:
        db = open_existing(target)
    except DatabaseMissing as exc:
        raise ValueError(f"--from-db: {exc}") from None
    try:
        rows = db.query("SELECT state_json FROM tickets WHERE reported_at >= ?", (since,))
    finally:
        db.close()
    events = []
    for (text,) in rows:
        state = state_codec.from_obj(orjson.loads(text))
        events.extend(state.applied_events())
    events.sort(key=lambda event: (event.at, event.ticket_id))
    return [as_json(event).encode() for event in events]


async def from_topic(broker: str, topic: str, since: Micros) -> list[bytes]:
    """The ticket topic's committed records with a timestamp since `since`, of the tickets
    opened in them, in event-time order (clock ticks and undecodable records left out)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    found: list[tuple[Micros, int, bytes, str, str]] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"--from-topic: no topic {topic!r} on {broker}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: since // 1000 for tp in tps})
        ends = await consumer.end_offsets(tps)
        pending: dict[Any, int] = {}
        for tp in tps:
            start = starts.get(tp)
            if start is not None and start.offset < ends[tp]:
                consumer.seek(tp, start.offset)
                pending[tp] = ends[tp]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=20_000)
            for records in batches.values():
                for record in records:
                    try:
                        event = decode_ticket_event(record.value)
                    except InvalidEvent:
                        continue
                    found.append((event.at, len(found), record.value, event.ticket_id, event.type))
            for tp in list(pending):
                if await consumer.position(tp) >= pending[tp]:
                    del pending[tp]
    finally:
        await consumer.stop()
    opened = {ticket for _, _, _, ticket, kind in found if kind == "ticket.opened"}
    found.sort()
    return [value for _, _, value, ticket, _ in found if ticket in opened]
