"""Policy rollouts through the real broker (issue #22): workers follow the policy topic.

Versions (as in tests/core/test_policy_rollout.py): v1 Sev2 first response 60m, Sev3 2h;
v2 Sev2 20m and no severity 3; a 24x7 UTC calendar, tickets opened from 10:00 (UTC).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from deploy.kafka_local import unique_name
from events.instants import MINUTE, SECOND, format_instant, parse_instant
from streams.sla.policy import parse_policy
from streams.sla.replay import Replayer
from streams.sla.versions import PolicyBook, Rollout
from tests.engine.helpers import (
    Topics,
    Worker,
    cli,
    new_topics,
    per_ticket,
    read_topic,
    sla_events,
    write_jsonl,
)

pytestmark = pytest.mark.kafka

V1 = """name = "rollout-test"
version = "v1"
[calendar]
timezone = "UTC"
hours = "24x7"
[severity.2]
first_response = { target = "60m" }
resolution = { target = "4h" }
[severity.3]
first_response = { target = "2h" }
"""
V2 = """name = "rollout-test"
version = "v2"
[calendar]
timezone = "UTC"
hours = "24x7"
[severity.2]
first_response = { target = "20m" }
resolution = { target = "4h" }
"""
TEN = parse_instant("2026-12-07T10:00:00Z")


def _files(tmp_path: Path) -> tuple[Path, Path]:
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text(V1)
    v2.write_text(V2)
    return v1, v2


def _worker(broker: str, topics: Topics, log: Path, v1: Path, policy_topic: str) -> Worker:
    return Worker(
        broker,
        topics,
        log,
        policy=v1,
        extra=["--max-delay", "0", "--policy-topic", policy_topic],
    )


def _publish_policy(broker: str, file: Path, mode: str, at: str, topic: str) -> None:
    done = cli(
        "policy", "publish", str(file), "--mode", mode, "--at", at, "--policy-topic", topic,
        broker=broker,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


def _publish_events(
    broker: str, topics: Topics, file: Path, events: list[dict[str, Any]], tick: str
) -> None:
    """`escalator publish` of `events` (written to `file`), then a clock tick at `tick`."""
    done = cli("publish", str(write_jsonl(file, events)), "--tick", tick, *topics.flags(),
               broker=broker)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


def _wait_version(worker: Worker, version: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = worker.health() or {}
        if version in [v["version"] for v in health.get("policy_versions", [])]:
            return
        time.sleep(0.2)
    pytest.fail(f"worker never read version {version}:\n{worker.log_tail()}")


def _opened(ticket: str, at: int, severity: int) -> dict[str, Any]:
    return {
        "event_id": f"{ticket}-open",
        "ticket_id": ticket,
        "type": "ticket.opened",
        "occurred_at": format_instant(at),
        "severity": severity,
    }


def test_two_workers_switch_at_the_same_watermark(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """Both workers of one app id run v1, read v2 (open-tickets at 10:10) while running:
    every Sev2 ticket opened at 10:00 breaches at 10:20 (due 10:20, v2) on every partition,
    the Sev3 tickets stay on v1 (breach at 12:00, no dead letter), and each of the four
    partitions writes one policy.activated at 10:10."""
    v1, v2 = _files(tmp_path)
    topics = new_topics("rollout2w", partitions=4)
    policy_topic = unique_name("rollout2w-policies")
    for n in (1, 2):
        worker = _worker(kafka_bootstrap, topics, tmp_path / f"w{n}.log", v1, policy_topic)
        workers.append(worker.start())
    for worker in workers:
        worker.wait_ready(partitions=2, timeout=90)
    sev2 = [f"S2-{i}" for i in range(12)]
    sev3 = [f"S3-{i}" for i in range(4)]
    history = [_opened(t, TEN, 2) for t in sev2] + [_opened(t, TEN, 3) for t in sev3]
    _publish_events(
        kafka_bootstrap, topics, tmp_path / "opened.jsonl", history, "2026-12-07T10:05:00Z"
    )
    _publish_policy(kafka_bootstrap, v2, "open-tickets", "2026-12-07T10:10:00Z", policy_topic)
    for worker in workers:
        _wait_version(worker, "v2")
    done = cli(
        "publish", "-", "--tick", "2026-12-07T13:00:00Z", *topics.flags(), broker=kafka_bootstrap
    )
    assert done.returncode == 0, done.stderr.decode()
    expected = len(sev2) + len(sev3) + 4  # a first-response breach each, 4 activations
    records = read_topic(kafka_bootstrap, topics.output, expect=expected, timeout=90, settle=3)
    events = sla_events(records)
    activated = [e for e in events if e["type"] == "policy.activated"]
    assert sorted(e["partition"] for e in activated) == [0, 1, 2, 3]
    assert {(e["version"], e["at"], e["mode"]) for e in activated} == {
        ("v2", "2026-12-07T10:10:00Z", "open-tickets")
    }
    assert sum(e["tickets_moved"] for e in activated) == len(sev2)
    assert sum(e["tickets_kept"] for e in activated) == len(sev3)
    breaches = {
        e["ticket_id"]: (e["due_at"], e["at"], e["policy"]["version"])
        for e in events
        if e["type"] == "sla.breached" and e["metric"] == "first_response"
    }
    assert breaches == {
        **{t: ("2026-12-07T10:20:00Z", "2026-12-07T10:20:00Z", "v2") for t in sev2},
        **{t: ("2026-12-07T12:00:00Z", "2026-12-07T12:00:00Z", "v1") for t in sev3},
    }
    counts = Counter(e["event_id"] for e in events)
    assert max(counts.values()) == 1
    assert read_topic(kafka_bootstrap, topics.dlq, timeout=2) == []
    kept = 0.0
    for worker in workers:
        for line in worker.metrics().splitlines():
            if line.startswith('escalator_policy_kept_tickets_total{version="v2"}'):
                kept += float(line.split()[-1])
    assert kept == len(sev3)


def _history(tickets: int) -> list[bytes]:
    """Time-ordered: ticket i opened at 10:00 + i x 0.3 s (Sev3 every third), answered 25m
    later when i is even."""
    step = SECOND * 3 // 10
    items: list[tuple[int, dict[str, Any]]] = []
    for i in range(tickets):
        ticket, at = f"K{i}", TEN + i * step
        items.append((at, _opened(ticket, at, 3 if i % 3 == 0 else 2)))
        if i % 2 == 0:
            reply = at + 25 * MINUTE
            body = {
                "event_id": f"{ticket}-reply",
                "ticket_id": ticket,
                "type": "ticket.responded",
                "occurred_at": format_instant(reply),
            }
            items.append((reply, body))
    items.sort(key=lambda item: item[0])
    return [orjson.dumps(body) for _, body in items]


async def _steadily(broker: str, topic: str, lines: list[bytes]) -> None:
    """Produce `lines` keyed by ticket id, 150 every 0.1 s."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for start in range(0, len(lines), 150):
            for line in lines[start : start + 150]:
                await producer.send(topic, line, key=orjson.loads(line)["ticket_id"].encode())
            await producer.flush()
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


def _rate(worker: Worker) -> float:
    for line in worker.metrics().splitlines():
        if line.startswith('escalator_events_in_total{kind="event"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_rollout_across_a_sigkill_is_applied_exactly_once(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """v2 (open-tickets at 10:15) is published to a running worker, which is SIGKILLed while
    consuming the history across the instant; its successor reads the policy topic before it
    processes: every SLA event of the replay under both versions exactly once, and one
    policy.activated per partition whose counts are the replay's tickets moved and kept."""
    v1, v2 = _files(tmp_path)
    topics = new_topics("rolloutkill", partitions=4)
    policy_topic = unique_name("rolloutkill-policies")
    lines = _history(6000)
    until = parse_instant("2026-12-07T16:00:00Z")
    book = PolicyBook(parse_policy(V1, "v1.toml"))
    new = parse_policy(V2, "v2.toml")
    instant = parse_instant("2026-12-07T10:15:00Z")
    assert book.add(Rollout("v2", new.digest, instant, "open-tickets"), new) is None
    replayer = Replayer(book.newest)
    reference = list(replayer.run(lines, until))
    opened_before = [i for i in range(6000) if TEN + i * SECOND * 3 // 10 < instant]
    moved = sum(1 for i in opened_before if i % 3 != 0)
    kept = len(opened_before) - moved

    first = _worker(kafka_bootstrap, topics, tmp_path / "w1.log", v1, policy_topic)
    workers.append(first.start())
    first.wait_ready(partitions=4, timeout=90)
    _publish_policy(kafka_bootstrap, v2, "open-tickets", "2026-12-07T10:15:00Z", policy_topic)
    _wait_version(first, "v2")
    publisher = threading.Thread(
        target=asyncio.run, args=(_steadily(kafka_bootstrap, topics.input, lines),)
    )
    publisher.start()  # a steady stream (about 1,500 records a second), to kill it consuming
    try:
        partial = read_topic(
            kafka_bootstrap, topics.output, expect=len(reference) // 4, timeout=120, settle=0
        )
        before = _rate(first)
        time.sleep(0.3)
        consuming = _rate(first) > before
        first.kill()
        assert consuming, "the kill did not land on a consuming worker"
        assert len(partial) < len(reference), "not killed mid-stream"
    finally:
        publisher.join()
    second = _worker(kafka_bootstrap, topics, tmp_path / "w2.log", v1, policy_topic)
    workers.append(second.start())
    second.wait_ready(partitions=4, timeout=90)
    done = cli(
        "publish", "-", "--tick", format_instant(until), *topics.flags(), broker=kafka_bootstrap
    )
    assert done.returncode == 0, done.stderr.decode()
    records = read_topic(
        kafka_bootstrap, topics.output, expect=len(reference) + 4, timeout=180, settle=3
    )
    events = sla_events(records)
    activated = [e for e in events if e["type"] == "policy.activated"]
    got = [e for e in events if e["type"] != "policy.activated"]
    counts = Counter(e["event_id"] for e in events)
    doubled = {k: n for k, n in counts.items() if n > 1}
    assert not doubled, f"{len(doubled)} events emitted more than once\n{second.log_tail()}"
    assert len(got) == len(reference)
    assert per_ticket(got) == per_ticket(reference)
    assert sorted(e["partition"] for e in activated) == [0, 1, 2, 3]
    assert sum(e["tickets_moved"] for e in activated) == moved
    assert sum(e["tickets_kept"] for e in activated) == kept
    # Sev3 tickets opened from 10:15 on are refused by v2 (and their replies expire unknown),
    # as in the replay; none for a fault.
    dead = read_topic(kafka_bootstrap, topics.dlq, expect=replayer.counts.rejected, settle=2)
    reasons = [dict(r.headers)["escalator.reason"].decode() for r in dead]
    assert len(dead) == replayer.counts.rejected == 1500
    assert not [r for r in reasons if r.startswith("internal error")]
    assert sum(r.startswith("field 'severity': 3 is not defined") for r in reasons) == 1000


def test_a_restart_with_an_edited_file_keeps_open_tickets_on_their_version(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """The issue's operator: v1 running, its file replaced by v2 (no severity 3) and the worker
    restarted. The first run registered v1 on the app's policy topic (<app-id>-policies); the
    restart adds v2 as a new-tickets rollout at its start: the open Sev3 tickets are never
    dead-lettered and breach by v1 at 12:00, the Sev2 ones at v1's 11:00."""
    v1, v2 = _files(tmp_path)
    topics = new_topics("rolloutfile", partitions=2)
    first = Worker(kafka_bootstrap, topics, tmp_path / "w1.log", policy=v1,
                   extra=["--max-delay", "0"])  # fmt: skip
    workers.append(first.start())
    first.wait_ready(partitions=2, timeout=90)
    history = [_opened(f"F2-{i}", TEN, 2) for i in range(3)]
    history += [_opened(f"F3-{i}", TEN, 3) for i in range(3)]
    _publish_events(
        kafka_bootstrap, topics, tmp_path / "opened.jsonl", history, "2026-12-07T10:05:00Z"
    )
    assert first.stop() == 0
    second = Worker(kafka_bootstrap, topics, tmp_path / "w2.log", policy=v2,
                    extra=["--max-delay", "0"])  # fmt: skip
    workers.append(second.start())
    second.wait_ready(partitions=2, timeout=90)
    reply = {
        "event_id": "F3-0-assigned",
        "ticket_id": "F3-0",
        "type": "ticket.assigned",
        "occurred_at": "2026-12-07T10:30:00Z",
        "group": "tier-2",
    }
    _publish_events(
        kafka_bootstrap, topics, tmp_path / "later.jsonl", [reply], "2026-12-07T13:00:00Z"
    )
    records = read_topic(kafka_bootstrap, topics.output, expect=6, timeout=90, settle=3)
    breaches = sorted(
        (e["ticket_id"], e["at"], e["policy"]["version"])
        for e in sla_events(records)
        if e["type"] == "sla.breached"
    )
    assert breaches == sorted(
        [(f"F2-{i}", "2026-12-07T11:00:00Z", "v1") for i in range(3)]
        + [(f"F3-{i}", "2026-12-07T12:00:00Z", "v1") for i in range(3)]
    )
    assert read_topic(kafka_bootstrap, topics.dlq, timeout=2) == []
    assert "timer_faults_total 0.0" in second.metrics()
    versions = [(v["version"], v["mode"]) for v in second.health()["policy_versions"]]
    assert versions == [("v1", "new-tickets"), ("v2", "new-tickets")]
