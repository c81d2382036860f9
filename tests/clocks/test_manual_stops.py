"""A governed stop-the-clock and breach reasons (issue 24 §3), hand-computed.

Severity 1: first response 1h, resolution 4h, both elapsed; resolution pausable. The policy's
`[stop_clock]`: reasons third_party, customer_hold, outage; holds resolution only; at most 2h.
`[breach_reasons]`: customer_unreachable, outage (both exempt), agent_error.
"""

from __future__ import annotations

from events.sla_records import wire
from streams.sla.fold import handle
from streams.sla.replay import Replayer
from tests.clocks.helpers import brief, ev, run
from tests.clocks.policies import CALENDARS, STOPS, policy

POLICY = policy(STOPS)
OPEN = "2026-12-07T10:00:00Z"


def stopped(when: str, reason: str = "third_party", actor: str = "agent-7") -> object:
    return ev("sla_stopped", when, reason=reason, actor=actor)


def test_a_stop_holds_resolution_and_not_first_response() -> None:
    # Stopped 11:00-12:00: resolution due 10:00 + 4h + 1h = 15:00Z; first response, not held,
    # breaches at 11:00Z.
    out = run(
        POLICY,
        ev("opened", OPEN, severity=1),
        ev("sla_stopped", "2026-12-07T11:00:00Z", reason="third_party", actor="agent-7"),
        ev("sla_started", "2026-12-07T12:00:00Z", actor="agent-7"),
        until="2026-12-07T16:00:00Z",
    )
    assert brief(out, "first_response") == [
        ("sla.breached", "2026-12-07T11:00:00Z", "2026-12-07T11:00:00Z")
    ]
    assert brief(out, "resolution")[:1] == [
        ("sla.breached", "2026-12-07T15:00:00Z", "2026-12-07T15:00:00Z")
    ]


def test_a_stop_and_a_pause_that_overlap_hold_the_clock_once() -> None:
    # Paused 10:30-11:30, stopped 11:00-12:00: held 10:30-12:00 (1h30): due 15:30Z.
    out = run(
        POLICY,
        ev("opened", OPEN, severity=1),
        ev("paused", "2026-12-07T10:30:00Z"),
        ev("sla_stopped", "2026-12-07T11:00:00Z", reason="outage", actor="agent-7"),
        ev("resumed", "2026-12-07T11:30:00Z"),
        ev("sla_started", "2026-12-07T12:00:00Z", actor="agent-7"),
        until="2026-12-07T16:00:00Z",
    )
    assert brief(out, "resolution")[:1] == [
        ("sla.breached", "2026-12-07T15:30:00Z", "2026-12-07T15:30:00Z")
    ]


def test_an_overlong_stop_ends_at_the_policys_max_with_a_clear_event() -> None:
    # Stopped at 11:00Z and never started: it ends at 13:00Z (2h); resolution counts again,
    # due 10:00 + 4h + 2h = 16:00Z.
    out = run(
        POLICY,
        ev("opened", OPEN, severity=1),
        ev("sla_stopped", "2026-12-07T11:00:00Z", reason="customer_hold", actor="agent-7"),
        until="2026-12-07T17:00:00Z",
    )
    ended = [r for r in out if r["type"] == "sla.stop_ended"]
    assert [
        (r["metric"], r["due_at"], r["at"], r["reason"], r["actor"], r["stopped_at"], r["cause"])
        for r in ended
    ] == [
        (
            "resolution",
            "2026-12-07T16:00:00Z",
            "2026-12-07T13:00:00Z",
            "customer_hold",
            "agent-7",
            "2026-12-07T11:00:00Z",
            "max_stop",
        )
    ]
    assert ("sla.breached", "2026-12-07T16:00:00Z", "2026-12-07T16:00:00Z") in brief(
        out, "resolution"
    )


def test_a_start_after_the_max_is_rejected_the_stop_has_ended() -> None:
    replayer = Replayer(POLICY)
    for item in (
        ev("opened", OPEN, severity=1),
        ev("sla_stopped", "2026-12-07T11:00:00Z", reason="outage", actor="agent-7"),
    ):
        assert replayer.feed(item)[1] is None
    _, rejected = replayer.feed(ev("sla_started", "2026-12-07T14:00:00Z", actor="agent-7"))
    assert rejected == "the clock is not stopped (no ticket.sla_stopped holds it)"


def test_an_unknown_reason_is_rejected_naming_the_allowed_ones() -> None:
    replayer = Replayer(POLICY)
    replayer.feed(ev("opened", OPEN, severity=1))
    _, rejected = replayer.feed(
        ev("sla_stopped", "2026-12-07T11:00:00Z", reason="coffee", actor="agent-7")
    )
    assert rejected == (
        "field 'reason': 'coffee' is not a stop reason of policy 'follow-the-sun' "
        "(allowed: third_party, customer_hold, outage)"
    )


def test_no_stop_clock_no_stop_and_no_double_stop() -> None:
    plain = policy(CALENDARS + '\n[severity.1.resolution]\ntarget = "4h"\n')
    state = handle(None, ev("opened", OPEN, severity=1), plain).state
    refused = handle(
        state, ev("sla_stopped", "2026-12-07T11:00:00Z", reason="outage", actor="a"), plain
    )
    assert refused.rejected == (
        "policy 'follow-the-sun' has no [stop_clock]: a manual stop is not allowed"
    )
    state = handle(None, ev("opened", OPEN, severity=1, ticket="T2"), POLICY).state
    state = handle(
        state,
        ev("sla_stopped", "2026-12-07T11:00:00Z", ticket="T2", reason="outage", actor="a"),
        POLICY,
    ).state
    again = handle(
        state,
        ev("sla_stopped", "2026-12-07T11:30:00Z", ticket="T2", reason="outage", actor="a"),
        POLICY,
    )
    assert again.rejected == "the clock is already stopped (since 2026-12-07T11:00:00Z)"


def test_a_late_stop_is_folded_in_where_it_belongs() -> None:
    # The breach at 14:00Z fired; a stop 11:00-12:00 delivered afterwards retracts it and the
    # breach comes again at 15:00Z.
    replayer = Replayer(POLICY)
    out = list(replayer.feed(ev("opened", OPEN, severity=1))[0])
    out += replayer.advance(ev("closed", "2026-12-07T14:30:00Z", ticket="x").at)
    for item in (
        ev("sla_stopped", "2026-12-07T11:00:00Z", reason="outage", actor="agent-7"),
        ev("sla_started", "2026-12-07T12:00:00Z", actor="agent-7"),
    ):
        emitted, rejected = replayer.feed(item)
        assert rejected is None
        out += emitted
    out += replayer.advance(ev("closed", "2026-12-07T16:00:00Z", ticket="x").at)
    resolution = [(r["type"], r["due_at"]) for r in map(wire, out) if r["metric"] == "resolution"]
    assert ("sla.retracted", "2026-12-07T14:00:00Z") in resolution
    assert resolution[-2:] == [
        ("sla.breached", "2026-12-07T15:00:00Z"),
        ("customer.notification_required", "2026-12-07T15:00:00Z"),
    ]


def test_a_breach_reason_is_attached_with_whether_it_is_exempt() -> None:
    out = run(
        POLICY,
        ev("opened", OPEN, severity=1),
        ev(
            "breach_reason",
            "2026-12-07T15:00:00Z",
            metric="resolution",
            reason="outage",
            actor="m1",
        ),
        ev(
            "breach_reason",
            "2026-12-07T15:10:00Z",
            metric="first_response",
            reason="agent_error",
            actor="m1",
        ),
        until="2026-12-07T16:00:00Z",
    )
    reasons = [r for r in out if r["type"] == "sla.breach_reason"]
    assert [
        (r["metric"], r["due_at"], r["at"], r["reason"], r["actor"], r["exempt"]) for r in reasons
    ] == [
        ("resolution", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z", "outage", "m1", True),
        (
            "first_response",
            "2026-12-07T11:00:00Z",
            "2026-12-07T15:10:00Z",
            "agent_error",
            "m1",
            False,
        ),
    ]


def test_a_breach_reason_needs_a_breach_and_a_known_code() -> None:
    replayer = Replayer(POLICY)
    replayer.feed(ev("opened", OPEN, severity=1))
    _, early = replayer.feed(
        ev(
            "breach_reason",
            "2026-12-07T10:30:00Z",
            metric="resolution",
            reason="outage",
            actor="m1",
        )
    )
    assert early == "field 'metric': resolution has not breached"
    _, unknown = replayer.feed(
        ev(
            "breach_reason",
            "2026-12-07T15:00:00Z",
            metric="resolution",
            reason="bad_luck",
            actor="m1",
        )
    )
    assert unknown == (
        "field 'reason': 'bad_luck' is not a breach reason of policy 'follow-the-sun' "
        "(allowed: customer_unreachable, outage, agent_error)"
    )
