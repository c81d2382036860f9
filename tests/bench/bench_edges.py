"""Benchmark of the edges: ingest requests/s and events/s, notify deliveries/s.

    python tests/bench/bench_edges.py [--broker HOST:PORT] [--requests 3000] [--events 100000]

Each figure is printed beside the bare aiokafka producer rate measured in the same run (same
broker, acks=all, idempotent, records of the same size), the reference that says how much of
the broker's rate a service keeps:

1. bare producer: records/s of one AIOKafkaProducer sending contract events, awaiting all.
2. ingest, one event per request: `escalator ingest` (a subprocess) answering POST /v1/events
   from 32 concurrent clients; requests/s (each answered after the broker has the record).
3. ingest, JSONL batches of 500 events: events/s.
4. notify: SLA events already on a topic, `escalator notify` (a subprocess) delivering each to
   a local webhook receiver (deploy.webhook_receiver, in this process); deliveries/s from
   start to the last delivery.
Without --broker a local Kafka is started with `deploy.kafka_local`. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from deploy.kafka_local import LocalKafka, unique_name
from deploy.local_service import free_port
from deploy.webhook_receiver import Recorder
from streams.engine.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"


def contract_event(n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"bench-{n}",
            "ticket_id": f"T-{n % 5000}",
            "type": "ticket.opened",
            "severity": 2,
            "customer_id": "acme",
            "occurred_at": "2026-11-30T09:00:00-05:00",
        }
    )


def sla_event(n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"00000000-0000-5000-8000-{n:012d}",
            "type": "ticket.escalated",
            "ticket_id": f"T-{n}",
            "severity": 1,
            "metric": "escalation",
            "due_at": "2026-11-30T15:00:00Z",
            "at": "2026-11-30T15:00:00Z",
            "cycle": 0,
            "policy": {"name": "clevr-helpdesk", "version": "2026-11"},
            "customer_id": "acme",
            "group": "tier1",
            "assignee": "ana",
            "level": 1,
            "to": "senior-technical-staff",
        }
    )


async def bare_producer(broker: str, topic: str, count: int, make: Any) -> float:
    """Records/s of a bare idempotent acks=all producer (the in-run reference)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    try:
        values = [make(n) for n in range(count)]
        started = time.perf_counter()
        pending = [await producer.send(topic, v, key=v[-12:]) for v in values]
        await asyncio.gather(*pending)
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *command],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=out,
        )


async def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer")
            await asyncio.sleep(0.2)


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to POST every body (all answered 200) from `concurrency` clients."""
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            while queue:
                body = queue.pop()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - started


async def bench_ingest(broker: str, requests: int, events: int, tmp: Path) -> None:
    topic = unique_name("bench-ingest")
    await ensure_topics(broker, [topic, topic + "-dlq", topic + "-ref"], 8)
    reference = await bare_producer(broker, topic + "-ref", events, contract_event)
    port = free_port()
    proc = start(
        ["ingest", "--broker", broker, "--ticket-topic", topic, "--dlq-topic", topic + "-dlq",
         "--port", str(port)],
        {"ESCALATOR_INGEST_TOKEN": TOKEN},
        tmp / "ingest.log",
    )  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/v1/events"
        singles = [contract_event(n) for n in range(requests)]
        await post_all(url, singles[:200], 32)  # warm-up
        took = await post_all(url, singles, 32)
        rate = requests / took
        print(f"bare aiokafka producer (acks=all, idempotent): {reference:,.0f} records/s")
        print(
            f"ingest, one event per request (32 clients): {rate:,.0f} requests/s "
            f"= {rate / reference:.3f} of the bare producer"
        )
        size = 500
        batches = [
            b"\n".join(contract_event(n) for n in range(start_, min(start_ + size, events)))
            for start_ in range(0, events, size)
        ]
        took = await post_all(url, batches, 8)
        rate = events / took
        print(
            f"ingest, JSONL batches of {size} (8 clients): {rate:,.0f} events/s "
            f"= {rate / reference:.2f} of the bare producer"
        )
    finally:
        proc.terminate()
        proc.wait(30)


async def bench_notify(broker: str, count: int, tmp: Path) -> None:
    topic = unique_name("bench-notify")
    await ensure_topics(broker, [topic, topic + "-tickets", topic + "-ref"], 8)
    reference = await bare_producer(broker, topic + "-ref", count, sla_event)
    await bare_producer(broker, topic, count, sla_event)  # the input
    receiver = await Recorder().start()
    rules = tmp / "rules.toml"
    rules.write_text(
        f'[channels.hook]\nkind = "webhook"\nurl = "{receiver.url}/hook"\n'
        'secret_env = "BENCH_HOOK_SECRET"\n[[rules]]\nname = "all"\nchannels = ["hook"]\n'
    )
    started = time.perf_counter()
    proc = start(
        ["notify", "--rules", str(rules), "--broker", broker, "--sla-topic", topic,
         "--ticket-topic", topic + "-tickets", "--consumer-group", topic + "-group"],
        {"BENCH_HOOK_SECRET": "bench-secret"},
        tmp / "notify.log",
    )  # fmt: skip
    try:
        while len(receiver.received) < count:
            await asyncio.sleep(0.05)
            if proc.poll() is not None:
                raise RuntimeError("notify exited; see " + str(tmp / "notify.log"))
        took = time.perf_counter() - started
        rate = count / took
        print(
            f"notify, signed webhook to a local receiver: {rate:,.0f} deliveries/s "
            f"({count:,} events, {took:.1f} s incl. start-up) "
            f"= {rate / reference:.3f} of the bare producer ({reference:,.0f} records/s)"
        )
    finally:
        proc.terminate()
        proc.wait(30)
        await receiver.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["ingest", "notify"])
    args = parser.parse_args()
    broker_ctx = None
    if not args.broker:
        broker_ctx = LocalKafka().start()
        args.broker = broker_ctx.bootstrap_servers
    try:
        with tempfile.TemporaryDirectory(prefix="bench-edges-") as tmp:
            if "ingest" not in args.skip:
                asyncio.run(bench_ingest(args.broker, args.requests, args.events, Path(tmp)))
            if "notify" not in args.skip:
                asyncio.run(bench_notify(args.broker, args.deliveries, Path(tmp)))
    finally:
        if broker_ctx is not None:
            broker_ctx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
