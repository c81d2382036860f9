"""Timers on the wall clock against a real broker (issue #26): lateness as the user sees it.

    python tests/bench/bench_timers.py [--broker HOST:PORT] [--open 100000] [--rate 1000]
        [--seconds 20] [--storm 100000] [--live 1000] [--against DIR] [--skip fire storm]

Every figure is measured by a consumer reading the output topic `read_committed` (what a user
of the SLA events sees), never inside the worker; lateness = receive time minus the event's
`due_at` (timers) or `at` (live input).

1. fire on time: `--open` open tickets (far deadlines), then `--rate` timers/s fall due over
   `--seconds` on a caught-up worker (1 worker, exactly-once, 4 partitions); the reference in
   the same run is the probe: a bare transactional producer that, at each of the same due
   instants, produces a record and commits at once (`loop.call_at`), read by the same kind of
   consumer: the floor of "fire at the instant, commit, deliver read_committed".
2. the opening-bell storm: `--storm` tickets due at one instant (every weekend ticket due at
   Monday 09:00 + 1h), while `--live` events/s (first replies, each answered by an `sla.met`)
   flow into the same partitions: the storm's lateness, the live events' lateness, and the time
   for the whole storm to be out; the reference is a bare transactional producer writing the
   same number of records and committing (the floor of getting them out).

`--against DIR`: the same scenarios also run with the code of another checkout (its own
`.venv`, `python -m venv .venv && .venv/bin/pip install -e .`), alternated, so "before" and
"after" are measured in the same run. `--worker-args` go to this checkout's worker only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deploy.kafka_local import LocalKafka, unique_name  # noqa: E402
from events.instants import SECOND, format_instant, parse_instant  # noqa: E402
from streams.engine.cli import publish_lines  # noqa: E402
from streams.engine.topics import ensure_topics  # noqa: E402
from tests.bench.bench_engine import PARTITIONS, Worker, wait_drained  # noqa: E402

POLICY = """
name = "bench-timers"
[calendar]
timezone = "UTC"
open = "00:00"
close = "23:59"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[severity.1]
first_response = { target = "10m", clock = "elapsed" }
[severity.3]
first_response = { target = "30d", clock = "elapsed" }
"""
TARGET = 600 * SECOND
"""Severity 1's first response: a ticket opened at t is due at t + 10 min."""


def now_us() -> int:
    return time.time_ns() // 1000


def opened(ticket: str, severity: int, at: int) -> bytes:
    return orjson.dumps(
        {
            "type": "ticket.opened",
            "event_id": f"{ticket}-o",
            "ticket_id": ticket,
            "severity": severity,
            "occurred_at": format_instant(at),
        }
    )


def responded(ticket: str, at: int) -> bytes:
    return orjson.dumps(
        {
            "type": "ticket.responded",
            "event_id": f"{ticket}-r",
            "ticket_id": ticket,
            "occurred_at": format_instant(at),
        }
    )


def quantiles(values: list[float]) -> str:
    if not values:
        return "none received"
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (
        f"p50 {statistics.median(values) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {values[-1] * 1000:.0f} ms (n={len(values):,})"
    )


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")


async def _consumer(broker: str, topic: str) -> Any:
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the end offsets now, before anything is emitted
        await consumer.position(tp)
    return consumer


async def _watch(
    consumer: Any, kinds: dict[str, str], expect: dict[str, int], timeout: float
) -> dict[str, list[tuple[float, float]]]:
    """(receive time, lateness) of each record of the types in `kinds` (type -> the field its
    lateness is measured from), until `expect` of each came or `timeout` seconds passed."""
    seen: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and any(len(seen[k]) < n for k, n in expect.items()):
            batches = await consumer.getmany(timeout_ms=20, max_records=10_000)
            received = time.time()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    field = kinds.get(event["type"])
                    if field is not None:
                        late = received - parse_instant(event[field]) / SECOND
                        seen[event["type"]].append((received, late))
    finally:
        await consumer.stop()
    return seen


def start_worker(
    broker: str, base: str, tmp: Path, name: str, repo: Path, extra: list[str]
) -> Worker:
    policy = tmp / "timers_policy.toml"
    policy.write_text(POLICY)
    saved = Worker.extra
    Worker.extra = extra
    try:
        worker = Worker(broker, base, "wall", str(policy), tmp / f"{name}.log", repo=repo)
    finally:
        Worker.extra = saved
    worker.ready()
    return worker


def load(broker: str, base: str, lines: Iterator[bytes]) -> float:
    started = time.monotonic()
    asyncio.run(publish_lines(broker, f"{base}-in", lines))
    wait_drained(broker, f"{base}-app", f"{base}-in")
    return time.monotonic() - started


# -- 1. fire on time ------------------------------------------------------------------------


def fire_on_time(
    broker: str, tmp: Path, repo: Path, extra: list[str], opens: int, rate: int, seconds: int
) -> list[float]:
    base = unique_name("bench-fire")
    asyncio.run(ensure_topics(broker, [f"{base}-in", f"{base}-out", f"{base}-dlq"], PARTITIONS))
    worker = start_worker(broker, base, tmp, base, repo, extra)
    try:
        due_count = rate * seconds
        far = max(opens - due_count, 0)
        t = now_us()
        took = load(broker, base, (opened(f"F-{n}", 3, t) for n in range(far)))
        lead = 10 * SECOND + due_count * SECOND // 5000  # time to publish and fold the opens
        start = now_us() + lead
        dues = [start + n * SECOND // rate for n in range(due_count)]
        lines = (opened(f"D-{n}", 1, due - TARGET) for n, due in enumerate(dues))

        async def run() -> dict[str, list[tuple[float, float]]]:
            consumer = await _consumer(broker, f"{base}-out")
            await publish_lines(broker, f"{base}-in", lines)
            return await _watch(
                consumer, {"sla.breached": "due_at"}, {"sla.breached": due_count},
                timeout=lead / SECOND + seconds + 60,
            )  # fmt: skip

        seen = asyncio.run(run())
        late = [lateness for _, lateness in seen["sla.breached"]]
        print(
            f"  {label(repo)}: {far + due_count:,} open tickets (loaded in {took:.0f} s), "
            f"{rate:,} timers/s due over {seconds} s: lateness {quantiles(late)}"
        )
        return late
    finally:
        worker.kill()


async def _probe(broker: str, rate: int, seconds: int) -> list[float]:
    """The bare transactional producer firing at the same instants (see the module doc)."""
    from aiokafka import AIOKafkaProducer

    topic = unique_name("bench-probe")
    await ensure_topics(broker, [topic], PARTITIONS)
    consumer = await _consumer(broker, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        transactional_id=unique_name("probe-tx"),
        enable_idempotence=True,
        linger_ms=0,
    )
    await producer.start()
    count = rate * seconds
    start = now_us() + 2 * SECOND
    dues = [start + n * SECOND // rate for n in range(count)]
    loop = asyncio.get_running_loop()

    async def fire() -> None:
        sent = 0
        while sent < count:
            wake = asyncio.Event()
            loop.call_later(max(0.0, (dues[sent] - now_us()) / SECOND), wake.set)
            await wake.wait()
            now = now_us()
            await producer.begin_transaction()
            while sent < count and dues[sent] <= now:
                body = {"type": "sla.breached", "due_at": format_instant(dues[sent])}
                await producer.send(topic, orjson.dumps(body), partition=sent % PARTITIONS)
                sent += 1
            await producer.commit_transaction()

    try:
        watch = asyncio.ensure_future(
            _watch(consumer, {"sla.breached": "due_at"}, {"sla.breached": count}, seconds + 30)
        )
        await fire()
        seen = await watch
    finally:
        await producer.stop()
    return [lateness for _, lateness in seen["sla.breached"]]


# -- 2. the opening-bell storm --------------------------------------------------------------


def storm(
    broker: str, tmp: Path, repo: Path, extra: list[str], size: int, live_rate: int
) -> tuple[list[float], list[float], float]:
    base = unique_name("bench-storm")
    asyncio.run(ensure_topics(broker, [f"{base}-in", f"{base}-out", f"{base}-dlq"], PARTITIONS))
    worker = start_worker(broker, base, tmp, base, repo, extra)
    try:
        live_seconds = 20
        live_count = live_rate * live_seconds
        t = now_us()
        took = load(broker, base, (opened(f"L-{n}", 3, t) for n in range(live_count)))
        lead = 10 * SECOND + size * SECOND // 5000
        instant = now_us() + lead
        lines = (opened(f"S-{n}", 1, instant - TARGET) for n in range(size))

        async def run() -> tuple[dict[str, list[tuple[float, float]]], float]:
            from aiokafka import AIOKafkaProducer

            consumer = await _consumer(broker, f"{base}-out")
            await publish_lines(broker, f"{base}-in", lines)
            producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=0)
            await producer.start()

            async def live() -> None:  # from 5 s before the instant, `live_rate` replies/s
                begin = instant / SECOND - 5
                await asyncio.sleep(max(0.0, begin - time.time()))
                for n in range(live_count):
                    await asyncio.sleep(max(0.0, begin + n / live_rate - time.time()))
                    ticket = f"L-{n}"
                    await producer.send(f"{base}-in", responded(ticket, now_us()),
                                        key=ticket.encode())  # fmt: skip

            watch = asyncio.ensure_future(
                _watch(
                    consumer,
                    {"sla.breached": "due_at", "sla.met": "at"},
                    {"sla.breached": size, "sla.met": live_count},
                    timeout=lead / SECOND + live_seconds + 120,
                )
            )
            try:
                await live()
                return await watch, instant / SECOND
            finally:
                await producer.stop()

        seen, at = asyncio.run(run())
        storm_late = [lateness for _, lateness in seen["sla.breached"]]
        live_late = [lateness for received, lateness in seen["sla.met"]]
        during = [lateness for received, lateness in seen["sla.met"] if received >= at]
        out = max((received for received, _ in seen["sla.breached"]), default=float("nan")) - at
        print(
            f"  {label(repo)}: storm of {size:,} timers due at one instant "
            f"({live_count:,} live tickets loaded in {took:.0f} s), {live_rate:,} live "
            f"events/s:\n    storm lateness {quantiles(storm_late)}; whole storm out "
            f"{out:.2f} s after its instant\n    live events' output lateness "
            f"{quantiles(live_late)}; those received after the instant: p99 "
            f"{p99(during) * 1000:.0f} ms"
        )
        return storm_late, live_late, out
    finally:
        worker.kill()


async def _bare_storm(broker: str, size: int) -> float:
    """Seconds for a bare transactional producer's `size` records (committed at once) to be
    read back read_committed: the floor of a storm's output."""
    from aiokafka import AIOKafkaProducer

    topic = unique_name("bench-bare-storm")
    await ensure_topics(broker, [topic], PARTITIONS)
    consumer = await _consumer(broker, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        transactional_id=unique_name("bare-storm-tx"),
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        instant = now_us()
        body = orjson.dumps({"type": "sla.breached", "due_at": format_instant(instant)})
        watch = asyncio.ensure_future(
            _watch(consumer, {"sla.breached": "due_at"}, {"sla.breached": size}, 120)
        )
        await producer.begin_transaction()
        for n in range(size):
            await producer.send(topic, body, partition=n % PARTITIONS)
        await producer.commit_transaction()
        seen = await watch
        return max(received for received, _ in seen["sla.breached"]) - instant / SECOND
    finally:
        await producer.stop()


def label(repo: Path) -> str:
    return "this checkout" if repo == REPO else f"against {repo}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--open", type=int, default=100_000, help="open tickets")
    parser.add_argument("--rate", type=int, default=1000, help="timers due per second")
    parser.add_argument("--seconds", type=int, default=20, help="how long they fall due")
    parser.add_argument("--storm", type=int, default=100_000, help="timers due at one instant")
    parser.add_argument("--live", type=int, default=1000, help="live events/s in the storm")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--skip", nargs="*", default=[], choices=["fire", "storm"])
    parser.add_argument("--worker-args", default="", help="extra flags for this worker")
    args = parser.parse_args()
    repos = [REPO] if args.against is None else [args.against.resolve(), REPO]
    broker_ctx = None
    if not args.broker:
        broker_ctx = LocalKafka().start()
        args.broker = broker_ctx.bootstrap_servers
    try:
        with tempfile.TemporaryDirectory(prefix="bench-timers-") as tmp:
            if "fire" not in args.skip:
                print("1. fire on time")
                for repo in repos:
                    extra = args.worker_args.split() if repo == REPO else []
                    fire_on_time(args.broker, Path(tmp), repo, extra, args.open, args.rate,
                                 args.seconds)  # fmt: skip
                probe = asyncio.run(_probe(args.broker, args.rate, args.seconds))
                print(f"  reference, the probe (bare transactional producer firing at the same "
                      f"instants, committing at once): lateness {quantiles(probe)}")  # fmt: skip
            if "storm" not in args.skip:
                print("2. the opening-bell storm")
                for repo in repos:
                    extra = args.worker_args.split() if repo == REPO else []
                    storm(args.broker, Path(tmp), repo, extra, args.storm, args.live)
                bare = asyncio.run(_bare_storm(args.broker, args.storm))
                print(f"  reference, a bare transactional producer's {args.storm:,} records "
                      f"committed at once: out {bare:.2f} s after the first send")  # fmt: skip
    finally:
        if broker_ctx is not None:
            broker_ctx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
