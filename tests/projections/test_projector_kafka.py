"""The projector against a real Kafka broker: live projection, restart from DB offsets, rebuild."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from projections.db import Database
from projections.projector import Projector, Topics
from projections.store import dump_tables
from streams.sla.rules import Policy
from tests.projections.helpers import lines, make_topics, produce, sla_records, wait_for

pytestmark = pytest.mark.kafka


async def test_live_restart_and_rebuild(
    kafka_bootstrap: str,
    kafka_topics: Any,
    make_db_target: Any,
    policy: Policy,
    history: list[dict[str, Any]],
) -> None:
    topics = await make_topics(kafka_topics, partitions=3)
    tickets = lines(history)
    slas = sla_records(history, policy)
    half_t, half_s = len(tickets) // 2, len(slas) // 2
    await produce(kafka_bootstrap, topics.tickets, [*tickets[:half_t], b"{junk"])
    await produce(kafka_bootstrap, topics.sla, slas[:half_s])

    live = make_db_target()
    group = f"proj-{uuid.uuid4().hex[:6]}"
    projector = Projector(live, policy, kafka_bootstrap, topics, group_id=group)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    await wait_for(projector, half_t + 1 + half_s)
    stop.set()
    await task
    assert projector.store.counters.invalid == 1
    projector.close()

    # restart: resumes from the DB offsets, nothing is applied twice
    await produce(kafka_bootstrap, topics.tickets, tickets[half_t:])
    await produce(kafka_bootstrap, topics.sla, slas[half_s:])
    projector = Projector(live, policy, kafka_bootstrap, topics, group_id=group)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    await wait_for(projector, len(tickets) + 1 + len(slas))
    stop.set()
    await task
    assert projector.store.counters.duplicates == 0
    assert projector.store.counters.invalid == 0
    live_tables = dump_tables(projector.db)
    projector.close()
    assert len(live_tables["tickets"]) == len({e["ticket_id"] for e in history})
    assert len(live_tables["sla_events"]) == len(slas)

    # rebuild into fresh tables: identical to the live ones
    rebuilt = make_db_target(migrated=False)
    rebuilder = Projector(rebuilt, policy, kafka_bootstrap, topics)
    assert await rebuilder.rebuild() == len(tickets) + 1 + len(slas)
    assert dump_tables(rebuilder.db) == live_tables
    # and rebuilding the live database itself changes nothing either
    rebuilder.close()
    again = Projector(live, policy, kafka_bootstrap, topics)
    await again.rebuild()
    assert dump_tables(again.db) == live_tables
    again.close()
    db = Database(live)
    assert db.query_one("SELECT COUNT(*) FROM projector_offsets") == (6,)
    db.close()


def test_cli_rebuild_equals_live_and_serve_answers(
    kafka_bootstrap: str,
    kafka_topics: Any,
    make_db_target: Any,
    policy: Policy,
    history: list[dict[str, Any]],
    tmp_path: Any,
) -> None:
    """`escalator projections rebuild` reproduces the live tables; `serve` answers HTTP."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import orjson

    from deploy.cli import main as escalator

    topics = Topics(kafka_topics("ticket-events", partitions=2), kafka_topics("sla-events"))
    tickets, slas = lines(history), sla_records(history, policy)
    asyncio.run(produce(kafka_bootstrap, topics.tickets, tickets))
    asyncio.run(produce(kafka_bootstrap, topics.sla, slas))
    live = make_db_target()
    topic_flags = ["--ticket-topic", topics.tickets, "--sla-topic", topics.sla]

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "projections", "serve", "--db", live,
         "--broker", kafka_bootstrap, "--port", str(port), "--group", uuid.uuid4().hex,
         *topic_flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats") as response:
                    stats = orjson.loads(response.read())
                if sum(o["next_offset"] for o in stats["offsets"]) == len(tickets) + len(slas):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert stats.get("tickets") == len({e["ticket_id"] for e in history}), stats
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json") as response:
            assert "/api/tickets" in orjson.loads(response.read())["paths"]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    db = Database(live)
    live_tables = dump_tables(db)
    db.close()

    rebuilt = make_db_target(migrated=False)
    assert escalator(["projections", "rebuild", "--db", rebuilt, "--broker", kafka_bootstrap,
                      *topic_flags]) == 0  # fmt: skip
    db = Database(rebuilt)
    assert dump_tables(db) == live_tables
    db.close()


async def test_two_group_members_share_the_work(
    kafka_bootstrap: str,
    kafka_topics: Any,
    make_db_target: Any,
    policy: Policy,
    history: list[dict[str, Any]],
) -> None:
    """Two projectors in one group split the partitions; the tables equal a rebuild."""
    topics = await make_topics(kafka_topics, partitions=4)
    tickets, slas = lines(history), sla_records(history, policy)
    live = make_db_target()
    group = f"proj-{uuid.uuid4().hex[:6]}"
    members = [Projector(live, policy, kafka_bootstrap, topics, group_id=group) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(m.run(stop)) for m in members]
    for _ in range(300):  # until the group has settled with both members assigned
        if all(m.consumer is not None and m.consumer.assignment() for m in members):
            break
        await asyncio.sleep(0.1)
    # produce while both run, so ticket and SLA events of a ticket race between members
    await asyncio.gather(
        produce(kafka_bootstrap, topics.tickets, tickets),
        produce(kafka_bootstrap, topics.sla, slas),
    )
    await wait_for(members[0], len(tickets) + len(slas))
    stop.set()
    await asyncio.gather(*tasks)
    assert all(m.store.counters.applied > 0 for m in members)  # both did some of the work
    live_tables = dump_tables(members[0].db)
    for m in members:
        m.close()
    rebuilder = Projector(make_db_target(migrated=False), policy, kafka_bootstrap, topics)
    await rebuilder.rebuild()
    assert dump_tables(rebuilder.db) == live_tables
    rebuilder.close()
