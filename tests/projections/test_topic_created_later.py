"""Issue #19 item 5: `projections serve` started before the SLA topic exists.

It projected no SLA events for about 5 minutes (aiokafka's default metadata age) while /ready
said `caught_up`. Now /ready answers 503 `topic_missing` naming the topic while it is missing,
and the topic's events are projected within seconds of its creation. Real broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from deploy.kafka_local import unique_name
from projections.api import make_app
from projections.projector import Projector, Topics
from streams.sla.rules import Policy
from tests.projections.helpers import api_client, lines, produce, sla_records, wait_for

pytestmark = pytest.mark.kafka


async def _ready(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/ready")
    return response.status_code, response.json()


async def test_a_topic_created_after_the_start_is_projected_promptly(
    kafka_bootstrap: str,
    kafka_topics: Any,
    db_target: str,
    policy: Policy,
    history: list[dict[str, Any]],
) -> None:
    tickets_topic = await kafka_topics.create("ticket-events", partitions=1)
    sla_topic = unique_name("late-sla-events")
    topics = Topics(tickets=tickets_topic, sla=sla_topic)
    tickets, slas = lines(history[:20]), sla_records(history[:20], policy)
    assert slas
    await produce(kafka_bootstrap, tickets_topic, tickets)

    projector = Projector(db_target, policy, kafka_bootstrap, topics, group_id=uuid.uuid4().hex)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    app = make_app(db_target, policy, lag=projector.lag, missing_topics=projector.missing_topics)
    try:
        async with api_client(app) as client:
            await wait_for(projector, len(tickets))
            await asyncio.sleep(1)  # a few polls with the topic still missing
            status, body = await _ready(client)
            assert (status, body["projector"], body["missing_topics"]) == (
                503,
                "topic_missing",
                [sla_topic],
            ), body

            admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(sla_topic, 1, 1)])
            finally:
                await admin.close()
            kafka_topics.created.append(sla_topic)  # deleted after the test
            created = time.monotonic()
            await produce(kafka_bootstrap, sla_topic, slas)
            await wait_for(projector, len(tickets) + len(slas), timeout=60)
            took = time.monotonic() - created
            assert took < 30, f"SLA events projected {took:.1f} s after the topic was created"
            for _ in range(100):
                status, body = await _ready(client)
                if status == 200:
                    break
                await asyncio.sleep(0.2)
            assert (status, body["projector"], body["missing_topics"]) == (200, "caught_up", [])
    finally:
        stop.set()
        await task
        projector.close()
