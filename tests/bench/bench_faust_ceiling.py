"""The ceiling of a faust-streaming agent on this machine: an agent that does nothing.

    python tests/bench/bench_faust_ceiling.py [--broker HOST:PORT] [--events 60000]

Publishes `--events` small records to a fresh 4-partition topic, then runs one Faust worker
per variant whose agent only counts them: per event (`async for value in stream`) or in
batches (`stream.take(5000, within=0.05)`), at-least-once and exactly-once. Prints events/s
from the first record to the last. Any engine built as a Faust agent stays below these rates;
compare them with the bare aiokafka loop of `bench_engine.py`.
Without --broker a local Kafka is started with `deploy.kafka_local`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deploy.kafka_local import LocalKafka, unique_name  # noqa: E402

RECORD = (
    b'{"event_id":"e","ticket_id":"T-1","type":"ticket.assigned",'
    b'"occurred_at":"2026-11-23T13:01:12Z"}'
)
VARIANTS = [
    ("per event", "at_least_once"),
    ("per event", "exactly_once"),
    ("take(5000)", "at_least_once"),
    ("take(5000)", "exactly_once"),
]


async def publish(broker: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    for i in range(count):
        await producer.send(topic, RECORD, key=f"T-{i % 5000}".encode())
    await producer.flush()
    await producer.stop()


def worker(broker: str, topic: str, count: int, mode: str, guarantee: str) -> None:
    """Run in a child process: one Faust worker, exits when it has seen `count` records."""
    import faust

    app = faust.App(
        unique_name("ceiling"),
        broker=f"kafka://{broker}",
        processing_guarantee=guarantee,
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10,
        broker_rebalance_timeout=10,
    )
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")
    seen = {"n": 0, "t0": 0.0}

    def count_in(n: int) -> None:
        if not seen["n"]:
            seen["t0"] = time.perf_counter()
        seen["n"] += n
        if seen["n"] >= count:
            elapsed = time.perf_counter() - seen["t0"]
            print(f"{mode:>10}, {guarantee:<13}: {count / elapsed:8,.0f} events/s", flush=True)
            os._exit(0)

    if mode == "per event":

        @app.agent(source)
        async def each(stream):  # type: ignore[no-untyped-def]
            async for _value in stream:
                count_in(1)
    else:

        @app.agent(source)
        async def batched(stream):  # type: ignore[no-untyped-def]
            async for batch in stream.take(5000, within=0.05):
                count_in(len(batch))

    sys.argv = ["ceiling", "worker", "-l", "warn", "--without-web"]
    app.main()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        broker, topic, mode, guarantee = args.child
        worker(broker, topic, args.events, mode, guarantee)
        return 0
    local = None
    if not args.broker:
        local = LocalKafka().start()
        args.broker = local.bootstrap_servers
    try:
        topic = unique_name("ceiling-input")
        asyncio.run(publish(args.broker, topic, args.events))
        print(f"an empty Faust agent over {args.events:,} records, 4 partitions, one worker:")
        for mode, guarantee in VARIANTS:
            command = [sys.executable, __file__, "--events", str(args.events), "--child"]
            result = subprocess.run(
                [*command, args.broker, topic, mode, guarantee],
                capture_output=True,
                text=True,
                timeout=300,
            )
            # Faust's worker sends the child's stdout through its logging: strip the prefix.
            output = (result.stdout + result.stderr).splitlines()
            lines = [line.rsplit("] ", 1)[-1].strip() for line in output if "events/s" in line]
            print(lines[-1] if lines else f"{mode}, {guarantee}: failed\n{result.stderr[-2000:]}")
    finally:
        if local is not None:
            local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
