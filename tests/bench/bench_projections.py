"""Benchmark of the projections: projector throughput and API latency at 1M tickets.

    python tests/bench/bench_projections.py [--pg DSN] [--broker HOST:PORT] [--tickets 1000000]

1. Projector throughput (events/s) into SQLite and PostgreSQL: the Store applying batches of
   a generated history (ticket events + the SLA events the core emits for it), and, with
   --broker, end to end through Kafka (produce first, then time the projector to catch up).
2. p95 latency of the main API queries ('breaching next hour', 'one ticket') over HTTP, with
   --tickets synthetic tickets bulk-loaded directly into the tables (3 SLA events each).
Prints figures; asserts nothing. Targets: both queries < 50 ms p95 at 1M tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson

from events.instants import HOUR, MINUTE, SECOND, format_instant
from events.samples import generate_history
from projections.db import Database
from projections.model import SLA_EVENT_COLUMNS, TICKET_COLUMNS
from projections.schema import migrate
from projections.store import Record, Store
from streams.sla.policy import load_policy
from streams.sla.replay import replay_lines
from streams.sla.rules import Policy


def fresh_target(kind: str, pg: str | None, workdir: Path) -> tuple[str, Any]:
    """A new empty database; returns (target, cleanup)."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:6]}.sqlite3"

        def remove() -> None:
            for p in workdir.glob(path.name + "*"):
                p.unlink(missing_ok=True)

        return str(path), remove
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    assert pg is not None
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(pg)
    params["dbname"] = name

    def drop() -> None:
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_conninfo("", **params), drop


def workload(tickets: int, policy: Policy) -> tuple[list[bytes], list[bytes]]:
    history = generate_history(tickets, seed=5)
    ticket_lines = [orjson.dumps(e) for e in history]
    slas = [orjson.dumps(e) for e in replay_lines(ticket_lines, policy)]
    return ticket_lines, slas


def bench_store(target: str, policy: Policy, tickets: list[bytes], slas: list[bytes]) -> float:
    """Events/s of Store.apply_batch, batches of 500 per topic, alternating topics."""
    db = Database(target)
    migrate(db)
    store = Store(db, policy)
    t_records = [Record("ticket-events", 0, i, v) for i, v in enumerate(tickets)]
    s_records = [Record("sla-events", 0, i, v) for i, v in enumerate(slas)]
    start = time.perf_counter()
    for i in range(0, max(len(t_records), len(s_records)), 500):
        if i < len(t_records):
            store.apply_batch("ticket", t_records[i : i + 500])
        if i < len(s_records):
            store.apply_batch("sla", s_records[i : i + 500])
    elapsed = time.perf_counter() - start
    db.close()
    return (len(tickets) + len(slas)) / elapsed


async def bench_kafka(
    target: str, policy: Policy, broker: str, tickets: list[bytes], slas: list[bytes]
) -> float:
    """Events/s of the real projector catching up on both topics (produced beforehand)."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    from projections.projector import Projector, Topics

    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"bench-tickets-{suffix}", f"bench-sla-{suffix}")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    await admin.create_topics([NewTopic(t, 3, 1) for t in (topics.tickets, topics.sla)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20)
    await producer.start()
    for topic, values in ((topics.tickets, tickets), (topics.sla, slas)):
        for value in values:
            await producer.send(topic, value, key=orjson.loads(value)["ticket_id"].encode())
    await producer.flush()
    await producer.stop()
    projector = Projector(target, policy, broker, topics, group_id=f"bench-{suffix}")
    total = len(tickets) + len(slas)
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(projector.run(stop))
    while sum((await asyncio.to_thread(projector.store.offsets)).values()) < total:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    projector.close()
    return total / elapsed


def synthetic_rows(count: int, now: int, rng: random.Random) -> tuple[list[Any], list[Any]]:
    """Tickets like a busy help desk's: 10% open with deadlines over the next 5 days, under the
    shipped policy (`clevr-helpdesk`, its `default` calendar); rows in TICKET_COLUMNS and
    SLA_EVENT_COLUMNS order."""
    tickets: list[Any] = []
    events: list[Any] = []
    state_json = '{"synthetic": true}'
    fr: tuple[str, int | None, None, str]
    res: tuple[str, int | None, None, str]
    for i in range(count):
        ticket_id = f"S-{i:07d}"
        reported = now - rng.randrange(60 * 24 * 60) * MINUTE
        severity = rng.choice((1, 2, 2, 3, 3, 3, 4))
        customer = f"C-{rng.randrange(500):03d}"
        group = rng.choice(("l1", "l2", "billing"))
        if rng.random() < 0.1:
            due = now + rng.randrange(-2 * HOUR, 5 * 24 * HOUR)
            fr = ("on_track", due, None, "business")
            res = ("on_track", due + 8 * HOUR, None, "business")
            status, resolved, nxt, worst = "open", None, due, "on_track"
            fr_e = fr_b = res_e = res_b = None
            responded = None
        else:
            status = "closed" if rng.random() < 0.8 else "resolved"
            responded = reported + rng.randrange(1, 240) * MINUTE
            resolved = responded + rng.randrange(1, 48 * 60) * MINUTE
            met = rng.random() < 0.85
            fr = ("met" if met else "breached", None, None, "business")
            res = ("met", None, None, "business")
            nxt, worst = None, fr[0]
            fr_e, fr_b = responded - reported, (responded - reported) // 2
            res_e, res_b = resolved - reported, (resolved - reported) // 3
        tickets.append((
            ticket_id, status, severity, customer, f"agent-{rng.randrange(80)}", group,
            reported, responded, resolved, resolved if status == "closed" else None, 0,
            resolved or reported, *fr, *res, worst, nxt, 0, fr_e, fr_b, res_e, res_b,
            "bench", state_json, "clevr-helpdesk", "default", "default",
            None,  # metrics_json: the seed times only first response and resolution
        ))  # fmt: skip
        for n, kind in enumerate(("sla.warning", "sla.met", "ticket.escalated")):
            at = reported + (n + 1) * 30 * MINUTE
            events.append((
                f"{ticket_id}-{n}", ticket_id, kind, "resolution", severity, 0, at, at,
                1 if kind == "ticket.escalated" else None,
                "senior" if kind == "ticket.escalated" else None,
                0.5 if kind == "sla.warning" else None,
                60.0 if kind == "sla.met" else None, "business", None, "clevr-helpdesk", "bench",
                "default", None, None, None,
            ))  # fmt: skip
    return tickets, events


def load_synthetic(target: str, count: int, now: int) -> float:
    db = Database(target)
    migrate(db)
    rng = random.Random(42)
    start = time.perf_counter()
    chunk = 100_000
    for offset in range(0, count, chunk):
        tickets, events = synthetic_rows(min(chunk, count - offset), now, rng)
        if offset:  # ids must stay unique across chunks
            tickets = [(f"S-{offset + i:07d}", *t[1:]) for i, t in enumerate(tickets)]
            events = [
                (f"S-{offset + i // 3:07d}-{i % 3}", f"S-{offset + i // 3:07d}", *e[2:])
                for i, e in enumerate(events)
            ]
        with db.tx():
            db.bulk_insert("tickets", TICKET_COLUMNS, tickets)
            db.bulk_insert("sla_events", SLA_EVENT_COLUMNS, events)
    db.execute("ANALYZE")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


async def bench_api(target: str, policy: Policy, count: int, now: int, runs: int) -> dict[str, Any]:
    import httpx

    from projections.api import make_app
    from tests.projections.helpers import serving

    rng = random.Random(7)
    results: dict[str, Any] = {}
    app = make_app(target, policy, clock=lambda: now)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as session:
        queries: dict[str, Callable[[], str]] = {
            "breaching next hour": lambda: "/api/tickets?breaching_within=1h&limit=50",
            "one ticket": lambda: f"/api/tickets/S-{rng.randrange(count):07d}",
            "open by due (dashboard list)": lambda: "/api/tickets?status=open,paused&limit=40",
            "dashboard (compliance cached 60 s)": lambda: "/api/dashboard",
        }
        for name, path in queries.items():
            samples = []
            for i in range(runs + 10):
                begin = time.perf_counter()
                response = await session.get(path())
                body = response.content
                assert response.status_code == 200, body[:200]
                if i >= 10:  # warm-up excluded
                    samples.append((time.perf_counter() - begin) * 1000)
            results[name] = {"p50_ms": statistics.median(samples), "p95_ms": p95(samples),
                             "runs": runs,
                             "items": len(orjson.loads(body).get("items", [1]))}  # fmt: skip
        # ad-hoc compliance: scans every ticket of the period (no cache), a few runs only
        samples = []
        for _ in range(5):
            begin = time.perf_counter()
            response = await session.get("/api/compliance?from=30d")
            assert response.status_code == 200
            samples.append((time.perf_counter() - begin) * 1000)
        results["compliance 30 days by severity (uncached)"] = {
            "p50_ms": statistics.median(samples), "p95_ms": max(samples), "items": 4, "runs": 5,
        }  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg",
        default=os.environ.get("ESCALATOR_BENCH_PG"),
        help="PostgreSQL DSN of a server to create scratch databases on",
    )
    parser.add_argument("--broker", default=os.environ.get("ESCALATOR_BENCH_BROKER"))
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=3000, help="tickets for throughput")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs per backend")
    args = parser.parse_args()
    policy = load_policy(None)
    backends = ["sqlite"] + (["postgres"] if args.pg else [])
    tickets, slas = workload(args.history, policy)
    print(f"workload: {len(tickets)} ticket events + {len(slas)} SLA events")
    now = int(time.time()) * SECOND
    with tempfile.TemporaryDirectory(prefix="bench-proj-") as tmp:
        workdir = Path(tmp)
        for kind in backends:
            rates = []
            for _ in range(args.repeat):  # fresh database each time; the machine is shared
                target, cleanup = fresh_target(kind, args.pg, workdir)
                rates.append(bench_store(target, policy, tickets, slas))
                cleanup()
            print(
                f"[{kind}] projector (store, batches of 500): "
                f"median {statistics.median(rates):,.0f} events/s "
                f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.repeat} runs)"
            )
            if args.broker:
                target, cleanup = fresh_target(kind, args.pg, workdir)
                rate = asyncio.run(bench_kafka(target, policy, args.broker, tickets, slas))
                print(f"[{kind}] projector end to end via Kafka: {rate:,.0f} events/s")
                cleanup()
        for kind in backends:
            target, cleanup = fresh_target(kind, args.pg, workdir)
            seconds = load_synthetic(target, args.tickets, now)
            print(f"[{kind}] bulk-loaded {args.tickets:,} tickets + {3 * args.tickets:,} SLA "
                  f"events in {seconds:.1f}s")  # fmt: skip
            results = asyncio.run(bench_api(target, policy, args.tickets, now, args.runs))
            for name, figures in results.items():
                print(f"[{kind}] {name}: p50 {figures['p50_ms']:.2f} ms, "
                      f"p95 {figures['p95_ms']:.2f} ms over {figures['runs']} HTTP requests "
                      f"({figures['items']} items)")  # fmt: skip
            cleanup()
    print(f"generated at {format_instant(now)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
