"""Issue #19 item 3 in the engine: a ticket's line that is invalid only for the ticket's state
when it comes (a resume before its pause, a reply before its open) waits in the ticket's state
(the changelog) until the watermark passes its time, and is folded in where it belongs; one
still invalid then is dead-lettered once, with its original bytes and the state named."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from events.instants import MINUTE, format_instant
from streams.engine.processor import PartitionEngine
from streams.sla import state_codec
from streams.sla.replay import Replayer
from tests.core.test_own_lines_out_of_order import (
    EXPECTED,
    OPENED,
    PAUSED,
    POLICY,
    POLICY_TEXT,
    RESUMED,
    UNTIL,
)
from tests.core.test_own_lines_permuted import MAX_DELAY, net, within_bound
from tests.engine.helpers import Worker, cli, new_topics, read_topic, sla_events, write_jsonl

TICK = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(UNTIL)})
ORPHAN_RESUME = orjson.dumps(  # D is never paused: its resume can never apply
    {"event_id": "d2", "ticket_id": "D", "type": "ticket.resumed",
     "occurred_at": "2026-12-07T10:30:00-05:00"}
)  # fmt: skip
D_OPENED = orjson.dumps(
    {"event_id": "d1", "ticket_id": "D", "type": "ticket.opened",
     "occurred_at": "2026-12-07T10:10:00-05:00", "severity": 2}
)  # fmt: skip
ORPHAN_REPLY = orjson.dumps(  # E is never opened
    {"event_id": "e1", "ticket_id": "E", "type": "ticket.responded",
     "occurred_at": "2026-12-07T10:20:00-05:00"}
)  # fmt: skip


def _summary(records: list[dict[str, Any]], ticket: str = "C") -> list[tuple[Any, ...]]:
    return [
        (r["type"], r["metric"], r["at"], r.get("eta")) for r in records if r["ticket_id"] == ticket
    ]


def _output(result: Any) -> list[dict[str, Any]]:
    return [orjson.loads(value) for _, value, _ in result.output]


@pytest.mark.parametrize("max_delay", [15 * MINUTE, 0])
def test_the_fold_parks_a_resume_before_its_pause_and_folds_it_in(max_delay: int) -> None:
    engine = PartitionEngine(0, POLICY, "event", max_delay)
    out: list[dict[str, Any]] = []
    for value in (OPENED, RESUMED, PAUSED, TICK):  # one record per batch
        result = engine.process_batch([value], 0)
        assert result.dead_letters == [] and result.expired == []
        out += _output(result)
    assert _summary(out) == EXPECTED
    assert out == list(Replayer(POLICY, max_delay).run([OPENED, RESUMED, PAUSED], UNTIL))


def test_an_expired_event_is_dead_lettered_once_across_a_restore_from_the_changelog() -> None:
    """The dead letter and the changelog record that drops the parked event are in one
    transaction: a worker that crashed before committing them restores the parked event and
    dead-letters it again (once, the first copy was aborted); one restored after the commit
    does not."""
    first = PartitionEngine(0, POLICY, "event", 0)
    parked = first.process_batch([OPENED, RESUMED], 0, offsets=[40, 41])
    assert parked.held == 1 and parked.dead_letters == [] and parked.expired == []
    [(key, stored)] = parked.changelog
    assert key == b"C" and stored is not None and b'"parked"' in stored
    later = orjson.dumps(
        {"event_id": "x1", "ticket_id": "X", "type": "ticket.opened", "severity": 2,
         "occurred_at": "2026-12-07T10:06:00-05:00"}
    )  # fmt: skip
    reason = "cannot resume an open ticket (held until the watermark passed its time, "
    reason += "2026-12-07T15:05:00Z: no earlier event of the ticket made it valid)"

    def restored(changelog: list[tuple[bytes, bytes | None]]) -> PartitionEngine:
        engine = PartitionEngine(0, POLICY, "event", 0)
        for ticket, value in changelog:
            engine.load(ticket.decode(), value)
        return engine

    for engine in (first, restored(parked.changelog)):  # as run, and after a crash
        expired = engine.process_batch([later], 0, offsets=[42])
        assert expired.expired == [(b"C", RESUMED, reason, 41)]
        changed = dict(expired.changelog)[b"C"]
        assert changed is not None and b'"parked"' not in changed
    after_commit = restored([*parked.changelog, *expired.changelog])
    again = after_commit.process_batch([TICK], 0, offsets=[43])
    assert again.expired == [] and again.dead_letters == []


def test_a_state_stored_before_parked_events_still_reads() -> None:
    """A stored state without the `parked` field (written before parked events existed, or
    with none) reads as a state with none; one with them reads them back."""
    engine = PartitionEngine(0, POLICY, "event", 0)
    [(_, stored)] = engine.process_batch([OPENED, RESUMED], 0, offsets=[7, 8]).changelog
    assert stored is not None
    state = state_codec.decode(stored)
    assert state.parked is not None and state.parked[0][2:] == (
        RESUMED.decode(),
        "cannot resume an open ticket",
        8,
    )
    older = orjson.loads(stored)
    del older["parked"]
    read = state_codec.decode(orjson.dumps(older))
    assert read.parked is None
    state.parked = None
    assert state_codec.encode(read) == state_codec.encode(state)


@settings(max_examples=300, deadline=None)
@given(within_bound())
def test_the_fold_gives_the_time_ordered_output_for_a_permutation_within_the_bound(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    """The property of tests/core/test_own_lines_permuted.py for the engine's fold, in
    batches of 3 with a restore from the changelog half-way."""
    in_order, arrived = case
    expected = list(Replayer(POLICY, MAX_DELAY).run(in_order, UNTIL))
    engine = PartitionEngine(0, POLICY, "event", MAX_DELAY)
    changelog: dict[bytes, bytes | None] = {}
    out: list[dict[str, Any]] = []
    records: list[bytes | None] = [*arrived, TICK]
    for start in range(0, len(records), 3):
        if start == 3 * (len(records) // 6):  # a restart: states from the changelog only
            watermark, latest = engine.watermark, engine.latest
            engine = PartitionEngine(0, POLICY, "event", MAX_DELAY)
            for ticket, value in changelog.items():
                engine.load(ticket.decode(), value)
            engine.watermark, engine.latest = watermark, latest
        result = engine.process_batch(records[start : start + 3], 0)
        assert result.dead_letters == [] and result.expired == []
        changelog.update(result.changelog)
        out += _output(result)
    assert net(out) == net(expected)


@pytest.mark.kafka
@pytest.mark.parametrize("max_delay", ["15m", "0"])
def test_the_engine_folds_in_the_issues_lines_and_dead_letters_what_never_applies(
    kafka_bootstrap: str, tmp_path: Path, max_delay: str
) -> None:
    """`escalator run --clock event` on the issue's lines, with D's resume that never applies
    and E's reply whose ticket never opens; the worker is killed (SIGKILL) after the first
    lines and a new one restores the parked events from the changelog."""
    policy = tmp_path / "issue-19.toml"
    policy.write_text(POLICY_TEXT)
    first_part = [OPENED, RESUMED, ORPHAN_REPLY]
    second_part = [PAUSED, D_OPENED, ORPHAN_RESUME]
    lines = [*first_part, *second_part]
    reasons: list[tuple[int, str]] = []
    reference = list(
        Replayer(POLICY, 0 if max_delay == "0" else 15 * MINUTE).run(
            lines, UNTIL, lambda n, r: reasons.append((n, r))
        )
    )
    assert _summary(reference) == EXPECTED
    assert sorted(n for n, _ in reasons) == [3, 6]
    topics = new_topics(f"parked{max_delay}", partitions=1)
    extra = ["--max-delay", max_delay]
    worker = Worker(kafka_bootstrap, topics, tmp_path / "w1.log", policy=policy, extra=extra)
    worker.start()
    try:
        worker.wait_ready(partitions=1)
        done = cli(
            "publish", str(write_jsonl(tmp_path / "a.jsonl", first_part)), *topics.flags(),
            broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        changelog = f"{topics.app_id}-sla-state-changelog"
        states = read_topic(kafka_bootstrap, changelog, expect=2, timeout=60)
        assert any(b'"parked"' in (r.value or b"") for r in states if r.key == b"C")
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(10)
    finally:
        worker.stop()
    worker = Worker(kafka_bootstrap, topics, tmp_path / "w2.log", policy=policy, extra=extra)
    worker.start()
    try:
        worker.wait_ready(partitions=1)
        done = cli(
            "publish", str(write_jsonl(tmp_path / "b.jsonl", second_part)),
            "--tick", format_instant(UNTIL), *topics.flags(), broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        got = sla_events(
            read_topic(kafka_bootstrap, topics.output, expect=len(reference), timeout=90)
        )
        dead = read_topic(kafka_bootstrap, topics.dlq, expect=2, timeout=30)
    finally:
        worker.stop()
    assert _summary(got) == EXPECTED, worker.log_tail()
    assert got == reference
    by_value = {r.value: dict(r.headers) for r in dead}
    assert len(dead) == 2 and set(by_value) == {ORPHAN_RESUME, ORPHAN_REPLY}
    resume, reply = by_value[ORPHAN_RESUME], by_value[ORPHAN_REPLY]
    assert resume["escalator.stage"] == reply["escalator.stage"] == b"expired"
    assert resume["escalator.reason"].startswith(b"cannot resume an open ticket (held until")
    assert reply["escalator.reason"].startswith(b"unknown ticket 'E': no ticket.opened seen")
    assert (resume["escalator.source.offset"], reply["escalator.source.offset"]) == (b"5", b"2")


def test_a_record_that_fails_after_its_sweep_expired_an_event_leaves_it_parked() -> None:
    """Wall clock: a record's first sweep rejects C's parked resume, then the record itself
    fails (a stored state the core raises on); all of it is undone, the resume included, and
    the next record dead-letters it once."""
    engine = PartitionEngine(0, POLICY, "wall")
    wall = (
        state_codec.decode(
            PartitionEngine(0, POLICY, "event").process_batch([OPENED], 0).changelog[0][1] or b""
        ).reported_at
        + 70 * MINUTE
    )  # 10:10 Toronto: past the resume's 10:05
    first = engine.process_batch([OPENED, RESUMED], wall, offsets=[0, 1])
    assert first.held == 1 and first.expired == []
    [(_, stored)] = first.changelog
    copied = {**orjson.loads(stored or b""), "ticket_id": "F", "severity": 7}
    del copied["parked"]
    broken = orjson.dumps(copied)
    engine.load("F", broken)
    reply = orjson.dumps(
        {"event_id": "f2", "ticket_id": "F", "type": "ticket.responded",
         "occurred_at": "2026-12-07T10:09:00-05:00"}
    )  # fmt: skip
    failed = engine.process_batch([reply], wall, offsets=[2])
    assert [stage for _, stage, _ in failed.dead_letters] == ["internal"]
    assert failed.expired == []
    state = engine.states["C"]
    assert not isinstance(state, bytes) and state.parked is not None
    tick = orjson.dumps({"type": "clock.tick", "occurred_at": "2026-12-07T15:10:00Z"})
    later = engine.process_batch([tick], wall, offsets=[3])
    assert [(key, offset) for key, _, _, offset in later.expired] == [(b"C", 1)]


def test_a_parked_event_moves_no_clock_in_the_engine_as_in_replay() -> None:
    """--max-delay 0: C's resume (10:05) waits; if it moved the watermark, C's first response
    (due 10:00) would breach before C's reply dated 09:30 comes, and be retracted."""
    reply = orjson.dumps(
        {"event_id": "c5", "ticket_id": "C", "type": "ticket.responded",
         "occurred_at": "2026-12-07T09:30:00-05:00"}
    )  # fmt: skip
    lines = [OPENED, RESUMED, reply, PAUSED]
    engine = PartitionEngine(0, POLICY, "event", 0)
    out: list[dict[str, Any]] = []
    for value in (*lines, TICK):
        out += _output(engine.process_batch([value], 0))
    expected = list(Replayer(POLICY, 0).run(lines, UNTIL))
    assert out == expected
    assert [r["type"] for r in out if r["metric"] == "first_response"] == ["sla.met"]


def test_an_unparked_event_moves_the_clock_to_its_time_in_the_engine_as_in_replay() -> None:
    """--max-delay 0: C's resume (10:05) is folded in when its pause (10:00) comes, and moves
    the watermark to 10:05 as in replay: X's first response due 10:03 breaches, and X's reply
    dated 10:02 that comes next is late (a correction), in both."""
    x_opened = orjson.dumps(
        {"event_id": "x1", "ticket_id": "X", "type": "ticket.opened", "severity": 2,
         "occurred_at": "2026-12-07T09:03:00-05:00"}
    )  # fmt: skip
    x_reply = orjson.dumps(
        {"event_id": "x2", "ticket_id": "X", "type": "ticket.responded",
         "occurred_at": "2026-12-07T10:02:00-05:00"}
    )  # fmt: skip
    lines = [OPENED, x_opened, RESUMED, PAUSED, x_reply]
    engine = PartitionEngine(0, POLICY, "event", 0)
    out: list[dict[str, Any]] = []
    for value in (*lines, TICK):
        out += _output(engine.process_batch([value], 0))
    expected = list(Replayer(POLICY, 0).run(lines, UNTIL))
    assert sorted(orjson.dumps(r) for r in out) == sorted(orjson.dumps(r) for r in expected)
    assert "sla.retracted" in [r["type"] for r in out if r["ticket_id"] == "X"]
