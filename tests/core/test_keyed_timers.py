"""The keyed-timers driver (issue #21 item 2): one watermark, one timer index, one sweep and one
late-event decision, shared by replay and the stream processor.

Values are hand-computed from a one-rule policy: a severity-3 ticket's first response is due
1 h (elapsed) after it opens, so a ticket opened at 10:00Z breaches at 11:00Z.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from events.codec import ticket_event_from_obj
from events.instants import MINUTE, Micros, parse_instant
from events.records import TicketEvent
from events.sla_records import wire
from streams.engine.processor import PartitionEngine
from streams.sla import state_codec
from streams.sla.fold import handle
from streams.sla.keyed_timers import KeyedTimers
from streams.sla.outcome import Outcome
from streams.sla.policy import parse_policy
from streams.sla.replay import Replayer
from streams.sla.state import TicketState

POLICY = parse_policy(
    """
name = "driver-test"
[calendar]
timezone = "UTC"
open = "00:00"
close = "23:59"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[severity.3]
first_response = { target = "1h", clock = "elapsed" }
""",
    "driver-test.toml",
)


def at(clock: str) -> Micros:
    return parse_instant(f"2026-12-07T{clock}:00Z")


def opened(ticket: str, clock: str, event_id: str | None = None) -> TicketEvent:
    return ticket_event_from_obj(
        {
            "event_id": event_id or f"open-{ticket}",
            "ticket_id": ticket,
            "type": "ticket.opened",
            "severity": 3,
            "occurred_at": f"2026-12-07T{clock}:00Z",
        }
    )


def driver_with(*events: TicketEvent, max_delay: Micros = 0) -> KeyedTimers:
    driver = KeyedTimers(POLICY, max_delay, track_changes=True)
    for event in events:
        driver.store(event.ticket_id, handle(driver.get(event.ticket_id), event, POLICY).state)
    return driver


def fired(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["type"], r["ticket_id"], r["due_at"]) for r in map(wire, records)]


def test_timers_fire_in_due_order_across_tickets_as_the_watermark_passes_them() -> None:
    driver = driver_with(opened("B", "10:30"), opened("A", "10:00"))
    out: list[dict[str, Any]] = []
    driver.sweep(at("11:30"), False, out)  # B is due at the mark itself: not yet
    assert fired(out) == [("sla.breached", "A", "2026-12-07T11:00:00Z")]
    assert driver.watermark == at("11:30")
    driver.sweep(at("11:00"), True, out)  # the watermark never goes back: B fires at 11:30
    assert driver.watermark == at("11:30")
    assert fired(out)[1:] == [("sla.breached", "B", "2026-12-07T11:30:00Z")]
    assert len(driver.index) == 0


def test_the_event_clock_mark_is_the_latest_accepted_time_minus_max_delay() -> None:
    driver = KeyedTimers(POLICY, 15 * MINUTE)
    assert driver.event_mark(at("10:00")) == at("09:45")
    assert driver.event_mark(at("09:50")) == at("09:45")  # an earlier event moves nothing
    assert driver.latest == at("10:00")
    assert driver.event_mark(at("10:20")) == at("10:05")
    assert driver.latest == at("10:20")


def test_an_event_before_the_watermark_is_late_unless_a_duplicate_or_rejected() -> None:
    driver = driver_with(opened("A", "10:00"))
    accepted = Outcome(None)
    assert not driver.is_late(at("09:00"), accepted)  # no watermark yet
    driver.sweep(at("10:00"), False, None)
    assert driver.is_late(at("09:59"), accepted)
    assert not driver.is_late(at("10:00"), accepted)  # at the watermark is in time
    assert not driver.is_late(at("09:59"), Outcome(None, duplicate=True))
    assert not driver.is_late(at("09:59"), Outcome(None, rejected="unknown ticket"))
    too_old = Outcome(None, rejected="beyond the correction horizon", beyond_horizon=True)
    assert driver.is_late(at("09:59"), too_old)


def test_store_arms_and_tracks_changes_restore_puts_back_without_a_change() -> None:
    driver = driver_with(opened("A", "10:00"))
    assert driver.changed == {"A": None}
    assert driver.index.peek() == (at("11:00"), "A")
    state = driver.get("A")
    assert state is not None
    driver.restore("B", state_codec.encode(handle(None, opened("B", "10:30"), POLICY).state))  # type: ignore[arg-type]
    assert driver.changed == {"A": None}  # a stored form put back is not a change
    assert isinstance(driver.states["B"], bytes)
    assert isinstance(driver.get("B"), TicketState)  # decoded on first use, then kept
    assert isinstance(driver.states["B"], TicketState)
    driver.store("gone", None)  # a ticket that was never there: no change
    assert driver.changed == {"A": None}
    driver.store("A", None)
    assert driver.changed == {"A": None} and "A" not in driver.states
    assert driver.index.peek() == (at("11:30"), "B")
    assert KeyedTimers(POLICY, 0).changed is None  # untracked: nothing kept


def test_a_timer_that_raises_is_handed_over_and_its_ticket_left_unarmed() -> None:
    """(`on_timer_fault`: replay counts it; the engine's own test puts the state back.)"""
    replayer = Replayer(POLICY)
    for event in (opened("A", "10:00"), opened("B", "10:30")):
        replayer.feed(event)
    broken = replayer.get("A")
    assert broken is not None
    broken.severity = 7  # not in the policy: a KeyError when its timer fires
    out = replayer.advance(at("12:00"))
    assert replayer.counts.faults == 1
    assert fired(out) == [("sla.breached", "B", "2026-12-07T11:30:00Z")]  # the others still fire
    assert "A" in replayer.states and len(replayer.index) == 0


@pytest.mark.parametrize("shell", [Replayer, PartitionEngine])
def test_replay_and_the_engine_keep_no_timer_logic_of_their_own(shell: type) -> None:
    """By construction: both are the one driver, with only its hooks filled in."""
    assert issubclass(shell, KeyedTimers)
    own = set(vars(shell))
    for name in ("store", "get", "restore", "sweep", "fire", "is_late", "event_mark"):
        assert name not in own, name
    assert {"on_timer", "on_timer_fault"} <= own


def test_a_storm_limit_fires_so_many_per_turn_and_holds_the_watermark_at_the_rest() -> None:
    """Five tickets opened at 10:00 all breach at 11:00 (one instant, as a business calendar
    lines them up); two may fire per turn: the watermark stays at 11:00 (every timer before it
    has fired) until the last one is out, then moves to the mark."""
    driver = driver_with(*(opened(t, "10:00") for t in "EDCBA"))
    driver.storm_limit = 2
    driver.new_turn()
    out: list[dict[str, Any]] = []
    driver.sweep(at("12:00"), False, out)
    assert fired(out) == [("sla.breached", t, "2026-12-07T11:00:00Z") for t in "AB"]
    assert driver.watermark == at("11:00") and driver.pending == (at("12:00"), False)
    driver.sweep(at("12:00"), False, out)  # the same turn: its budget is spent
    assert len(out) == 2
    driver.new_turn()
    driver.sweep(at("11:30"), False, out)  # an earlier mark still goes on to 12:00
    assert [r["ticket_id"] for r in out[2:]] == ["C", "D"]
    assert driver.watermark == at("11:00")
    driver.new_turn()
    driver.sweep(at("11:30"), False, out)
    assert [r["ticket_id"] for r in out[4:]] == ["E"]
    assert driver.watermark == at("12:00") and driver.pending is None
    assert len(driver.index) == 0


@pytest.mark.parametrize("max_delay", [0, 15 * MINUTE])
def test_replay_with_a_storm_limit_gives_what_replay_without_one_gives(max_delay: Micros) -> None:
    """The shared sweep cut short after each timer: the same output, in the same order."""
    from events.samples import generate_history
    from streams.sla.policy import load_policy

    policy = load_policy()
    lines = [orjson.dumps(e) for e in generate_history(300, seed=26)]
    reference = list(Replayer(policy, max_delay).run(lines))
    limited = Replayer(policy, max_delay, storm_limit=1)
    got, cut_short = [], 0
    for record in limited.run(lines):
        got.append(record)
        cut_short += limited.pending is not None
    assert cut_short > 5  # the limit did cut sweeps short
    assert len(got) == len(reference) > 300
    assert got == reference
    assert limited.pending is None
