"""The SLA rules, hand-computed from the Clevr Help Desk SLA (shared/seed).

Calendar: Mon-Fri 08:00-18:30 America/Toronto, Ontario holidays closed; 1bd = 10h30.
2026-11-27 is a Friday; 2026-11-30 a Monday.
"""

from __future__ import annotations

from typing import Any

import pytest

from events.sla_records import wire
from streams.sla import state_codec
from streams.sla.fold import advance, handle
from streams.sla.policy import load_policy, parse_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from streams.sla.state import TicketState
from tests.core.helpers import brief, event, replay, toronto, utc

POLICY = load_policy()


def run(*events: Any, until: str | None = None, policy: Policy = POLICY) -> list[dict[str, Any]]:
    return replay(events, policy, until)


def test_seed_example_sev2_friday_evening() -> None:
    """Sev2 reported Friday 17:00: first response due Monday 10:30, escalated Saturday 01:00."""
    out = run(event("opened", "2026-11-27 17:00", severity=2), until="2026-11-30 12:00")
    assert brief(out) == [
        ("ticket.escalated", "escalation", utc("2026-11-28 01:00"), utc("2026-11-28 01:00")),
        ("sla.breached", "first_response", utc("2026-11-30 10:30"), utc("2026-11-30 10:30")),
    ]
    assert out[0]["level"] == 1 and out[0]["to"] == "senior-technical-staff"


def test_sev1_warning_breach_and_customer_notification() -> None:
    """Sev1 Monday 09:00: response and escalation 10:00, warning at half of 1bd, breach next day."""
    out = run(event("opened", "2026-11-30 09:00", severity=1), until="2026-12-02 18:00")
    assert brief(out) == [
        ("sla.breached", "first_response", utc("2026-11-30 10:00"), utc("2026-11-30 10:00")),
        ("ticket.escalated", "escalation", utc("2026-11-30 10:00"), utc("2026-11-30 10:00")),
        ("sla.warning", "resolution", utc("2026-11-30 14:15"), utc("2026-11-30 14:15")),
        ("sla.breached", "resolution", utc("2026-12-01 09:00"), utc("2026-12-01 09:00")),
        (
            "customer.notification_required",
            "resolution",
            utc("2026-12-01 09:00"),
            utc("2026-12-01 09:00"),
        ),
    ]
    assert out[2]["threshold"] == 0.5
    # eta: the breached deadline plus one more business day
    assert out[4]["eta"] == utc("2026-12-02 09:00")


def test_response_at_the_deadline_is_in_time() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("responded", "2026-11-30 13:00"),
        until="2026-11-30 13:30",
    )
    assert brief(out) == [
        ("sla.met", "first_response", utc("2026-11-30 13:00"), utc("2026-11-30 13:00"))
    ]
    assert out[0]["took_seconds"] == 4 * 3600 and out[0]["clock"] == "business"


def test_late_response_breaches_and_is_not_met() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("responded", "2026-11-30 13:00:01"),
    )
    assert [r["type"] for r in out] == ["sla.breached"]


def test_weekend_report_starts_counting_monday_morning() -> None:
    out = run(event("opened", "2026-11-28 10:00", severity=2), until="2026-11-30 12:30")
    assert (
        "sla.breached",
        "first_response",
        utc("2026-11-30 12:00"),
        utc("2026-11-30 12:00"),
    ) in brief(out)


def test_holidays_are_closed() -> None:
    """Christmas Eve 17:00: Christmas, the weekend and Boxing Day observed (Mon 28th) are closed."""
    out = run(event("opened", "2026-12-24 17:00", severity=2), until="2026-12-29 12:00")
    assert brief(out) == [
        ("ticket.escalated", "escalation", utc("2026-12-25 01:00"), utc("2026-12-25 01:00")),
        ("sla.breached", "first_response", utc("2026-12-29 10:30"), utc("2026-12-29 10:30")),
    ]


def test_pause_moves_pausable_deadlines_by_paused_business_time() -> None:
    """Resolution (pausable) moves by the paused span; first response (not pausable) does not."""
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("paused", "2026-11-30 10:00"),
        event("resumed", "2026-11-30 14:00"),
        until="2026-12-01 14:00",
    )
    assert brief(out) == [
        ("sla.breached", "first_response", utc("2026-11-30 13:00"), utc("2026-11-30 13:00")),
        ("ticket.escalated", "escalation", utc("2026-11-30 17:00"), utc("2026-11-30 17:00")),
        ("sla.breached", "resolution", utc("2026-12-01 13:00"), utc("2026-12-01 13:00")),
        (
            "customer.notification_required",
            "resolution",
            utc("2026-12-01 13:00"),
            utc("2026-12-01 13:00"),
        ),
    ]


def test_pause_over_a_weekend_counts_only_business_time_paused() -> None:
    """Paused Fri 17:00 to Mon 09:00 is 2h30 of business time: resolution moves by 2h30."""
    out = run(
        event("opened", "2026-11-27 09:00", severity=2),
        event("responded", "2026-11-27 09:30"),
        event("paused", "2026-11-27 17:00"),
        event("resumed", "2026-11-30 09:00"),
        until="2026-12-01 18:00",
    )
    # Unpaused due: Fri 09:00 + 10h30 = Mon 09:00; +2h30 -> Mon 11:30.
    assert (
        "sla.breached",
        "resolution",
        utc("2026-11-30 11:30"),
        utc("2026-11-30 11:30"),
    ) in brief(out)


def test_paused_clock_does_not_fire_while_paused() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("responded", "2026-11-30 09:10"),
        event("paused", "2026-11-30 10:00"),
        until="2026-12-04 18:00",
    )
    assert [r["type"] for r in out if r["metric"] == "resolution"] == []


def test_severity_change_recomputes_from_report_and_fires_overdue_at_change() -> None:
    """Sev3 at 09:00 raised to Sev1 at 11:00: response (due 10:00) and escalation are overdue."""
    out = run(
        event("opened", "2026-11-30 09:00", severity=3),
        event("severity_changed", "2026-11-30 11:00", severity=1),
        until="2026-11-30 15:00",
    )
    assert brief(out) == [
        ("sla.breached", "first_response", utc("2026-11-30 10:00"), utc("2026-11-30 11:00")),
        ("ticket.escalated", "escalation", utc("2026-11-30 10:00"), utc("2026-11-30 11:00")),
        ("sla.warning", "resolution", utc("2026-11-30 14:15"), utc("2026-11-30 14:15")),
    ]
    assert all(r["severity"] == 1 for r in out)


def test_severity_lowered_pushes_deadlines_out() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=1),
        event("severity_changed", "2026-11-30 09:30", severity=3),
        until="2026-11-30 18:00",
    )
    assert out == []


def test_resolution_met_cancels_escalation_and_stops_first_response() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("resolved", "2026-11-30 12:00"),
        until="2026-12-31 12:00",
    )
    assert brief(out) == [
        ("sla.met", "resolution", utc("2026-12-01 09:00"), utc("2026-11-30 12:00"))
    ]
    assert out[0]["took_seconds"] == 3 * 3600


def test_reopen_resumes_resolution_clock_and_rearms_escalation() -> None:
    """Resolved after 3h, reopened next morning: 7h30 left; escalation (8h after report) overdue."""
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("responded", "2026-11-30 09:30"),
        event("resolved", "2026-11-30 12:00"),
        event("reopened", "2026-12-01 08:00"),
        until="2026-12-01 18:00",
    )
    assert brief(out) == [
        ("sla.met", "first_response", utc("2026-11-30 13:00"), utc("2026-11-30 09:30")),
        ("sla.met", "resolution", utc("2026-12-01 09:00"), utc("2026-11-30 12:00")),
        ("ticket.escalated", "escalation", utc("2026-11-30 17:00"), utc("2026-12-01 08:00")),
        ("sla.breached", "resolution", utc("2026-12-01 15:30"), utc("2026-12-01 15:30")),
        (
            "customer.notification_required",
            "resolution",
            utc("2026-12-01 15:30"),
            utc("2026-12-01 15:30"),
        ),
    ]
    assert [r["cycle"] for r in out] == [0, 0, 1, 1, 1]


def test_timers_fire_at_most_once_across_reopen() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("resolved", "2026-12-02 12:00"),  # after the breach
        event("reopened", "2026-12-02 13:00"),
        event("resolved", "2026-12-02 14:00"),
        until="2026-12-09 12:00",
    )
    kinds = [(r["type"], r["metric"]) for r in out]
    assert kinds.count(("sla.breached", "resolution")) == 1
    assert kinds.count(("ticket.escalated", "escalation")) == 1
    assert ("sla.met", "resolution") not in kinds  # breached before, never met
    assert len({r["event_id"] for r in out}) == len(out)


def test_closed_ticket_is_final_and_remembered() -> None:
    replayer = Replayer(POLICY)
    replayer.feed(event("opened", "2026-11-30 09:00", severity=2, event_id="o1"))
    replayer.feed(event("closed", "2026-11-30 10:00", event_id="c1"))
    _, rejected = replayer.feed(event("reopened", "2026-11-30 11:00"))
    assert rejected is not None and "closed" in rejected
    _, rejected = replayer.feed(event("closed", "2026-11-30 10:00", event_id="c1"))
    assert rejected is None and replayer.counts.duplicates == 1
    replayer.advance(toronto("2026-12-31 00:00"))
    assert replayer.tickets == {}  # forgotten after the retention period: memory stays bounded


def test_duplicates_are_ignored() -> None:
    opened = event("opened", "2026-11-30 09:00", severity=2, event_id="dup-1")
    first = handle(None, opened, POLICY)
    assert first.state is not None
    again = handle(first.state, opened, POLICY)
    assert again.duplicate and again.emitted == [] and again.rejected is None


def test_ids_are_compared_exactly_whitespace_included() -> None:
    """docs/contract.md: ids are opaque; " T1" is another ticket than "T1", "e1 " another event."""
    opened = event("opened", "2026-11-30 09:00", ticket="T1", severity=2, event_id="e1")
    assert (opened.ticket_id, opened.event_id) == ("T1", "e1")
    state = handle(None, opened, POLICY).state
    padded = event("responded", "2026-11-30 09:30", ticket=" T1", event_id="e1 ")
    assert (padded.ticket_id, padded.event_id) == (" T1", "e1 ")
    waiting = handle(None, padded, POLICY)  # parked: " T1" has no ticket.opened yet
    assert waiting.parked and waiting.state is not None and waiting.state.ticket_id == " T1"
    resent = event("assigned", "2026-11-30 09:40", ticket="T1", event_id="e1 ")
    assert not handle(state, resent, POLICY).duplicate


@pytest.mark.parametrize(
    ("kind", "fields", "reason"),
    [
        ("responded", {}, "unknown ticket"),
        ("resumed", {}, "unknown ticket"),
    ],
)
def test_events_for_unknown_tickets_are_rejected(
    kind: str, fields: dict[str, Any], reason: str
) -> None:
    """Parked in a placeholder (its open may still come), rejected when the watermark passes
    its time; the placeholder then goes."""
    outcome = handle(None, event(kind, "2026-11-30 09:00", **fields), POLICY)
    assert outcome.parked and outcome.rejected is None and outcome.state is not None
    assert (
        outcome.state.status == "unopened" and outcome.state.next_due == outcome.state.last_event_at
    )
    assert advance(outcome.state, toronto("2026-11-30 08:59"), POLICY).expired == []
    gone = advance(outcome.state, toronto("2026-11-30 09:00"), POLICY)
    assert gone.state is None and len(gone.expired) == 1 and reason in gone.expired[0][1]


def test_events_that_cannot_apply_are_rejected_with_a_reason() -> None:
    state = handle(None, event("opened", "2026-11-30 09:00", severity=2), POLICY).state
    assert state is not None
    for kind, why in [("resumed", "cannot resume an open"), ("reopened", "cannot reopen an open")]:
        # parked (an earlier pause or resolve may still come), rejected once the watermark passes
        trial = state.copy()
        outcome = handle(trial, event(kind, "2026-11-30 09:30"), POLICY)
        assert outcome.parked and outcome.rejected is None and outcome.emitted == []
        expired = advance(trial, toronto("2026-11-30 09:30"), POLICY).expired
        assert len(expired) == 1 and expired[0][1].startswith(why)
    outcome = handle(state, event("opened", "2026-11-30 09:30", severity=1), POLICY)
    assert outcome.rejected is not None and "already open" in outcome.rejected


def test_severity_missing_from_policy_is_rejected() -> None:
    policy = parse_policy(
        """
        name = "tiny"
        [calendar]
        timezone = "UTC"
        open = "09:00"
        close = "17:00"
        weekdays = ["mon"]
        [severity.1]
        first_response = { target = "1h" }
        """,
        "tiny.toml",
    )
    outcome = handle(None, event("opened", "2026-11-30 09:00", severity=2), policy)
    assert outcome.rejected is not None and "field 'severity'" in outcome.rejected


def test_out_of_order_event_applies_at_its_own_time() -> None:
    """A reply that arrives after a later event of its ticket counts at its own time."""
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("assigned", "2026-11-30 12:00", assignee="a1"),
        event("responded", "2026-11-30 10:00"),
    )
    assert brief(out) == [
        ("sla.met", "first_response", utc("2026-11-30 13:00"), utc("2026-11-30 10:00"))
    ]
    assert out[0]["took_seconds"] == 3600


def test_state_survives_a_json_round_trip_mid_stream() -> None:
    """The stream processor stores states as JSON: a restored state must behave the same."""
    import orjson

    events = [
        event("opened", "2026-11-30 09:00", severity=1),
        event("paused", "2026-11-30 09:20"),
        event("resumed", "2026-11-30 11:00"),
        event("responded", "2026-11-30 11:30"),
    ]
    direct: TicketState | None = None
    restored: TicketState | None = None
    out_direct: list[dict[str, Any]] = []
    out_restored: list[dict[str, Any]] = []
    for ev in events:
        a = handle(direct, ev, POLICY)
        direct = a.state
        out_direct += a.emitted
        b = handle(restored, ev, POLICY)
        assert b.state is not None
        restored = state_codec.from_obj(orjson.loads(orjson.dumps(state_codec.to_obj(b.state))))
        out_restored += b.emitted
    assert direct is not None and restored is not None
    out_direct += advance(direct, toronto("2026-12-05 00:00"), POLICY).emitted
    out_restored += advance(restored, toronto("2026-12-05 00:00"), POLICY).emitted
    assert out_direct == out_restored and out_direct


def test_policy_change_is_recorded_and_adopted() -> None:
    """A worker restarted with a new policy version recomputes a ticket's unfired timers."""
    state = handle(None, event("opened", "2026-11-30 09:00", severity=2), POLICY).state
    assert state is not None and state.policy_version == POLICY.version
    stricter = parse_policy(
        _default_text().replace('target = "4h"', 'target = "2h"'),
        "stricter.toml",
    )
    assert stricter.version != POLICY.version
    out = [wire(r) for r in advance(state, toronto("2026-11-30 12:00"), stricter).emitted]
    assert brief(out) == [
        ("sla.breached", "first_response", utc("2026-11-30 11:00"), utc("2026-11-30 11:00"))
    ]
    assert out[0]["policy"]["version"] == stricter.version
    assert state.policy_version == stricter.version


def _default_text() -> str:
    from importlib import resources

    return resources.files("streams.sla").joinpath("default_policy.toml").read_text()


def test_event_ids_are_deterministic_and_free_text_never_leaves() -> None:
    first = run(
        event("opened", "2026-11-30 09:00", severity=1, title="secret title"),
        until="2026-12-02 00:00",
    )
    second = run(
        event("opened", "2026-11-30 09:00", severity=1, title="another title"),
        until="2026-12-02 00:00",
    )
    assert [r["event_id"] for r in first] == [r["event_id"] for r in second]
    assert "title" not in str(first) and "secret" not in str(first)


def test_event_ids_are_the_documented_uuid5() -> None:
    """docs/contract.md: event_id = UUIDv5 of (ticket id, report time, metric, rule, cycle)."""
    import uuid

    from events.ids import ID_NAMESPACE, sla_event_id

    for args in [("T-1", 0, "resolution", "breached", 0), ("é/✓", 17, "escalation", "level:2", 3)]:
        name = "\x1f".join(str(part) for part in args)
        assert sla_event_id(*args) == str(uuid.uuid5(ID_NAMESPACE, name))  # type: ignore[arg-type]
