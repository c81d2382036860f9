"""The projector against a real Kafka broker: live projection, restart from DB offsets, rebuild."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from projections.db import Database
from projections.projector import Projector
from projections.store import dump_tables
from streams.sla.policy import Policy
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
