"""Crashes and partition moves: the committed output stays exactly the replay's.

CRASH: a worker is SIGKILLed while it works through a history, then restarted; every expected
SLA event must be in the read_committed output exactly once (Kafka transactions).
SCALE-OUT: two workers split the partitions; one stops; its tickets move to the other, which
recovers their state from the changelog and re-arms their timers.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.instants import DAY, format_instant, parse_instant
from events.samples import generate_history
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from tests.engine.helpers import (
    Worker,
    cli,
    new_topics,
    per_ticket,
    read_topic,
    sla_events,
    write_jsonl,
)

pytestmark = pytest.mark.kafka


def _history(tickets: int, seed: int) -> tuple[list[bytes], int, list[dict[str, Any]]]:
    history = generate_history(tickets, seed=seed)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * DAY
    lines = [orjson.dumps(item) for item in history]
    return lines, until, list(Replayer(load_policy()).run(lines, until))


def _assert_exactly(got: list[dict[str, Any]], ref: list[dict[str, Any]], log: str) -> None:
    counts = Counter(e["event_id"] for e in got)
    doubled = {k: n for k, n in counts.items() if n > 1}
    assert not doubled, f"{len(doubled)} SLA events emitted more than once\n{log}"
    missing = {e["event_id"] for e in ref} - set(counts)
    assert not missing, f"{len(missing)} SLA events lost\n{log}"
    assert len(got) == len(ref)
    assert per_ticket(got) == per_ticket(ref)


def test_sigkill_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    lines, until, reference = _history(3000, seed=21)
    topics = new_topics("crash", partitions=4)
    first = Worker(kafka_bootstrap, topics, tmp_path / "worker-1.log")
    workers.append(first.start())
    first.wait_ready(partitions=4)
    done = cli(
        "publish",
        str(write_jsonl(tmp_path / "h.jsonl", lines)),
        *topics.flags(),
        broker=kafka_bootstrap,
    )
    assert done.returncode == 0, done.stderr.decode()
    # Kill once a fifth of the output is committed: the worker is then mid-stream.
    partial = read_topic(
        kafka_bootstrap, topics.output, expect=len(reference) // 5, timeout=60, settle=0
    )
    first.kill()
    assert len(reference) // 5 <= len(partial) < len(reference), "not killed mid-stream"

    second = Worker(kafka_bootstrap, topics, tmp_path / "worker-2.log")
    workers.append(second.start())
    second.wait_ready(partitions=4)
    done = cli(
        "publish", "-", "--tick", format_instant(until), *topics.flags(), broker=kafka_bootstrap
    )
    assert done.returncode == 0, done.stderr.decode()
    records = read_topic(
        kafka_bootstrap, topics.output, expect=len(reference), timeout=120, settle=3
    )
    _assert_exactly(sla_events(records), reference, second.log_tail())
    assert read_topic(kafka_bootstrap, topics.dlq, timeout=2) == []


def test_partitions_move_when_a_worker_leaves(
    kafka_bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    lines, until, reference = _history(1500, seed=33)
    half = len(lines) // 2
    topics = new_topics("scale", partitions=4)
    a = Worker(kafka_bootstrap, topics, tmp_path / "a.log")
    workers.append(a.start())
    a.wait_ready(partitions=4)
    b = Worker(kafka_bootstrap, topics, tmp_path / "b.log")
    workers.append(b.start())
    owned_b = b.wait_ready(partitions=2)["partitions"]
    owned_a = a.wait_ready(partitions=2)["partitions"]
    assert sorted(owned_a + owned_b) == [0, 1, 2, 3]

    done = cli(
        "publish",
        str(write_jsonl(tmp_path / "h1.jsonl", lines[:half])),
        *topics.flags(),
        broker=kafka_bootstrap,
    )
    assert done.returncode == 0, done.stderr.decode()
    # Both workers have processed the first half once their tickets show up in the output.
    first_half = read_topic(
        kafka_bootstrap, topics.output, expect=len(reference) // 4, timeout=60, settle=1
    )
    assert {e["ticket_id"] for e in sla_events(first_half)}
    assert b.stop() == 0, b.log_tail()
    assert a.wait_ready(partitions=4)["open_tickets"] > 0

    done = cli(
        "publish",
        str(write_jsonl(tmp_path / "h2.jsonl", lines[half:])),
        "--tick",
        format_instant(until),
        *topics.flags(),
        broker=kafka_bootstrap,
    )
    assert done.returncode == 0, done.stderr.decode()
    records = read_topic(
        kafka_bootstrap, topics.output, expect=len(reference), timeout=120, settle=3
    )
    _assert_exactly(sla_events(records), reference, a.log_tail())
    assert read_topic(kafka_bootstrap, topics.dlq, timeout=2) == []
    assert "recovered" in b.log_path.read_text()
