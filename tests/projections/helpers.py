"""Builders for projection tests: records of both topics from a ticket history."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from fastapi import FastAPI

from events.instants import Micros
from projections.api import bound_port, server
from projections.projector import Projector, Topics
from projections.store import Record, Store
from streams.sla.replay import replay_lines
from streams.sla.rules import Policy

TICKETS = "ticket-events"
SLA = "sla-events"


def lines(history: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in history]


def sla_records(
    history: list[dict[str, Any]], policy: Policy, until: Micros | None = None
) -> list[bytes]:
    """The sla-events the stream processor would emit for the history (via the core's replay)."""
    return [orjson.dumps(e) for e in replay_lines(lines(history), policy, until)]


def as_records(topic: str, values: list[bytes]) -> list[Record]:
    return [Record(topic, 0, offset, value) for offset, value in enumerate(values)]


def apply_interleaved(
    store: Store, tickets: list[Record], slas: list[Record], seed: int | None, batch: int = 7
) -> None:
    """Apply both topics in batches, in a random interleaving (each topic keeps its order)."""
    rng = random.Random(seed)
    i = j = 0
    while i < len(tickets) or j < len(slas):
        take_ticket = j >= len(slas) or (i < len(tickets) and (seed is None or rng.random() < 0.5))
        if take_ticket:
            size = batch if seed is None else rng.randint(1, batch)
            store.apply_batch("ticket", tickets[i : i + size])
            i += size
        else:
            size = batch if seed is None else rng.randint(1, batch)
            store.apply_batch("sla", slas[j : j + size])
            j += size


async def make_topics(kafka_topics: Any, partitions: int = 3) -> Topics:
    """Fresh ticket and SLA topics from the shared `kafka_topics` factory (deleted after)."""
    return Topics(
        tickets=await kafka_topics.create("ticket-events", partitions=partitions),
        sla=await kafka_topics.create("sla-events", partitions=partitions),
    )


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for value in values:
            try:
                key = orjson.loads(value).get("ticket_id", "").encode()
            except orjson.JSONDecodeError:
                key = b"junk"
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_for(projector: Projector, expected: int, timeout: float = 60.0) -> None:
    """Until the stored offsets account for `expected` records (summed over partitions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        offsets = await asyncio.to_thread(projector.store.offsets)
        if sum(offsets.values()) >= expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"projector stuck at {offsets} (wanted {expected} records)")


@asynccontextmanager
async def api_client(app: FastAPI, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client for the app, with its lifespan (startup and shutdown) run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=headers
        ) as client:
            yield client


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real uvicorn server on a free 127.0.0.1 port; yields its base URL."""
    srv = server(app, "127.0.0.1", 0)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        if task.done():
            await task
            raise AssertionError("server did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{bound_port(srv)}"
    finally:
        srv.should_exit = True
        await task
