"""Several agreements on one ticket (issue #23): the customer SLA and OLAs, group ownership
cycles, and who held the ticket while each metric's clock ran. Values computed by hand."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.sla import state_codec
from streams.sla.policy import parse_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from tests.core.helpers import brief, event, payload, replay, toronto

WEEK = """
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]
"""

ISSUE = f"""
name = "acme"
[calendar]
timezone = "America/Toronto"
[calendar.hours]
{WEEK}
[severity.2]
resolution = {{ target = "8h" }}

[[olas]]
name = "l1"
match = {{ group = "l1" }}
group_ownership = {{ target = "2h" }}

[[olas]]
name = "l2"
match = {{ group = "l2" }}
group_ownership = {{ target = "4h"{{pausable}} }}
"""


def issue_policy(pausable: bool = False) -> Policy:
    text = ISSUE.replace("{pausable}", ", pausable = true" if pausable else "")
    return parse_policy(text, "issue.toml")


def ola(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("agreement") == {"kind": "ola", "name": name}]


def held(record: dict[str, Any]) -> list[tuple[str | None, str | None, float]]:
    return [(h["group"], h["assignee"], h["seconds"]) for h in record["attribution"]]


def test_the_issues_ticket_l1_then_l2_then_resolved() -> None:
    """Opened Mon 2026-12-07 09:00 EST in l1, moved to l2 at 10:30, resolved at 15:00."""
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1"),
            event("assigned", "2026-12-07 10:30", group="l2"),
            event("resolved", "2026-12-07 15:00"),
        ),
        issue_policy(),
        "2026-12-09 12:00",
    )
    assert brief(out) == [
        ("sla.met", "group_ownership", "2026-12-07T16:00:00Z", "2026-12-07T15:30:00Z"),
        ("sla.breached", "group_ownership", "2026-12-07T19:30:00Z", "2026-12-07T19:30:00Z"),
        ("sla.met", "resolution", "2026-12-07T22:00:00Z", "2026-12-07T20:00:00Z"),
        ("sla.stopped", "group_ownership", "2026-12-07T19:30:00Z", "2026-12-07T20:00:00Z"),
    ]
    l1_met, l2_breached, resolution, l2_stopped = out
    assert l1_met["agreement"] == {"kind": "ola", "name": "l1"}
    assert (l1_met["took_seconds"], l1_met["round"], l1_met["ownership_group"]) == (5400, 1, "l1")
    assert l2_breached["agreement"] == {"kind": "ola", "name": "l2"}
    assert (l2_breached["round"], l2_breached["ownership_group"]) == (1, "l2")
    assert held(l2_breached) == [("l2", None, 14400)]  # its 4h, up to the breach
    assert (l2_stopped["took_seconds"], l2_stopped["ownership_group"]) == (16200, "l2")  # 4h30
    assert held(l2_stopped) == [("l2", None, 16200)]
    assert resolution["agreement"] == {"kind": "sla", "name": "acme"}
    assert resolution["took_seconds"] == 21600
    assert held(resolution) == [("l1", None, 5400), ("l2", None, 16200)]
    assert len({r["event_id"] for r in out}) == 4


def test_a_reopen_starts_a_new_cycle_with_its_own_ids() -> None:
    """In l2 from Mon 09:00, resolved 10:00 (met: 1h of 4h, due 13:00 EST), reopened 11:00:
    cycle 2 runs from 11:00 (due 15:00 EST = 20:00Z), breaches, and ends at the resolve at
    16:00 after 5h held. The customer's resolution: 1h + 5h = 6h of 8h, met."""
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l2"),
            event("resolved", "2026-12-07 10:00"),
            event("reopened", "2026-12-07 11:00"),
            event("resolved", "2026-12-07 16:00"),
        ),
        issue_policy(),
        "2026-12-09 12:00",
    )
    l2 = ola(out, "l2")
    assert brief(l2) == [
        ("sla.met", "group_ownership", "2026-12-07T18:00:00Z", "2026-12-07T15:00:00Z"),
        ("sla.breached", "group_ownership", "2026-12-07T20:00:00Z", "2026-12-07T20:00:00Z"),
        ("sla.stopped", "group_ownership", "2026-12-07T20:00:00Z", "2026-12-07T21:00:00Z"),
    ]
    assert [r["round"] for r in l2] == [1, 2, 2]
    assert [r["took_seconds"] for r in l2 if "took_seconds" in r] == [3600, 18000]
    assert [r["cycle"] for r in l2] == [0, 1, 1]
    assert len({r["event_id"] for r in out}) == len(out)
    met = [r for r in out if r["metric"] == "resolution"]
    assert [(r["type"], r["took_seconds"]) for r in met] == [("sla.met", 3600), ("sla.met", 21600)]
    assert held(met[1]) == [("l2", None, 21600)]


def test_a_pause_while_in_l2_stops_its_pausable_clock() -> None:
    """l1 Mon 09:00-10:30 (met, 5,400 s); l2 from 10:30, paused 11:00-13:00: 30m, then 3h30
    from 13:00, breached at 16:30 EST (21:30Z); resolved Tue 09:30: held 30m + 4h + 30m =
    5h. The customer's resolution is not pausable: 8h by Mon 17:00 (22:00Z), breached, with
    l1 5,400 s and l2 6h30 (10:30-17:00) of its counted time."""
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1"),
            event("assigned", "2026-12-07 10:30", group="l2"),
            event("paused", "2026-12-07 11:00"),
            event("resumed", "2026-12-07 13:00"),
            event("resolved", "2026-12-08 09:30"),
        ),
        issue_policy(pausable=True),
        "2026-12-09 12:00",
    )
    l2 = ola(out, "l2")
    assert brief(l2) == [
        ("sla.breached", "group_ownership", "2026-12-07T21:30:00Z", "2026-12-07T21:30:00Z"),
        ("sla.stopped", "group_ownership", "2026-12-07T21:30:00Z", "2026-12-08T14:30:00Z"),
    ]
    assert l2[1]["took_seconds"] == 18000
    assert held(l2[0]) == [("l2", None, 14400)]
    breach = next(r for r in out if r["type"] == "sla.breached" and r["metric"] == "resolution")
    assert breach["due_at"] == "2026-12-07T22:00:00Z"
    assert held(breach) == [("l1", None, 5400), ("l2", None, 23400)]


def test_a_move_back_to_l1_is_l1s_second_cycle() -> None:
    """l1 (ana) 09:00-10:00, l2 (bo) 10:00-11:00, l1 (ana) again from 11:00: due 13:00 EST
    (18:00Z), breached, stopped at the resolve at 14:00 after 3h. The customer's resolution
    took 5h: ana in l1 1h + 3h, bo in l2 1h."""
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1", assignee="ana"),
            event("assigned", "2026-12-07 10:00", group="l2", assignee="bo"),
            event("assigned", "2026-12-07 11:00", group="l1", assignee="ana"),
            event("resolved", "2026-12-07 14:00"),
        ),
        issue_policy(),
        "2026-12-09 12:00",
    )
    l1, l2 = ola(out, "l1"), ola(out, "l2")
    assert brief(l1) == [
        ("sla.met", "group_ownership", "2026-12-07T16:00:00Z", "2026-12-07T15:00:00Z"),
        ("sla.breached", "group_ownership", "2026-12-07T18:00:00Z", "2026-12-07T18:00:00Z"),
        ("sla.stopped", "group_ownership", "2026-12-07T18:00:00Z", "2026-12-07T19:00:00Z"),
    ]
    assert [r["round"] for r in l1] == [1, 2, 2]
    assert [r["took_seconds"] for r in l1 if "took_seconds" in r] == [3600, 10800]
    assert brief(l2) == [
        ("sla.met", "group_ownership", "2026-12-07T19:00:00Z", "2026-12-07T16:00:00Z"),
    ]
    assert held(l2[0]) == [("l2", "bo", 3600)]
    resolution = next(r for r in out if r["metric"] == "resolution")
    assert resolution["took_seconds"] == 18000
    assert held(resolution) == [("l1", "ana", 14400), ("l2", "bo", 3600)]


TWO_CALENDARS = f"""
name = "acme"
calendar = "toronto"
[calendars.toronto]
timezone = "America/Toronto"
[calendars.toronto.hours]
{WEEK}
[calendars.always]
timezone = "America/Toronto"
hours = "24x7"
[severity.2]
resolution = {{ target = "8h" }}

[[olas]]
name = "l3"
match = {{ group = "l3" }}
group_ownership = {{ target = "2h" }}

[[olas]]
name = "vendor"
calendar = "always"
match = {{ group = "l3" }}
group_ownership = {{ target = "4h", warn_at = [0.5] }}
"""


def test_two_olas_on_different_calendars_hold_at_once() -> None:
    """Opened Mon 16:00 EST in l3. `l3` on Toronto hours: 1h Mon, 1h Tue, due Tue 10:00 EST
    (15:00Z); `vendor` on 24x7: warned at 18:00 EST, due 20:00 EST (Tue 01:00Z). Resolved
    Tue 09:30: l3 met after 1h30, vendor stopped after 17h30 held (63,000 s)."""
    out = replay(
        (
            event("opened", "2026-12-07 16:00", severity=2, group="l3"),
            event("resolved", "2026-12-08 09:30"),
        ),
        parse_policy(TWO_CALENDARS, "two.toml"),
        "2026-12-09 12:00",
    )
    assert brief(ola(out, "vendor")) == [
        ("sla.warning", "group_ownership", "2026-12-07T23:00:00Z", "2026-12-07T23:00:00Z"),
        ("sla.breached", "group_ownership", "2026-12-08T01:00:00Z", "2026-12-08T01:00:00Z"),
        ("sla.stopped", "group_ownership", "2026-12-08T01:00:00Z", "2026-12-08T14:30:00Z"),
    ]
    assert [r["policy"]["calendar"] for r in ola(out, "vendor")] == ["always"] * 3
    assert ola(out, "vendor")[-1]["took_seconds"] == 63000
    assert held(ola(out, "vendor")[-1]) == [("l3", None, 63000)]
    assert brief(ola(out, "l3")) == [
        ("sla.met", "group_ownership", "2026-12-08T15:00:00Z", "2026-12-08T14:30:00Z"),
    ]
    assert ola(out, "l3")[0]["took_seconds"] == 5400
    assert ola(out, "l3")[0]["policy"]["calendar"] == "toronto"
    resolution = next(r for r in out if r["metric"] == "resolution")
    assert (resolution["took_seconds"], held(resolution)) == (5400, [("l3", None, 5400)])


def test_an_ola_attaches_when_its_match_starts_to_hold_and_detaches_when_it_stops() -> None:
    """No group at the open: no cycle. Assigned to `billing` (no OLA) at 10:00, to l2 at
    11:00: l2's cycle from 11:00; the ticket's group cleared at 12:00: the cycle ends, met."""
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2),
            event("assigned", "2026-12-07 10:00", group="billing"),
            event("assigned", "2026-12-07 11:00", group="l2"),
            event("assigned", "2026-12-07 12:00"),
        ),
        issue_policy(),
        "2026-12-07 16:59",
    )
    assert brief(out) == [
        ("sla.met", "group_ownership", "2026-12-07T20:00:00Z", "2026-12-07T17:00:00Z"),
    ]
    assert out[0]["took_seconds"] == 3600


def test_the_state_keeps_cycles_and_holders_in_format_6_and_reads_them_back() -> None:
    replayer = Replayer(issue_policy())
    for ev in (
        event("opened", "2026-12-07 09:00", severity=2, group="l1", ticket="S"),
        event("assigned", "2026-12-07 10:30", group="l2", ticket="S"),
    ):
        replayer.feed(ev)
    state = replayer.tickets["S"]
    obj = state_codec.to_obj(state)
    assert obj["format"] == 6
    assert obj["cycles"] == [
        ["l1", 1, "l1", toronto("2026-12-07 09:00"), toronto("2026-12-07 10:30")],
        ["l2", 1, "l2", toronto("2026-12-07 10:30"), None],
    ]
    assert obj["holders"] == [
        [toronto("2026-12-07 09:00"), "l1", None],
        [toronto("2026-12-07 10:30"), "l2", None],
    ]
    again = state_codec.decode(state_codec.encode(state))
    assert state_codec.encode(again) == state_codec.encode(state)
    assert again.next_due == toronto("2026-12-07 14:30")  # l2's breach


def test_a_late_move_is_corrected_ownership_included() -> None:
    """The move to l2 at 10:30 comes after the resolve at 15:00: what l1 alone gave (its
    breach at 11:00, its stop, the resolution held by l1 only) is retracted, and the issue's
    values are issued instead."""
    policy = issue_policy()
    replayer = Replayer(policy)
    out: list[dict[str, Any]] = []
    for ev in (
        event("opened", "2026-12-07 09:00", severity=2, group="l1", ticket="L"),
        event("resolved", "2026-12-07 15:00", ticket="L"),
        event("assigned", "2026-12-07 10:30", group="l2", ticket="L"),
    ):
        emitted, rejected = replayer.feed(ev)
        assert rejected is None
        out.extend(emitted)
    retracted = {r["retracts"] for r in out if r["type"] == "sla.retracted"}
    standing = [r for r in out if r["type"] != "sla.retracted" and r["event_id"] not in retracted]
    assert sorted((r["type"], r["agreement"]["name"]) for r in standing) == [
        ("sla.breached", "l2"),
        ("sla.met", "acme"),
        ("sla.met", "l1"),
        ("sla.stopped", "l2"),
    ]
    assert sorted(
        (r["retracted_type"], r["agreement"]["name"]) for r in out if r["type"] == "sla.retracted"
    ) == [("sla.breached", "l1"), ("sla.met", "acme"), ("sla.stopped", "l1")]
    last = {(r["type"], r["agreement"]["name"]): r for r in standing}
    assert last[("sla.met", "acme")]["took_seconds"] == 21600
    assert held(last[("sla.met", "acme")]) == [("l1", None, 5400), ("l2", None, 16200)]
    assert last[("sla.met", "l1")]["took_seconds"] == 5400
    assert last[("sla.stopped", "l2")]["took_seconds"] == 16200


def test_a_file_without_olas_names_no_agreement_and_attributes_nothing() -> None:
    text = ISSUE.split("[[olas]]")[0]
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1"),
            event("resolved", "2026-12-07 15:00"),
        ),
        parse_policy(text, "plain.toml"),
        None,
    )
    assert len(out) == 1 and "agreement" not in out[0] and "attribution" not in out[0]
    with_attribution = parse_policy(
        text.replace('name = "acme"', 'name = "acme"\nattribution = true'), "a.toml"
    )
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1"),
            event("resolved", "2026-12-07 15:00"),
        ),
        with_attribution,
        None,
    )
    assert "agreement" not in out[0] and held(out[0]) == [("l1", None, 21600)]


def test_an_ola_on_every_group_starts_a_cycle_for_each_group_it_moves_to() -> None:
    """`handoff` holds for every ticket: the move from l1 to l2 at 10:30 ends its cycle for
    l1 (1h30 of 1bd) and starts one for l2, which ends at the resolve at 15:00 (4h30)."""
    text = ISSUE.replace("{pausable}", "") + (
        '\n[[olas]]\nname = "handoff"\ngroup_ownership = { target = "1bd" }\n'
    )
    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1"),
            event("assigned", "2026-12-07 10:30", group="l2"),
            event("resolved", "2026-12-07 15:00"),
        ),
        parse_policy(text, "handoff.toml"),
        None,
    )
    handoff = ola(out, "handoff")
    assert [(r["type"], r["round"], r["ownership_group"], r["took_seconds"]) for r in handoff] == [
        ("sla.met", 1, "l1", 5400),
        ("sla.met", 2, "l2", 16200),
    ]
    assert [r["due_at"] for r in handoff] == ["2026-12-07T22:00:00Z", "2026-12-08T15:30:00Z"]


def test_backtest_counts_each_olas_cycles_apart_from_the_customer_sla() -> None:
    """The issue's ticket under l2's 4h and a proposed 5h: l2's cycle 1 goes from breached
    (at 4h) to met (4h30 held, within 5h); the customer's resolution is met under both."""
    from streams.sla.backtest import backtest

    lines = [
        orjson.dumps(item)
        for item in (
            payload("opened", "2026-12-07 09:00", "B", severity=2, group="l1"),
            payload("assigned", "2026-12-07 10:30", "B", group="l2"),
            payload("resolved", "2026-12-07 15:00", "B"),
        )
    ]
    proposed = parse_policy(
        ISSUE.replace('"4h"{pausable}', '"5h"').replace('name = "acme"', 'name = "acme-5h"'),
        "proposed.toml",
    )
    report = backtest(lines, issue_policy(), proposed)
    rows = {(r["policy"], r["metric"]): r for r in report["summary"]}
    assert (rows[("ola l2", "group_ownership")]["breached_current"],
            rows[("ola l2", "group_ownership")]["met_proposed"]) == (1, 1)  # fmt: skip
    assert rows[("acme", "resolution")]["met_current"] == 1
    assert report["changed"] == [
        {"ticket_id": "B", "metric": "group_ownership l2@1", "cycle": 0,
         "current": "breached", "proposed": "met"},
    ]  # fmt: skip


def test_notify_rules_match_the_agreement_and_its_kind() -> None:
    from streams.notify.rules import Match, matches

    out = replay(
        (
            event("opened", "2026-12-07 09:00", severity=2, group="l1"),
            event("assigned", "2026-12-07 10:30", group="l2"),
            event("resolved", "2026-12-07 15:00"),
        ),
        issue_policy(),
        None,
    )
    l2 = Match(agreement="l2")
    assert [r["type"] for r in out if matches(l2, r)] == ["sla.breached", "sla.stopped"]
    customer = Match(agreement_kind="sla", type="sla.met")
    assert [r["metric"] for r in out if matches(customer, r)] == ["resolution"]
    assert [r["metric"] for r in out if matches(Match(agreement="acme"), r)] == ["resolution"]
    assert sum(matches(Match(agreement_kind=["ola"]), r) for r in out) == 3
    plain = parse_policy(ISSUE.split("[[olas]]")[0], "plain.toml")
    (met,) = replay((event("opened", "2026-12-07 09:00", severity=2),
                     event("resolved", "2026-12-07 10:00")), plain, None)  # fmt: skip
    assert matches(Match(agreement_kind="sla", agreement="acme"), met)  # no agreement: the SLA's
    with pytest.raises(ValueError, match="unknown agreement kind 'vendor'"):
        Match(agreement_kind="vendor")
