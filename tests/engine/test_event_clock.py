"""Event-clock pipeline against the real broker: differential with the replay, dead letters.

One worker serves the module: a 1,000-ticket history with bad records mixed in is published,
then a `clock.tick` at the replay's `until`; the committed output must be exactly the replay's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.instants import DAY, SECOND, format_instant, parse_instant
from events.samples import generate_history, with_conversation, with_routing, with_tiers
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from streams.sla.rules import ROUNDED
from tests.clocks.policies import CALENDARS
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
    _worker_gives(kafka_bootstrap, tmp_path, "olas", OLA_POLICY, lines, until, reference)


def _worker_gives(
    kafka_bootstrap: str,
    tmp_path: Path,
    name: str,
    policy: Path,
    lines: list[bytes],
    until: int,
    reference: list[dict[str, Any]],
) -> None:
    """An event-clock worker on 3 partitions, given `lines` and a tick at `until`, emits
    `reference` (the replay's events): the same events per ticket, each in full content."""
    topics = new_topics(name, partitions=3)
    worker = Worker(
        kafka_bootstrap, topics, tmp_path / "worker.log", clock="event", policy=policy
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


CLOCKS_POLICY = (
    CALENDARS
    + """
[group_calendars]
emea = "warsaw"
amer = "toronto"

[stop_clock]
reasons = ["third_party", "customer_hold", "outage"]
metrics = ["resolution"]
max = "2h"

[breach_reasons]
codes = ["customer_unreachable", "outage", "agent_error"]
exempt = ["customer_unreachable", "outage"]

[severity.1.first_response]
target = "1h"
clock = "elapsed"

[severity.1.resolution]
target = "4h"
clock = "elapsed"
pausable = true

[severity.2.first_response]
target = "4h"
calendar = "group"

[severity.2.resolution]
target = "2bd"
calendar = "group"
pausable = true

[severity.3.first_response]
target = { next_business_day_at = "16:00" }
calendar = "warsaw"

[severity.3.resolution]
target = { from_attribute = "agreed_due_at", otherwise = "8h" }
clock = "elapsed"
warn_at = [0.5]
"""
)
"""Issue 24's features in one file: the group's calendar (severity 2), a governed stop with
its longest stop and breach reasons (severity 1, and every severity's resolution), deadline
targets (severity 3: the next business day at 16:00, the ticket's agreed date)."""


def _clock_history(tickets: int, seed: int) -> list[dict[str, Any]]:
    """Tickets moved between groups, stopped and started (some stops overlong, some with a
    reason the policy does not allow), given agreed dates and breach reasons, in time order."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    start = parse_instant("2026-12-01T00:00:00Z")
    for number in range(tickets):
        ticket = f"C{number}"
        at = start + rng.randrange(0, 20 * 86400) * SECOND
        severity = rng.choice([1, 2, 3])
        opened: dict[str, Any] = {"severity": severity, "group": rng.choice(["emea", "amer"])}
        if severity == 3 and rng.random() < 0.6:
            agreed = at + rng.randrange(-3600, 3 * 86400) * SECOND
            opened["attributes"] = {"agreed_due_at": format_instant(agreed)}
        ticket_events = [("opened", opened)]
        for _ in range(rng.randrange(1, 10)):
            kind = rng.choice(
                ["assigned", "paused", "resumed", "sla_stopped", "sla_started", "responded",
                 "updated", "breach_reason", "resolved", "reopened"]
            )  # fmt: skip
            fields: dict[str, Any] = {}
            if kind == "assigned":
                fields["group"] = rng.choice(["emea", "amer", "support"])
            elif kind == "sla_stopped":
                fields = {"reason": rng.choice(["third_party", "outage", "lunch"]), "actor": "a1"}
            elif kind == "sla_started":
                fields["actor"] = "a1"
            elif kind == "updated":
                agreed = at + rng.randrange(0, 2 * 86400) * SECOND
                fields["attributes"] = {"agreed_due_at": format_instant(agreed)}
            elif kind == "breach_reason":
                fields = {
                    "metric": rng.choice(["first_response", "resolution"]),
                    "reason": rng.choice(["outage", "agent_error", "customer_unreachable"]),
                    "actor": "m1",
                }
            ticket_events.append((kind, fields))
        for index, (kind, fields) in enumerate(ticket_events):
            if index:
                at += rng.randrange(60, 4 * 3600) * SECOND
            events.append(
                {
                    "event_id": f"{ticket}-{index}",
                    "ticket_id": ticket,
                    "type": f"ticket.{kind}",
                    "occurred_at": format_instant(at),
                    **fields,
                }
            )
    events.sort(key=lambda e: (e["occurred_at"], e["ticket_id"]))
    return events


def test_a_history_with_ticket_clocks_gives_the_replays_events(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Issue 24 on the engine: group calendars, deadline targets, manual stops (overlong ones
    ended by their limit) and breach reasons give the replay's events, event for event, in
    full content."""
    policy_file = tmp_path / "clocks.toml"
    policy_file.write_text(CLOCKS_POLICY)
    history = _clock_history(300, seed=24)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * DAY
    lines = [orjson.dumps(item) for item in history]
    skipped: list[tuple[int, str]] = []
    reference = list(
        Replayer(load_policy(policy_file)).run(lines, until, lambda n, r: skipped.append((n, r)))
    )
    kinds = {e["type"] for e in reference}
    assert kinds >= {"sla.stop_ended", "sla.breach_reason", "sla.breached", "sla.met"}
    calendars = {e["policy"].get("calendar") for e in reference if e["severity"] == 2}
    assert calendars >= {"warsaw", "toronto"}
    assert any("is not a stop reason" in reason for _, reason in skipped), skipped[:5]
    _worker_gives(kafka_bootstrap, tmp_path, "clocks", policy_file, lines, until, reference)
