"""The per-partition shell logic without Kafka: it must reproduce the embedded replay."""

from __future__ import annotations

import ast
from typing import Any

import orjson
import pytest

from events.instants import SECOND, format_instant, parse_instant
from events.samples import generate_history
from streams.engine.processor import PartitionEngine
from streams.sla import state_codec
from streams.sla.policy import load_policy, parse_policy
from streams.sla.replay import Replayer
from tests.engine.helpers import REPO, per_ticket


def _partition(ticket_id: str, partitions: int) -> int:
    return hash(ticket_id) % partitions


def _run_partitions(
    history: list[dict[str, Any]],
    partitions: int,
    until: int,
    extra: list[bytes] = (),  # type: ignore[assignment]
    batch: int = 7,
    storm_limit: int = 0,
) -> tuple[list[dict[str, Any]], list[str], dict[int, dict[bytes, bytes]]]:
    """Feed each partition its records in batches of `batch`; returns the output, the
    dead-letter reasons and each partition's changelog (compacted: key -> last value). With
    a `storm_limit`, what a sweep cut short owes is fired by timer calls (`fire_due`) after
    each batch, as the worker does, until nothing is pending."""
    policy = load_policy()
    engines = {
        p: PartitionEngine(p, policy, "event", storm_limit=storm_limit) for p in range(partitions)
    }
    changelogs: dict[int, dict[bytes, bytes]] = {p: {} for p in range(partitions)}
    inputs: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for item in history:
        inputs[_partition(item["ticket_id"], partitions)].append(orjson.dumps(item))
    inputs[0].extend(extra)
    tick = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(until)})
    out: list[dict[str, Any]] = []
    rejected: list[str] = []
    for p in range(partitions):
        records: list[bytes | None] = [*inputs[p], tick]
        for start in range(0, len(records), batch):
            results = [engines[p].process_batch(records[start : start + batch], 0)]
            while engines[p].next_fire() is not None:
                results.append(engines[p].fire_due(0))
            for result in results:
                for key, value in result.changelog:
                    if value is None:
                        changelogs[p].pop(key, None)
                    else:
                        changelogs[p][key] = value
                out.extend(orjson.loads(value) for _, value, _ in result.output)
                rejected.extend(reason for _, _, reason in result.dead_letters)
    return out, rejected, changelogs


def test_partitions_reproduce_the_replay() -> None:
    history = generate_history(400, seed=11)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * 24 * 3600 * SECOND
    lines = [orjson.dumps(item) for item in history]
    reference = list(Replayer(load_policy()).run(lines, until))
    got, rejected, _ = _run_partitions(history, 5, until)
    assert len(got) == len(reference) > 400
    assert per_ticket(got) == per_ticket(reference)
    assert {e["event_id"] for e in got} == {e["event_id"] for e in reference}
    assert not rejected


def test_a_storm_limit_changes_no_ticket_s_output_nor_its_state() -> None:
    """Two timers per turn, the rest fired by timer calls: each ticket's output and its last
    state are what the unlimited partitions give (and so the replay's)."""
    history = generate_history(400, seed=11)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * 24 * 3600 * SECOND
    reference, _, states = _run_partitions(history, 5, until)
    got, rejected, limited_states = _run_partitions(history, 5, until, storm_limit=2)
    assert per_ticket(got) == per_ticket(reference)
    assert len(got) == len(reference) > 400
    assert limited_states == states
    assert not rejected


def test_timers_fire_at_their_instant_on_the_wall_clock_without_input() -> None:
    """A severity-1 ticket opened at 10:00:00 breaches its 1 h first response at 11:00:00; with
    0.1 s allowed lateness the worker's alarm is 11:00:00.1 (`next_fire`). Called before it,
    nothing fires; at it, the breach and the ticket's new state come out for the changelog.
    Three such tickets and a storm limit of 2: two, then one, per timer call."""
    policy = parse_policy(
        "name = 'wall'\n[calendar]\ntimezone = 'UTC'\nopen = '00:00'\nclose = '23:59'\n"
        "weekdays = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']\n"
        "[severity.1]\nfirst_response = { target = '1h', clock = 'elapsed' }\n",
        "wall.toml",
    )
    opened_at = parse_instant("2026-12-07T10:00:00Z")
    due = parse_instant("2026-12-07T11:00:00Z")
    engine = PartitionEngine(0, policy, "wall", allowed_lateness=SECOND // 10, storm_limit=2)
    opens = [
        orjson.dumps({"type": "ticket.opened", "event_id": f"{t}-o", "ticket_id": t,
                      "severity": 1, "occurred_at": format_instant(opened_at)})
        for t in ("W3", "W1", "W2")
    ]  # fmt: skip
    engine.process_batch(opens, opened_at + SECOND)  # type: ignore[arg-type]
    assert engine.next_fire() == due + SECOND // 10
    early = engine.fire_due(due + SECOND // 20)
    assert not early.output and not early.changelog
    first = engine.fire_due(due + SECOND // 10)
    assert [(e["type"], e["ticket_id"], e["due_at"]) for _, _, e in first.output] == [
        ("sla.breached", "W1", "2026-12-07T11:00:00Z"),
        ("sla.breached", "W2", "2026-12-07T11:00:00Z"),
    ]
    assert sorted(key for key, _ in first.changelog) == [b"W1", b"W2"]
    assert first.timer_dues == [due, due]  # live: counted for the lateness histogram
    assert engine.next_fire() == due + SECOND // 10  # W3 still owed: fire again at once
    second = engine.fire_due(due + SECOND // 10 + 1000)
    assert [e["ticket_id"] for _, _, e in second.output] == ["W3"]
    assert engine.next_fire() is None and engine.pending is None


def test_redelivered_events_change_nothing() -> None:
    history = generate_history(60, seed=3)
    until = parse_instant(history[-1]["occurred_at"]) + 10 * 24 * 3600 * SECOND
    once, _, _ = _run_partitions(history, 3, until)
    twice, _, _ = _run_partitions([x for item in history for x in (item, item)], 3, until)
    assert [e["event_id"] for e in twice] == [e["event_id"] for e in once]


def test_bad_records_are_rejected_with_reasons() -> None:
    """A reply of a ticket not opened waits for its open until the watermark passes its time
    (the tick), then is dead-lettered with its original bytes and input offset."""
    engine = PartitionEngine(0, load_policy(), "event")
    orphan = (
        b'{"type": "ticket.responded", "event_id": "e", "ticket_id": "T9",'
        b' "occurred_at": "2026-11-23T13:00:00Z"}'
    )
    result = engine.process_batch(
        [
            b"{not json",
            b'{"type": "ticket.teleported", "ticket_id": "T1"}',
            b'{"type": "ticket.opened", "ticket_id": "T1", "occurred_at": "2026-11-23T13:00:00Z"}',
            orphan,
            None,
            b'{"type": "clock.tick", "occurred_at": "2026-11-23T13:00:01Z"}',
        ],
        0,
        offsets=[10, 11, 12, 13, 14, 15],
    )
    got = {position: (stage, reason) for position, stage, reason in result.dead_letters}
    assert sorted(got) == [0, 1, 2, 4]
    assert got[0][0] == "decode" and got[0][1].startswith("malformed JSON")
    assert "unknown event type" in got[1][1]
    assert "event_id" in got[2][1] and "severity" in got[2][1]
    assert got[4][0] == "decode"
    [(key, value, reason, offset)] = result.expired
    assert (key, value, offset) == (b"T9", orphan, 13)
    assert reason.startswith("unknown ticket 'T9': no ticket.opened seen (held until")
    assert result.output == [] and result.changelog == [(b"T9", None)]
    assert result.invalid == 4 and result.events == 1 and result.held == 1


def test_state_encoding_exposes_next_due_and_openness_cheaply() -> None:
    history = generate_history(60, seed=5)
    _, _, changelogs = _run_partitions(history[: len(history) // 2], 2, 0)
    values = [v for changelog in changelogs.values() for v in changelog.values()]
    assert values
    statuses = set()
    for raw in values:
        state = state_codec.decode(raw)
        statuses.add(state.status)
        assert state_codec.next_due_of(raw) == state.next_due
        assert state_codec.is_open_raw(raw) == (state.status not in ("resolved", "closed"))
        assert state_codec.encode(state) == raw
    assert {"open", "resolved"} <= statuses


def test_recovered_partition_continues_like_one_that_never_stopped() -> None:
    """States recovered from the changelog (kept as bytes until touched) give the same output
    and the same open-ticket count as the partition that wrote them."""
    history = generate_history(200, seed=8)
    lines = [orjson.dumps(item) for item in history]
    until = parse_instant(history[-1]["occurred_at"]) + 30 * 24 * 3600 * SECOND
    tick = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(until)})
    half = len(lines) // 2
    policy = load_policy()
    first = PartitionEngine(0, policy, "event")
    changelog: dict[bytes, bytes | None] = {}
    for start in range(0, half, 50):
        changelog.update(
            first.process_batch(list(lines[start : min(start + 50, half)]), 0).changelog
        )
    second = PartitionEngine(0, policy, "event")
    for key, value in changelog.items():
        second.load(key.decode(), value)
    assert second.open_tickets == first.open_tickets > 0
    assert len(second.states) == len(first.states)
    rest: list[bytes | None] = [*lines[half:], tick]
    a = first.process_batch(rest, 0)
    b = second.process_batch(rest, 0)
    assert per_ticket([orjson.loads(v) for _, v, _ in a.output]) == per_ticket(
        [orjson.loads(v) for _, v, _ in b.output]
    )
    assert second.open_tickets == first.open_tickets


def test_a_record_the_fold_cannot_process_changes_nothing() -> None:
    """Issue #10 §3: one valid Sev1 ticket and one ticket opened in year 9999, event clock, one
    partition; a tick to 2026-12-12 emits the 5 events the replay gives for the valid ticket,
    and the 9999 record is dead-lettered with a reason (all or nothing per record)."""
    policy = load_policy()
    valid = {
        "type": "ticket.opened",
        "event_id": "v-1",
        "ticket_id": "V",
        "severity": 1,
        "occurred_at": "2026-12-10T09:00:00Z",
    }
    far = {**valid, "event_id": "f-1", "ticket_id": "F", "occurred_at": "9999-12-10T09:00:00Z"}
    until = parse_instant("2026-12-12T00:00:00Z")
    expected = list(Replayer(policy).run([orjson.dumps(valid)], until))
    assert len(expected) == 5
    tick = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(until)})
    for batches in ([[valid, far, tick]], [[valid], [far], [tick]]):
        engine = PartitionEngine(0, policy, "event")
        out: list[dict[str, Any]] = []
        dead: list[tuple[str, str]] = []
        for batch in batches:
            raws = [x if isinstance(x, bytes) else orjson.dumps(x) for x in batch]
            result = engine.process_batch(list(raws), 0)
            out.extend(orjson.loads(v) for _, v, _ in result.output)
            dead.extend((stage, reason) for _, stage, reason in result.dead_letters)
        assert out == expected
        assert len(dead) == 1 and dead[0][1].startswith(("internal error", "field 'occurred_at'"))
        assert engine.watermark == until
        assert set(engine.states) == {"V"}
        assert engine.open_tickets == 1


def test_ticket_state_copy_is_independent_and_complete() -> None:
    history = generate_history(40, seed=2)
    _, _, changelogs = _run_partitions(history, 2, 0)
    for raw in (v for changelog in changelogs.values() for v in changelog.values()):
        state = state_codec.decode(raw)
        copy = state.copy()
        assert state_codec.to_obj(copy) == state_codec.to_obj(state)
        for name in ("resolution_spans", "pauses", "fired", "seen", "timers"):
            assert getattr(copy, name) is not getattr(state, name)
    # copy() passes every parameter of __init__ (a field added later must be copied too).
    tree = ast.parse((REPO / "streams" / "sla" / "state.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TicketState")
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    fields = {a.arg for a in methods["__init__"].args.args[1:]}
    call = next(n for n in ast.walk(methods["copy"]) if isinstance(n, ast.Call))
    assert {k.arg for k in call.keywords} == fields


@pytest.mark.parametrize("mode", ["wall", "event"])
def test_ticks_fire_only_due_timers(mode: str) -> None:
    policy = load_policy("tests/engine/fast_policy.toml")
    engine = PartitionEngine(0, policy, mode, allowed_lateness=0)  # type: ignore[arg-type]
    opened_at = parse_instant("2026-11-23T13:00:00Z")
    opened = {
        "type": "ticket.opened",
        "event_id": "e1",
        "ticket_id": "T1",
        "severity": 1,
        "occurred_at": format_instant(opened_at),
    }
    engine.process_batch([orjson.dumps(opened)], opened_at)

    def tick(at: int) -> list[str]:
        raw = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(at)})
        res = engine.process_batch([raw], at)
        return [f"{e['type']}:{e['metric']}" for e in (orjson.loads(v) for _, v, _ in res.output)]

    assert tick(opened_at + SECOND) == []
    assert tick(opened_at + 3 * SECOND) == [
        "sla.warning:first_response",
        "sla.breached:first_response",
    ]
    assert tick(opened_at + 4 * SECOND) == []
    assert tick(opened_at + 5 * SECOND) == ["ticket.escalated:escalation"]
    assert len(engine.index) == 1


def test_a_ticket_whose_timer_fails_does_not_stop_the_partition() -> None:
    """Issue #10 §3 with a fault inside the fold (year 9999 is now rejected at decode): a
    stored state the core raises on (severity 7, not in the policy: a KeyError when its timer
    fires) is disarmed and put back; the valid Sev1 ticket's tick to 2026-12-12 still emits
    the 5 events the replay gives, and no valid record is dead-lettered."""
    policy = load_policy()
    faulty = {
        "type": "ticket.opened",
        "event_id": "f-1",
        "ticket_id": "F",
        "severity": 2,
        "occurred_at": "2026-12-09T09:00:00Z",
    }
    [(_, raw)] = (
        PartitionEngine(0, policy, "event").process_batch([orjson.dumps(faulty)], 0).changelog
    )
    assert raw is not None
    broken = orjson.dumps({**orjson.loads(raw), "severity": 7})
    valid = {**faulty, "event_id": "v-1", "ticket_id": "V", "severity": 1,
             "occurred_at": "2026-12-10T09:00:00Z"}  # fmt: skip
    until = parse_instant("2026-12-12T00:00:00Z")
    expected = list(Replayer(policy).run([orjson.dumps(valid)], until))
    assert len(expected) == 5
    tick = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(until)})
    engine = PartitionEngine(0, policy, "event")
    engine.load("F", broken)
    result = engine.process_batch([orjson.dumps(valid), tick], 0)
    assert [orjson.loads(v) for _, v, _ in result.output] == expected
    assert result.dead_letters == []
    assert result.faults == [("F", "internal error: KeyError")]
    assert engine.states["F"] == broken  # put back as it was, not half-advanced
    assert [key for key, _ in result.changelog] == [b"V"]
    again = engine.process_batch([tick], 0)  # disarmed: later records do not trip on it
    assert (again.output, again.dead_letters, again.faults) == ([], [], [])
