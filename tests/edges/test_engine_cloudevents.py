"""Issue #11 §3 on the real broker: the engine's SLA records carry CloudEvents headers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from events.cloudevents import read_headers, source_of
from tests.engine.helpers import Worker, cli, new_topics, read_topic, write_jsonl

pytestmark = pytest.mark.kafka


def test_sla_records_have_binary_mode_cloudevents_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = new_topics("ce", 2)
    worker = Worker(kafka_bootstrap, topics, tmp_path / "worker.log").start()
    try:
        worker.wait_ready(partitions=2)
        history = [
            {"event_id": "o1", "type": "ticket.opened", "ticket_id": "T-ce", "severity": 1,
             "customer_id": "acme", "occurred_at": "2026-11-30T09:00:00-05:00"},
            {"event_id": "a1", "type": "ticket.assigned", "ticket_id": "T-ce", "group": "tier1",
             "assignee": "ana", "occurred_at": "2026-11-30T09:05:00-05:00"},
        ]  # fmt: skip
        source = write_jsonl(tmp_path / "in.jsonl", history)
        done = cli(
            "publish", str(source), *topics.flags(), "--tick", "2026-11-30T10:00:00-05:00",
            broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        records = read_topic(kafka_bootstrap, topics.output, expect=2, timeout=60, settle=1.0)
    finally:
        worker.stop()
    assert len(records) == 2  # escalation level 1 and the first-response breach, at 10:00
    for record in records:
        body = orjson.loads(record.value)
        assert (body["customer_id"], body["group"], body["assignee"]) == ("acme", "tier1", "ana")
        event = read_headers(list(record.headers), record.value)
        assert event.get_id() == body["event_id"]
        assert event.get_type() == "escalator." + body["type"]
        assert event.get_subject() == "T-ce"
        assert event.get_source() == source_of(topics.app_id)
        assert dict(record.headers)["content-type"] == b"application/json"
        assert dict(record.headers)["ce_time"] == body["at"].encode()
