"""The per-partition shell logic without Kafka: it must reproduce the embedded replay."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from events.instants import SECOND, format_instant, parse_instant
from events.samples import generate_history
from streams.engine.processor import PartitionEngine, decode_state, encode_state, next_due_of
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from tests.engine.helpers import per_ticket


def _partition(ticket_id: str, partitions: int) -> int:
    return hash(ticket_id) % partitions


def _run_partitions(
    history: list[dict[str, Any]],
    partitions: int,
    until: int,
    extra: list[bytes] = (),  # type: ignore[assignment]
) -> tuple[list[dict[str, Any]], list[str], dict[int, dict[str, bytes]]]:
    policy = load_policy()
    engines = {p: PartitionEngine(p, policy, "event") for p in range(partitions)}
    tables: dict[int, dict[str, bytes]] = {p: {} for p in range(partitions)}
    out: list[dict[str, Any]] = []
    rejected: list[str] = []

    def feed(p: int, raw: bytes) -> None:
        table = tables[p]
        result = engines[p].process(raw, table.get, 0)
        for ticket, value in result.writes.items():
            if value is None:
                table.pop(ticket, None)
            else:
                table[ticket] = value
        out.extend(result.emitted)
        if result.rejected:
            rejected.append(result.rejected)

    for item in history:
        feed(_partition(item["ticket_id"], partitions), orjson.dumps(item))
    for raw in extra:
        feed(0, raw)
    tick = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(until)})
    for p in range(partitions):
        feed(p, tick)
    return out, rejected, tables


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


def test_redelivered_events_change_nothing() -> None:
    history = generate_history(60, seed=3)
    until = parse_instant(history[-1]["occurred_at"]) + 10 * 24 * 3600 * SECOND
    once, _, _ = _run_partitions(history, 3, until)
    twice, _, _ = _run_partitions([x for item in history for x in (item, item)], 3, until)
    assert [e["event_id"] for e in twice] == [e["event_id"] for e in once]


def test_bad_records_are_rejected_with_reasons() -> None:
    engine = PartitionEngine(0, load_policy(), "event")
    empty: dict[str, bytes] = {}
    reasons = [
        engine.process(raw, empty.get, 0).rejected
        for raw in (
            b"{not json",
            b'{"type": "ticket.teleported", "ticket_id": "T1"}',
            b'{"type": "ticket.opened", "ticket_id": "T1", "occurred_at": "2026-11-23T13:00:00Z"}',
            b'{"type": "ticket.responded", "event_id": "e", "ticket_id": "T9",'
            b' "occurred_at": "2026-11-23T13:00:00Z"}',
            None,
        )
    ]
    assert reasons[0] is not None and reasons[0].startswith("malformed JSON")
    assert reasons[1] is not None and "unknown event type" in reasons[1]
    assert reasons[2] is not None and "event_id" in reasons[2] and "severity" in reasons[2]
    assert reasons[3] is not None and "unknown ticket" in reasons[3]
    assert reasons[4] is not None


def test_state_encoding_exposes_next_due_cheaply() -> None:
    history = generate_history(20, seed=5)
    _, _, tables = _run_partitions(history[: len(history) // 2], 2, 0)
    values = [v for table in tables.values() for v in table.values()]
    assert values
    for raw in values:
        state = decode_state(raw)
        assert next_due_of(raw) == state.next_due
        assert encode_state(state) == raw


@pytest.mark.parametrize("mode", ["wall", "event"])
def test_ticks_fire_only_due_timers(mode: str) -> None:
    policy = load_policy("tests/engine/fast_policy.toml")
    engine = PartitionEngine(0, policy, mode)  # type: ignore[arg-type]
    table: dict[str, bytes] = {}
    opened_at = parse_instant("2026-11-23T13:00:00Z")
    opened = {
        "type": "ticket.opened",
        "event_id": "e1",
        "ticket_id": "T1",
        "severity": 1,
        "occurred_at": format_instant(opened_at),
    }
    result = engine.process(orjson.dumps(opened), table.get, opened_at)
    table.update({k: v for k, v in result.writes.items() if v is not None})

    def tick(at: int) -> list[str]:
        raw = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(at)})
        res = engine.process(raw, table.get, at)
        table.update({k: v for k, v in res.writes.items() if v is not None})
        return [f"{e['type']}:{e['metric']}" for e in res.emitted]

    assert tick(opened_at + SECOND) == []
    assert tick(opened_at + 3 * SECOND) == [
        "sla.warning:first_response",
        "sla.breached:first_response",
    ]
    assert tick(opened_at + 4 * SECOND) == []
    assert tick(opened_at + 5 * SECOND) == ["ticket.escalated:escalation"]
    assert len(engine.index) == 1
