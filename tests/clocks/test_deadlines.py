"""Deadline targets (issue 24 §2), hand-computed. Warsaw is UTC+1 in December.

Severity 3: first response by 16:00 Warsaw the next business day (Warsaw's calendar, PL
holidays); resolution at the ticket's `agreed_due_at`, otherwise 8h, on the elapsed clock,
with a warning at half the time.
"""

from __future__ import annotations

import pytest

from streams.sla.policy import PolicyError, check_policy
from tests.clocks.helpers import brief, ev, run
from tests.clocks.policies import CALENDARS, DEADLINES, policy

POLICY = policy(DEADLINES)


def test_next_business_day_at_16() -> None:
    # Monday 15:00 Warsaw -> Tuesday 16:00 Warsaw = 15:00Z.
    out = run(
        POLICY, ev("opened", "2026-12-07T14:00:00Z", severity=3), until="2026-12-09T00:00:00Z"
    )
    assert brief(out, "first_response") == [
        ("sla.breached", "2026-12-08T15:00:00Z", "2026-12-08T15:00:00Z")
    ]


def test_next_business_day_skips_the_weekend_and_holidays() -> None:
    # Friday -> Monday 16:00 Warsaw.
    friday = run(
        POLICY, ev("opened", "2026-12-11T10:00:00Z", severity=3), until="2026-12-15T00:00:00Z"
    )
    assert brief(friday, "first_response")[0][1] == "2026-12-14T15:00:00Z"
    # Wednesday 23 December: 24 (Christmas Eve, a Polish holiday since 2025), 25, 26 and the
    # weekend are not business days: Monday 28 December 16:00 Warsaw.
    christmas = run(
        POLICY, ev("opened", "2026-12-23T10:00:00Z", severity=3), until="2026-12-29T00:00:00Z"
    )
    assert brief(christmas, "first_response")[0][1] == "2026-12-28T15:00:00Z"


def test_a_response_before_the_deadline_reports_the_business_time_it_took() -> None:
    # Monday 15:00 -> Tuesday 10:00 Warsaw: 2h Monday + 1h Tuesday.
    out = run(
        POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=3),
        ev("responded", "2026-12-08T09:00:00Z"),
        until="2026-12-09T00:00:00Z",
    )
    met = [r for r in out if r["type"] == "sla.met" and r["metric"] == "first_response"]
    assert [(r["due_at"], r["took_seconds"]) for r in met] == [("2026-12-08T15:00:00Z", 3 * 3600.0)]


AGREED = {"agreed_due_at": "2026-12-09T12:00:00Z"}


def test_from_attribute_is_due_at_the_agreed_instant() -> None:
    out = run(
        POLICY,
        ev("opened", "2026-12-07T12:00:00Z", severity=3, attributes=AGREED),
        until="2026-12-10T00:00:00Z",
    )
    # 48h agreed: the warning at half of it (a warning's due_at is its own time).
    assert brief(out, "resolution")[:3] == [
        ("sla.warning", "2026-12-08T12:00:00Z", "2026-12-08T12:00:00Z"),
        ("sla.breached", "2026-12-09T12:00:00Z", "2026-12-09T12:00:00Z"),
        ("customer.notification_required", "2026-12-09T12:00:00Z", "2026-12-09T12:00:00Z"),
    ]


def test_absent_agreed_date_takes_otherwise() -> None:
    out = run(
        POLICY, ev("opened", "2026-12-07T12:00:00Z", severity=3), until="2026-12-08T00:00:00Z"
    )
    assert brief(out, "resolution")[:2] == [
        ("sla.warning", "2026-12-07T16:00:00Z", "2026-12-07T16:00:00Z"),
        ("sla.breached", "2026-12-07T20:00:00Z", "2026-12-07T20:00:00Z"),
    ]


def test_unreadable_agreed_date_takes_otherwise() -> None:
    opened = ev("opened", "2026-12-07T12:00:00Z", severity=3, attributes={"agreed_due_at": "soon"})
    out = run(POLICY, opened, until="2026-12-08T00:00:00Z")
    assert brief(out, "resolution")[1] == (
        "sla.breached",
        "2026-12-07T20:00:00Z",
        "2026-12-07T20:00:00Z",
    )


def test_agreed_date_already_past_breaches_at_the_start() -> None:
    past = {"agreed_due_at": "2026-12-06T12:00:00Z"}
    out = run(
        POLICY,
        ev("opened", "2026-12-07T12:00:00Z", severity=3, attributes=past),
        until="2026-12-07T13:00:00Z",
    )
    assert brief(out, "resolution")[:2] == [
        ("sla.warning", "2026-12-07T12:00:00Z", "2026-12-07T12:00:00Z"),
        ("sla.breached", "2026-12-07T12:00:00Z", "2026-12-07T12:00:00Z"),
    ]


def test_a_changed_agreed_date_moves_the_deadline() -> None:
    # Agreed 48h out, then at 13:00Z moved to 14:00Z: 2h from the start, the warning at
    # 13:00Z (due at the change: fires then), the breach at 14:00Z.
    out = run(
        POLICY,
        ev("opened", "2026-12-07T12:00:00Z", severity=3, attributes=AGREED),
        ev("updated", "2026-12-07T13:00:00Z", attributes={"agreed_due_at": "2026-12-07T14:00:00Z"}),
        until="2026-12-07T15:00:00Z",
    )
    assert brief(out, "resolution")[:2] == [
        ("sla.warning", "2026-12-07T13:00:00Z", "2026-12-07T13:00:00Z"),
        ("sla.breached", "2026-12-07T14:00:00Z", "2026-12-07T14:00:00Z"),
    ]


def test_an_earlier_agreed_date_already_passed_fires_at_the_change() -> None:
    # At 15:00Z the agreed date becomes 14:00Z: overdue, the breach fires at the change.
    out = run(
        POLICY,
        ev("opened", "2026-12-07T12:00:00Z", severity=3, attributes=AGREED),
        ev("updated", "2026-12-07T15:00:00Z", attributes={"agreed_due_at": "2026-12-07T14:00:00Z"}),
        until="2026-12-07T16:00:00Z",
    )
    assert ("sla.breached", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z") in brief(
        out, "resolution"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ('{ from_attribute = "agreed_due_at" }', "from_attribute needs otherwise"),
        ('{ next_business_day_at = "25:00" }', "invalid time"),
        ("{ }", "give one of next_business_day_at or from_attribute"),
    ],
)
def test_bad_deadline_targets_are_named(target: str, message: str) -> None:
    text = CALENDARS + f"\n[severity.1.resolution]\ntarget = {target}\n"
    with pytest.raises(PolicyError, match=message):
        policy(text)


def test_policy_check_reads_next_business_day_at_as_an_hour_not_a_duration() -> None:
    # `policy check` once warned that "16:00 the next business day" was "0.00 business days";
    # the resolution (8h elapsed, no days) gives no warning either.
    warnings = check_policy(POLICY)
    assert not [w for w in warnings if "business days" in w], warnings
