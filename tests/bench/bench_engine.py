"""Benchmark of the streaming engine against a real broker; prints figures.

    python tests/bench/bench_engine.py [--broker HOST:PORT] [--history 5000] [--open 100000]

1. throughput: a generated history is published first, then one worker (event clock,
   exactly-once) drains it; ticket events/s from "worker ready" to "offsets committed", the
   worker's CPU time per event (/proc), and asyncio tasks created per event
   (`counting_worker.py`);
2. reference, same run, same input: a bare aiokafka consume-then-produce loop (transactional,
   read_committed, like the engine; and plain), one output record per input record, and the
   replay fold's CPU per event (`streams.sla.replay`, in this process): the floor of our own
   work per event;
3. timer lateness p50/p99 (wall clock): `--open` tickets with far deadlines are loaded, then
   a few thousand tickets fall due over ~30 s; lateness = receive time of the committed SLA
   event minus its due_at;
4. worker memory per open ticket (RSS delta / tickets);
5. recovery: the worker is killed and a new one reads the changelog back (time to ready).
Without --broker a local Kafka is started with `deploy.kafka_local`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deploy.kafka_local import LocalKafka, unique_name  # noqa: E402
from deploy.local_service import free_port  # noqa: E402
from events.instants import SECOND, format_instant, parse_instant  # noqa: E402
from events.samples import generate_history  # noqa: E402
from streams.engine.cli import publish_lines  # noqa: E402
from streams.engine.topics import ensure_topics  # noqa: E402

BENCH_POLICY = """
name = "bench"
[calendar]
timezone = "UTC"
open = "00:00"
close = "23:59"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[severity.1]
first_response = { target = "3s", clock = "elapsed" }
[severity.3]
first_response = { target = "30d", clock = "elapsed" }
"""

PARTITIONS = 4


class Worker:
    extra: ClassVar[list[str]] = []

    def __init__(
        self,
        broker: str,
        base: str,
        clock: str,
        policy: str | None,
        log: Path,
        input_topic: str | None = None,
        partitions: int = PARTITIONS,
        repo: Path = REPO,
    ):
        """`repo`: the checkout whose code runs (another one with `--against`: its own
        `.venv`)."""
        self.port = free_port()
        self.tasks_file = log.with_suffix(".tasks")
        python = sys.executable if repo == REPO else str(repo / ".venv" / "bin" / "python")
        args = [
            python,
            str(repo / "tests" / "bench" / "counting_worker.py"),
            str(self.tasks_file),
            "run",
            "--broker",
            broker,
            "--input-topic",
            input_topic or f"{base}-in",
            "--output-topic",
            f"{base}-out",
            "--dlq-topic",
            f"{base}-dlq",
            "--partitions",
            str(partitions),
            "--app-id",
            f"{base}-app",
            "--clock",
            clock,
            "--web-port",
            str(self.port),
            "--data-dir",
            str(log.parent / "data"),
            "--loglevel",
            "info",
        ]
        if policy:
            args += ["--policy", policy]
        args += self.extra
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=repo, stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(repo)}
            )

    def ready(self, timeout: float = 600) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"worker exited: see {self.log}")
            if self.health() is not None:
                return time.monotonic()
            time.sleep(0.05)
        raise SystemExit(f"worker not ready: see {self.log}")

    def health(self) -> dict[str, Any] | None:
        """The /health body once it says ok, else None."""
        try:
            url = f"http://127.0.0.1:{self.port}/health"
            with urllib.request.urlopen(url, timeout=2) as reply:
                body: dict[str, Any] = orjson.loads(reply.read())
                return body
        except OSError:
            return None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tasks(self) -> int:
        """asyncio tasks the worker has created so far."""
        time.sleep(0.25)  # the count file is rewritten every 0.1 s
        try:
            return int(self.tasks_file.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def rss_kib(self) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) if match else 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


async def _lag(broker: str, group: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return sum(
            max(ends[tp] - (committed[tp].offset if tp in committed else 0), 0) for tp in tps
        )
    finally:
        await consumer.stop()
        await admin.close()


def wait_drained(broker: str, group: str, topic: str, timeout: float = 1800) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(_lag(broker, group, topic)) == 0:
            return time.monotonic()
        time.sleep(0.25)
    raise SystemExit("worker did not drain its input")


# ---------------------------------------------------------------------------------------------


def bench_engine(broker: str, tickets: int, tmp: Path) -> tuple[str, list[bytes], float, float]:
    base = unique_name("bench-tp")
    history = generate_history(tickets, seed=5)
    lines = [orjson.dumps(e) for e in history]
    asyncio.run(ensure_topics(broker, [f"{base}-in", f"{base}-out", f"{base}-dlq"], PARTITIONS))
    asyncio.run(publish_lines(broker, f"{base}-in", lines))
    worker = Worker(broker, base, "event", None, tmp / "throughput.log")
    try:
        ready = worker.ready()
        cpu0, tasks0 = worker.cpu_seconds(), worker.tasks()
        done = wait_drained(broker, f"{base}-app", f"{base}-in")
        cpu1, tasks1 = worker.cpu_seconds(), worker.tasks()
    finally:
        worker.kill()
    events = len(lines)
    rate = events / (done - ready)
    print(
        f"engine: {events} ticket events ({tickets} tickets) in {done - ready:.1f} s "
        f"= {rate:,.0f} events/s (1 worker, exactly-once, 4 partitions); worker CPU "
        f"{(cpu1 - cpu0) / events * 1e6:.0f} us/event, {(tasks1 - tasks0) / events:.3f} asyncio "
        "tasks/event"
    )
    return base, lines, rate, (cpu1 - cpu0) / events * 1e6


def bench_fold(lines: list[bytes]) -> float:
    """The replay fold's CPU per event over the same history (best of 3), in microseconds."""
    from streams.sla.policy import load_policy
    from streams.sla.replay import Replayer

    policy = load_policy()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _event in Replayer(policy).run(lines):
            pass
        best = min(best, time.process_time() - started)
    per_event = best / len(lines) * 1e6
    print(f"replay fold (floor of our own work): {per_event:.0f} us CPU/event, same history")
    return per_event


async def _bare(
    broker: str, source: str, sink: str, count: int, transactional: bool
) -> tuple[float, float]:
    """(events/s, CPU microseconds per event of this process) of the bare loop."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    group = unique_name("bare")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        linger_ms=1,
        transactional_id=unique_name("bare-tx") if transactional else None,
        enable_idempotence=True,
    )
    await consumer.start()
    await producer.start()
    tps = [TopicPartition(source, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    seen = 0
    started = time.monotonic()
    cpu_started = time.process_time()
    last_commit = started
    try:
        if transactional:
            await producer.begin_transaction()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                for record in records:
                    await producer.send(sink, record.value, key=record.key, partition=tp.partition)
                seen += len(records)
            if transactional and (time.monotonic() - last_commit > 0.2 or seen >= count):
                offsets = {tp: await consumer.position(tp) for tp in tps}
                await producer.send_offsets_to_transaction(offsets, group)
                await producer.commit_transaction()
                await producer.begin_transaction()
                last_commit = time.monotonic()
        if transactional:
            await producer.commit_transaction()
        else:
            await producer.flush()
        cpu = (time.process_time() - cpu_started) / seen * 1e6
        return seen / (time.monotonic() - started), cpu
    finally:
        await producer.stop()
        await consumer.stop()


def bench_bare(broker: str, base: str, count: int) -> tuple[float, float]:
    sink = f"{base}-bare"
    asyncio.run(ensure_topics(broker, [sink], PARTITIONS))
    tx, tx_cpu = asyncio.run(_bare(broker, f"{base}-in", sink, count, True))
    plain, _ = asyncio.run(_bare(broker, f"{base}-in", sink, count, False))
    print(
        f"bare aiokafka consume->produce: {tx:,.0f} events/s transactional "
        f"({tx_cpu:.0f} us CPU/event), {plain:,.0f} events/s plain (1 process, same input)"
    )
    return tx, tx_cpu


async def _watch(broker: str, topic: str, expect: int, timeout: float) -> list[float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    lateness: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(lateness) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["type"] == "sla.breached":
                        lateness.append(now - parse_instant(event["due_at"]) / SECOND)
    finally:
        await consumer.stop()
    return lateness


def bench_timers(broker: str, open_tickets: int, due_tickets: int, tmp: Path) -> None:
    base = unique_name("bench-wall")
    policy = tmp / "bench_policy.toml"
    policy.write_text(BENCH_POLICY)
    topics = [f"{base}-in", f"{base}-out", f"{base}-dlq"]
    asyncio.run(ensure_topics(broker, topics, PARTITIONS))
    worker = Worker(broker, base, "wall", str(policy), tmp / "wall.log")
    try:
        worker.ready()
        time.sleep(1)
        rss0 = worker.rss_kib()
        now = time.time_ns() // 1000
        opens = (
            orjson.dumps(
                {
                    "type": "ticket.opened",
                    "event_id": f"O-{n}-o",
                    "ticket_id": f"O-{n}",
                    "severity": 3,
                    "occurred_at": format_instant(now),
                }
            )
            for n in range(open_tickets)
        )
        t0 = time.monotonic()
        asyncio.run(publish_lines(broker, topics[0], opens))
        loaded = wait_drained(broker, f"{base}-app", topics[0])
        time.sleep(2)
        rss1 = worker.rss_kib()
        print(
            f"loaded {open_tickets:,} open tickets in {loaded - t0:.1f} s "
            f"({open_tickets / (loaded - t0):,.0f} opens/s incl. publishing); worker RSS "
            f"{rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB = "
            f"{(rss1 - rss0) * 1024 / max(open_tickets, 1):,.0f} bytes per open ticket"
        )

        window = 30 * SECOND
        lead = 8 * SECOND
        start = time.time_ns() // 1000 + lead
        dues = [
            orjson.dumps(
                {
                    "type": "ticket.opened",
                    "event_id": f"D-{n}-o",
                    "ticket_id": f"D-{n}",
                    "severity": 1,
                    "occurred_at": format_instant(start + n * window // due_tickets - 3 * SECOND),
                }
            )
            for n in range(due_tickets)
        ]
        asyncio.run(publish_lines(broker, topics[0], dues))
        late = asyncio.run(_watch(broker, topics[1], due_tickets, timeout=120))
        late.sort()
        if late:
            p50 = statistics.median(late)
            p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
            print(
                f"timer lateness with {open_tickets:,} open tickets, {len(late):,} timers "
                f"due over {window // SECOND} s: p50 {p50 * 1000:.0f} ms, p99 "
                f"{p99 * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms"
            )
        else:
            print("timer lateness: no SLA event received")
        worker.kill()
        restarted = Worker(broker, base, "wall", str(policy), tmp / "recovery.log")
        t1 = time.monotonic()
        try:
            ready = restarted.ready()
        finally:
            restarted.kill()
        text = (tmp / "recovery.log").read_text(errors="replace")
        pattern = r"read (\d+) changelog records of partitions \[[^\]]*\] in ([\d.]+) s"
        read = re.findall(pattern, text)
        detail = f"; changelog read: {read[-1][0]} records in {read[-1][1]} s" if read else ""
        print(
            f"recovery of {open_tickets + due_tickets:,} tickets: worker ready "
            f"{ready - t1:.1f} s after start{detail}"
        )
    finally:
        worker.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--history", type=int, default=5000, help="tickets for throughput")
    parser.add_argument("--open", type=int, default=100_000, help="open tickets for timers")
    parser.add_argument("--due", type=int, default=3000, help="tickets falling due")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "timers", "bare"])
    parser.add_argument("--worker-args", default="", help="extra flags for `escalator run`")
    args = parser.parse_args()
    Worker.extra = args.worker_args.split()
    broker_ctx = None
    if not args.broker:
        broker_ctx = LocalKafka().start()
        args.broker = broker_ctx.bootstrap_servers
    try:
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
            if "throughput" not in args.skip:
                base, lines, rate, cpu = bench_engine(args.broker, args.history, Path(tmp))
                bench_fold(lines)
                if "bare" not in args.skip:
                    ceiling, ceiling_cpu = bench_bare(args.broker, base, len(lines))
                    print(
                        f"engine / bare transactional loop = {rate / ceiling:.2f} (rate), "
                        f"{ceiling_cpu / cpu:.2f} (CPU per event: less sensitive to load)"
                    )
            if "timers" not in args.skip:
                bench_timers(args.broker, args.open, args.due, Path(tmp))
    finally:
        if broker_ctx is not None:
            broker_ctx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
