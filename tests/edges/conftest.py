"""Fixtures shared by the notifier's tests: a recording HTTP receiver, an SMTP sink and the
SLA, ticket and dead-letter topics the notifier reads and writes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from deploy.webhook_receiver import Recorder
from tests.edges.receivers import SmtpSink


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = await Recorder().start()
    yield server
    await server.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
async def topics(kafka_topics: Any) -> tuple[str, str, str]:
    """(SLA topic, ticket topic, dead-letter prefix), each topic with three partitions."""
    sla_topic = await kafka_topics.create("sla", 3)
    ticket_topic = await kafka_topics.create("tickets", 3)
    return sla_topic, ticket_topic, sla_topic + "-dlq."
