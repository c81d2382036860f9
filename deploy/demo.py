"""`escalator demo`: a real broker, a worker, live tickets, and escalations arriving on screen.

Starts the local Kafka broker (or uses KAFKA_BOOTSTRAP_SERVERS), a wall-clock worker on the
demo policy (seconds instead of hours), publishes a handful of tickets as they happen, and
prints every SLA event the worker emits with how late it came after its due time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

from deploy.local_service import free_port
from events.instants import from_datetime, parse_instant

DEMO_POLICY = Path(__file__).with_name("examples") / "demo-policy.toml"
PARTITIONS = 4


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = commands.add_parser("demo")
    demo.add_argument("--seconds", type=float, default=45.0, help="how long to watch")
    demo.set_defaults(func=_demo)


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    from deploy.kafka_local import LocalKafka

    print("demo: starting a local Apache Kafka broker (KRaft) ...", flush=True)
    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


def _wait_healthy(port: int, worker: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with status {worker.returncode}")
        url = f"http://127.0.0.1:{port}/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("the worker did not become healthy in time")


def _opened(now: datetime) -> list[dict[str, Any]]:
    """Four tickets reported now, each to show a different part of the policy."""
    tickets = [
        ("DEMO-1", 1, "C-ACME"),  # never answered: breach, warning, two escalations, breach
        ("DEMO-2", 1, "C-GLOBEX"),  # answered and resolved in time: two sla.met
        ("DEMO-3", 2, "C-INITECH"),  # answered in time, then its resolution breaches
        ("DEMO-4", 3, "C-ACME"),  # never answered: a first-response breach only
    ]
    return [
        {
            "event_id": f"{ticket}-open",
            "ticket_id": ticket,
            "type": "ticket.opened",
            "occurred_at": now.isoformat(),
            "severity": severity,
            "customer_id": customer,
        }
        for ticket, severity, customer in tickets
    ]


def _follow_ups(now: datetime) -> list[dict[str, Any]]:
    stamp = now.isoformat()
    return [
        {
            "event_id": "DEMO-2-reply",
            "ticket_id": "DEMO-2",
            "type": "ticket.responded",
            "occurred_at": stamp,
        },
        {
            "event_id": "DEMO-3-reply",
            "ticket_id": "DEMO-3",
            "type": "ticket.responded",
            "occurred_at": stamp,
        },
        {
            "event_id": "DEMO-2-done",
            "ticket_id": "DEMO-2",
            "type": "ticket.resolved",
            "occurred_at": stamp,
        },
    ]


async def _watch(broker: str, topic: str, seconds: float) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen = 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    late = (from_datetime(datetime.now(UTC)) - parse_instant(event["due_at"])) / 1e6
                    when = f"arrived {late:+5.2f}s after due"
                    if event["type"] == "sla.met":
                        when = f"met after {event['took_seconds']:.1f}s"
                    detail = {
                        "ticket.escalated": f"level {event.get('level')} -> {event.get('to')}",
                        "sla.warning": f"threshold {event.get('threshold')}",
                        "customer.notification_required": f"eta {event.get('eta')}",
                    }.get(event["type"], "")
                    print(
                        f"{event['ticket_id']:<7} sev{event['severity']}  {event['type']:<31} "
                        f"{event['metric']:<15} due {event['due_at'][11:19]}Z  "
                        f"{when:<27} {detail}".rstrip(),
                        flush=True,
                    )
                    seen += 1
    finally:
        await consumer.stop()
    return seen


async def _play(broker: str, tag: str, seconds: float) -> int:
    """Publish the tickets, then their follow-ups 3 s later, while watching the SLA events.

    Produced in this process: a CLI subprocess per batch took seconds to start under load,
    long enough for a follow-up to reach the worker after the deadline it was meant to meet."""
    from streams.engine.cli import publish_lines
    from streams.engine.topics import ensure_topics, topic_limits

    tickets = f"demo-{tag}-tickets"
    await ensure_topics(broker, [tickets], PARTITIONS, 30.0, topic_limits(tickets))
    await publish_lines(broker, tickets, [orjson.dumps(r) for r in _opened(datetime.now(UTC))])
    print("demo: published 4 tickets (sev1 x2, sev2, sev3); watching SLA events ...\n", flush=True)
    watching = asyncio.create_task(_watch(broker, f"demo-{tag}-sla", seconds))
    await asyncio.sleep(3)
    await publish_lines(broker, tickets, [orjson.dumps(r) for r in _follow_ups(datetime.now(UTC))])
    return await watching


def _demo(args: argparse.Namespace) -> int:
    tag = uuid.uuid4().hex[:8]
    topics = [
        "--ticket-topic",
        f"demo-{tag}-tickets",
        "--sla-topic",
        f"demo-{tag}-sla",
        "--dlq-topic",
        f"demo-{tag}-dlq",
        "--partitions",
        str(PARTITIONS),
    ]
    cli = [sys.executable, "-m", "deploy.cli"]
    with _broker() as broker, tempfile.TemporaryDirectory() as data:
        port = free_port()
        log = Path(data) / "worker.log"
        worker = subprocess.Popen(
            [
                *cli,
                "run",
                "--broker",
                broker,
                *topics,
                "--clock",
                "wall",
                "--policy",
                str(DEMO_POLICY),
                "--app-id",
                f"demo-{tag}",
                "--port",
                str(port),
                "--data-dir",
                data,
                "--log-level",
                "warning",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            print(
                f"demo: worker starting (broker {broker}, policy {DEMO_POLICY.name}) ...",
                flush=True,
            )
            try:
                _wait_healthy(port, worker)
            except RuntimeError as exc:
                print(f"demo: {exc}; worker log:\n{log.read_text()[-4000:]}", file=sys.stderr)
                return 1
            seen = asyncio.run(_play(broker, tag, args.seconds))
            print(f"\ndemo: {seen} SLA events in {args.seconds:.0f} s", flush=True)
            return 0 if seen else 1
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
