"""Calendars chosen per ticket (issue 24 §1), with the issue's hand-computed values.

Monday 2026-12-07: Warsaw is UTC+1 (CET), Toronto UTC-5 (EST). Both open 09:00-17:00.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.sla.policy import PolicyError
from tests.clocks.helpers import ev, run
from tests.clocks.policies import GROUPS, REGION, policy


def first_response(out: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (r["type"], r["due_at"], r["policy"]["calendar"])
        for r in out
        if r["metric"] == "first_response"
    ]


GROUPS_POLICY = policy(GROUPS)


def test_moved_from_emea_to_amer_after_one_hour_counts_the_rest_in_toronto() -> None:
    # 14:00Z = 15:00 Warsaw; 1h counted on Warsaw's calendar until the move at 15:00Z
    # (10:00 Toronto); the 3h left count on Toronto's: due 13:00 Toronto = 18:00Z.
    out = run(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, group="emea"),
        ev("assigned", "2026-12-07T15:00:00Z", group="amer"),
        until="2026-12-08T00:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-07T18:00:00Z", "toronto")]


def test_staying_in_emea_is_due_tuesday_11_warsaw() -> None:
    # 2h to Warsaw's 17:00 close (16:00Z), 2h from Tuesday 09:00 (08:00Z): 10:00Z.
    out = run(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, group="emea"),
        until="2026-12-08T12:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-08T10:00:00Z", "warsaw")]


def test_a_move_back_keeps_each_stretch_on_its_own_calendar() -> None:
    # 14:00Z-15:00Z Warsaw (1h), 15:00Z-17:00Z Toronto (10:00-12:00, 2h), back to emea at
    # 17:00Z = 18:00 Warsaw (closed): the 1h left from Tuesday 09:00 Warsaw (08:00Z): 09:00Z.
    # (All of it on Warsaw's calendar would be 10:00Z.)
    out = run(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, group="emea"),
        ev("assigned", "2026-12-07T15:00:00Z", group="amer"),
        ev("assigned", "2026-12-07T17:00:00Z", group="emea"),
        until="2026-12-08T12:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-08T09:00:00Z", "warsaw")]


def test_time_before_the_move_keeps_its_count() -> None:
    # Opened 15:30Z (16:30 Warsaw): 30 min to Warsaw's close (16:00Z). Moved to amer at
    # 16:30Z (11:30 Toronto): the 3h30 left end at 15:00 Toronto = 20:00Z. (Counted on
    # Toronto's calendar from the open it would be 19:30Z.)
    out = run(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T15:30:00Z", severity=2, group="emea"),
        ev("assigned", "2026-12-07T16:30:00Z", group="amer"),
        until="2026-12-08T00:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-07T20:00:00Z", "toronto")]


def test_the_response_reports_the_time_counted_on_both_calendars() -> None:
    out = run(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, group="emea"),
        ev("assigned", "2026-12-07T15:00:00Z", group="amer"),
        ev("responded", "2026-12-07T17:30:00Z"),  # 12:30 Toronto: 1h + 2h30
        until="2026-12-08T00:00:00Z",
    )
    met = [r for r in out if r["type"] == "sla.met" and r["metric"] == "first_response"]
    assert [(r["took_seconds"], r["due_at"]) for r in met] == [(3.5 * 3600, "2026-12-07T18:00:00Z")]


def test_an_unmapped_group_counts_on_the_policy_default() -> None:
    # `support` is not in [group_calendars]: Toronto (the policy's calendar). 14:00Z = 09:00
    # Toronto: due 13:00 Toronto = 18:00Z.
    out = run(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, group="support"),
        until="2026-12-08T00:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-07T18:00:00Z", "toronto")]


REGION_POLICY = policy(REGION)


def test_an_attribute_names_a_calendar_or_an_iana_zone() -> None:
    # region=toronto: opened 14:00Z = 09:00 Toronto, due 13:00 Toronto = 18:00Z.
    named = run(
        REGION_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, attributes={"region": "toronto"}),
        until="2026-12-08T00:00:00Z",
    )
    assert first_response(named) == [("sla.breached", "2026-12-07T18:00:00Z", "toronto")]
    # region=Asia/Tokyo (UTC+9): the default calendar's hours (Toronto's, 09:00-17:00) in
    # Tokyo. 14:00Z = 23:00 Tokyo Monday: 4h from Tuesday 09:00 Tokyo = 13:00 Tokyo = 04:00Z.
    zoned = run(
        REGION_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, attributes={"region": "Asia/Tokyo"}),
        until="2026-12-09T00:00:00Z",
    )
    assert first_response(zoned) == [("sla.breached", "2026-12-08T04:00:00Z", "Asia/Tokyo")]


def test_no_attribute_counts_on_the_metrics_calendar_default() -> None:
    # calendar_default = warsaw: as the ticket that stayed in emea.
    out = run(
        REGION_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2),
        until="2026-12-09T00:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-08T10:00:00Z", "warsaw")]


def test_an_attribute_change_moves_the_deadline() -> None:
    # Warsaw 1h (14:00Z-15:00Z), then region=toronto: 3h from 10:00 Toronto = 18:00Z.
    out = run(
        REGION_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2),
        ev("updated", "2026-12-07T15:00:00Z", attributes={"region": "toronto"}),
        until="2026-12-09T00:00:00Z",
    )
    assert first_response(out) == [("sla.breached", "2026-12-07T18:00:00Z", "toronto")]


def test_group_calendars_name_known_calendars() -> None:
    with pytest.raises(PolicyError, match=r"group_calendars\.apac: 'tokyo' is not among"):
        policy(GROUPS.replace('amer = "toronto"', 'apac = "tokyo"'))
