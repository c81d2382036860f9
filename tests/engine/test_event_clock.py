"""Event-clock pipeline against the real broker: differential with the replay, dead letters.

One worker serves the module: a 1,000-ticket history with bad records mixed in is published,
then a `clock.tick` at the replay's `until`; the committed output must be exactly the replay's.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.instants import DAY, format_instant, parse_instant
from events.samples import generate_history, with_conversation, with_routing, with_tiers
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from streams.sla.rules import ROUNDED
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

TICKETS = 1000
BAD = [
    b"{this is not json",
    b'{"type": "ticket.teleported", "event_id": "bad-2", "ticket_id": "T-bad-2",'
    b' "occurred_at": "2026-11-23T14:00:00Z"}',
    b'{"type": "ticket.opened", "ticket_id": "T-bad-3", "occurred_at": "2026-11-23T14:00:00Z"}',
    b'{"type": "ticket.responded", "event_id": "bad-4", "ticket_id": "T-never-opened",'
    b' "occurred_at": "2026-11-23T14:00:00Z"}',
    b"[1, 2, 3]",
]


@dataclass
class Run:
    topics: Topics
    worker: Worker
    reference: list[dict[str, Any]]
    output: list[dict[str, Any]]
    broker: str
    open_tickets: int
    tickets_in_state: int
    tickets_with_timers: int


@pytest.fixture(scope="module")
def event_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("event-clock")
    history = generate_history(TICKETS, seed=7)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * DAY
    lines: list[bytes] = [orjson.dumps(item) for item in history]
    # A few tickets still open at the end, so open and in-state counts differ.
    last = history[-1]["occurred_at"]
    lines += [
        orjson.dumps(
            {
                "type": "ticket.opened",
                "event_id": f"still-open-{n}",
                "ticket_id": f"T-still-open-{n}",
                "severity": 3,
                "occurred_at": last,
            }
        )
        for n in range(3)
    ]
    mixed = list(lines)
    for index, bad in enumerate(BAD):  # spread the bad records through the stream
        mixed.insert((index + 1) * len(lines) // (len(BAD) + 1), bad)
    replayer = Replayer(load_policy())
    reference = list(replayer.run(mixed, until))
    states = replayer.tickets.values()
    counts = (
        sum(s.status not in ("resolved", "closed") for s in states),
        len(states),
        len(replayer.index),
    )
    topics = new_topics("evclock", partitions=4)
    worker = Worker(kafka_bootstrap, topics, tmp / "worker.log", clock="event").start()
    try:
        worker.wait_ready(partitions=4)
        path = write_jsonl(tmp / "history.jsonl", mixed)
        done = cli(
            "publish",
            str(path),
            "--tick",
            format_instant(until),
            *topics.flags(),
            broker=kafka_bootstrap,
        )
        assert done.returncode == 0, done.stderr.decode()
        records = read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=120)
        yield Run(topics, worker, reference, sla_events(records), kafka_bootstrap, *counts)
    finally:
        worker.stop()


def test_output_equals_the_replay(event_run: Run) -> None:
    ref, got = event_run.reference, event_run.output
    assert len(ref) > TICKETS
    assert len(got) == len(ref), event_run.worker.log_tail()
    assert {e["event_id"] for e in got} == {e["event_id"] for e in ref}
    assert per_ticket(got) == per_ticket(ref)
    by_id = {e["event_id"]: e for e in ref}
    assert all(e == by_id[e["event_id"]] for e in got)  # same content, not only same ids


def test_rejected_records_go_to_the_dead_letter_topic(event_run: Run) -> None:
    records = read_topic(
        event_run.broker, event_run.topics.dlq, expect=len(BAD), timeout=30, settle=1.0
    )
    assert sorted(r.value for r in records) == sorted(BAD)  # the original bytes
    reasons = {}
    for record in records:
        headers = dict(record.headers)
        assert headers["escalator.source.topic"].decode() == event_run.topics.input
        assert int(headers["escalator.source.offset"]) >= 0
        assert int(headers["escalator.source.partition"]) == record.partition
        reasons[record.value] = headers["escalator.reason"].decode()
    assert reasons[BAD[0]].startswith("malformed JSON")
    assert "unknown event type" in reasons[BAD[1]]
    assert "field 'event_id'" in reasons[BAD[2]] and "field 'severity'" in reasons[BAD[2]]
    assert "unknown ticket" in reasons[BAD[3]]
    assert "expected a JSON object" in reasons[BAD[4]]


def test_worker_reports_metrics_and_health(event_run: Run) -> None:
    text = event_run.worker.metrics()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['escalator_events_in_total{kind="event"}'] >= TICKETS
    assert values["escalator_dead_letters_total"] == len(BAD)
    out = sum(v for k, v in values.items() if k.startswith("escalator_sla_events_out_total"))
    assert out == len(event_run.reference)
    # Open tickets only (neither resolved nor closed); all tickets with state separately.
    assert 0 < event_run.open_tickets < event_run.tickets_in_state
    assert values["escalator_open_tickets"] == event_run.open_tickets
    assert values["escalator_tickets_in_state"] == event_run.tickets_in_state
    assert values["escalator_tickets_with_timers"] == event_run.tickets_with_timers
    assert "escalator_timer_lateness_seconds_count" in values
    assert (
        "# HELP escalator_consumer_lag_records Input records not yet processed, in records" in text
    )
    assert any(k.startswith("escalator_consumer_lag_records{partition=") for k in values)
    build = next(k for k in values if k.startswith("escalator_build_info{"))
    assert f'aiokafka="{version("aiokafka")}"' in build and values[build] == 1
    assert "faust" not in build
    assert not [k for k in values if "_created" in k]
    health = event_run.worker.health()
    assert health is not None and health["status"] == "ok" and health["partitions"] == [0, 1, 2, 3]
    assert health["open_tickets"] == event_run.open_tickets


def test_tail_prints_sla_events(event_run: Run, tmp_path: Path) -> None:
    done = cli(
        "tail",
        "--from-beginning",
        "--max",
        "5",
        "--timeout",
        "30",
        *event_run.topics.flags(),
        broker=event_run.broker,
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.splitlines()
    assert len(lines) == 5
    ids = {e["event_id"] for e in event_run.reference}
    assert all(orjson.loads(line)["event_id"] in ids for line in lines)


VENDOR_POLICY = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "vendor-policy.toml"


def test_several_policies_and_calendars_give_the_replays_events(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The vendor file (three policies on a 24x7, a Toronto and a Warsaw calendar) and a
    history whose tickets are routed to each and moved between them by `ticket.updated`, with
    customers writing back (next_response rounds), periodic updates, warnings by lead time and
    repeating escalations (issue #8 section 3)."""
    history = with_conversation(with_routing(generate_history(300, seed=5), seed=5), seed=5)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * DAY
    lines = [orjson.dumps(item) for item in history]
    reference = list(Replayer(load_policy(VENDOR_POLICY)).run(lines, until))
    assert {e["policy"]["name"] for e in reference} == {"premium", "emea", "standard"}
    assert {e["policy"]["calendar"] for e in reference} >= {"always", "warsaw", "standard"}
    kinds = {(e["type"], e["metric"]) for e in reference if "round" in e}
    assert kinds >= {(t, m) for t in ("sla.met", "sla.breached") for m in ROUNDED}
    assert any("repeat" in e for e in reference) and any("before_seconds" in e for e in reference)
    topics = new_topics("policies", partitions=3)
    worker = Worker(
        kafka_bootstrap, topics, tmp_path / "worker.log", clock="event", policy=VENDOR_POLICY
    ).start()
    try:
        worker.wait_ready(partitions=3)
        path = write_jsonl(tmp_path / "history.jsonl", lines)
        done = cli(
            "publish", str(path), "--tick", format_instant(until), *topics.flags(),
            broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        records = read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=120)
    finally:
        worker.stop()
    got = sla_events(records)
    assert len(got) == len(reference), worker.log_tail()
    assert per_ticket(got) == per_ticket(reference)


OLA_POLICY = VENDOR_POLICY.with_name("vendor-olas.toml")


def test_a_history_with_olas_gives_the_replays_events(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The OLA example (issue #23: the customer SLA, an OLA per tier, one around the clock)
    on a history moved through the tiers: the worker's output is the replay's, event for
    event, ownership cycles, `sla.stopped` and attribution included."""
    history = with_tiers(generate_history(300, seed=23), seed=23)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * DAY
    lines = [orjson.dumps(item) for item in history]
    reference = list(Replayer(load_policy(OLA_POLICY)).run(lines, until))
    olas = {e["agreement"]["name"] for e in reference if e["agreement"]["kind"] == "ola"}
    assert olas == {"l1", "l2", "l3", "handoff"}
    kinds = {e["type"] for e in reference if e["metric"] == "group_ownership"}
    assert kinds >= {"sla.met", "sla.breached", "sla.stopped", "sla.warning"}
    assert any(len(e.get("attribution") or ()) > 1 for e in reference)
    topics = new_topics("olas", partitions=3)
    worker = Worker(
        kafka_bootstrap, topics, tmp_path / "worker.log", clock="event", policy=OLA_POLICY
    ).start()
    try:
        worker.wait_ready(partitions=3)
        path = write_jsonl(tmp_path / "history.jsonl", lines)
        done = cli(
            "publish", str(path), "--tick", format_instant(until), *topics.flags(),
            broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        records = read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=120)
    finally:
        worker.stop()
    got = sla_events(records)
    assert len(got) == len(reference), worker.log_tail()
    assert per_ticket(got) == per_ticket(reference)
    by_id = {e["event_id"]: e for e in reference}
    assert all(e == by_id[e["event_id"]] for e in got)
