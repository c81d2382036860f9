"""Explain (issue 24 §4): the intervals that counted and those that did not, with causes,
hand-computed; and, over thousands of random tickets, the explanation's total equals the
`took_seconds` the fold reported."""

from __future__ import annotations

import math
import random
from typing import Any

from events.codec import ticket_event_from_obj
from events.instants import format_instant, parse_rfc3339
from streams.sla.explain import explain
from streams.sla.fold import handle
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from streams.sla.state import TicketState
from tests.clocks.helpers import body, ev
from tests.clocks.policies import DEADLINES, GROUPS, STOPS, policy

GROUPS_POLICY = policy(GROUPS)
STOPS_POLICY = policy(STOPS)
DEADLINES_POLICY = policy(DEADLINES)


def state_after(p: Policy, *events: Any) -> TicketState:
    replayer = Replayer(p)
    for item in events:
        assert replayer.feed(item)[1] is None
    return replayer.tickets["T1"]


def rows(metric: dict[str, Any]) -> list[tuple[str, str, str, float, str]]:
    return [
        (i["start"][5:16], i["end"][5:16], i["cause"], i["seconds"], i.get("calendar", ""))
        for i in metric["intervals"]
    ]


def test_the_issues_ticket_moved_from_emea_to_amer() -> None:
    state = state_after(
        GROUPS_POLICY,
        ev("opened", "2026-12-07T14:00:00Z", severity=2, group="emea"),
        ev("assigned", "2026-12-07T15:00:00Z", group="amer"),
        ev("responded", "2026-12-07T17:30:00Z"),
    )
    found = explain(state, GROUPS_POLICY, parse_rfc3339("2026-12-07T18:00:00Z"))
    assert (found["policy"], found["version"]) == ("follow-the-sun", "24")
    first = found["metrics"][0]
    assert (first["metric"], first["status"], first["calendars"], first["due_at"]) == (
        "first_response",
        "met",
        ["warsaw", "toronto"],
        "2026-12-07T18:00:00Z",
    )
    assert rows(first) == [
        ("12-07T14:00", "12-07T15:00", "counted", 3600.0, "warsaw"),
        ("12-07T15:00", "12-07T17:30", "counted", 9000.0, "toronto"),
    ]
    assert first["counted_seconds"] == 3.5 * 3600
    assert first["target"] == "4h from 2026-12-07T14:00:00Z"


def test_closed_hours_and_a_named_holiday() -> None:
    # In emea from Wednesday 23 December 15:00Z (16:00 Warsaw): 1h to the close, then Warsaw
    # is closed: the evening, Christmas Eve, Christmas Day, the Second Day of Christmas (a
    # Saturday, closed hours anyway: named as the holiday it is not, it is closed hours), the
    # weekend, and opens Monday 28 at 09:00 (08:00Z).
    state = state_after(
        GROUPS_POLICY, ev("opened", "2026-12-23T15:00:00Z", severity=2, group="emea")
    )
    found = explain(state, GROUPS_POLICY, parse_rfc3339("2026-12-28T09:00:00Z"))
    assert rows(found["metrics"][0]) == [
        ("12-23T15:00", "12-23T16:00", "counted", 3600.0, "warsaw"),
        ("12-23T16:00", "12-23T23:00", "closed hours", 0.0, "warsaw"),
        ("12-23T23:00", "12-24T23:00", "holiday", 0.0, "warsaw"),
        ("12-24T23:00", "12-25T23:00", "holiday", 0.0, "warsaw"),
        ("12-25T23:00", "12-28T08:00", "closed hours", 0.0, "warsaw"),
        ("12-28T08:00", "12-28T09:00", "counted", 3600.0, "warsaw"),
    ]
    holidays = [i.get("holiday") for i in found["metrics"][0]["intervals"]]
    assert holidays[2:4] == ["Christmas Eve", "Christmas Day"]


def test_a_pause_and_a_manual_stop_with_its_reason_and_actor() -> None:
    state = state_after(
        STOPS_POLICY,
        ev("opened", "2026-12-07T10:00:00Z", severity=1),
        ev("paused", "2026-12-07T10:30:00Z"),
        ev("resumed", "2026-12-07T11:00:00Z"),
        ev("sla_stopped", "2026-12-07T11:30:00Z", reason="third_party", actor="agent-7"),
        ev("sla_started", "2026-12-07T12:00:00Z", actor="agent-7"),
        ev("resolved", "2026-12-07T13:00:00Z"),
    )
    found = explain(state, STOPS_POLICY, parse_rfc3339("2026-12-07T13:00:00Z"))
    resolution = next(m for m in found["metrics"] if m["metric"] == "resolution")
    assert [
        (i["start"][11:16], i["end"][11:16], i["cause"], i.get("reason"), i.get("actor"))
        for i in resolution["intervals"]
    ] == [
        ("10:00", "10:30", "counted", None, None),
        ("10:30", "11:00", "paused", None, None),
        ("11:00", "11:30", "counted", None, None),
        ("11:30", "12:00", "stopped", "third_party", "agent-7"),
        ("12:00", "13:00", "counted", None, None),
    ]
    assert (resolution["counted_seconds"], resolution["due_at"]) == (7200.0, "2026-12-07T15:00:00Z")


def test_a_deadline_target_says_how_it_was_set() -> None:
    state = state_after(
        DEADLINES_POLICY,
        ev(
            "opened",
            "2026-12-07T14:00:00Z",
            severity=3,
            attributes={"agreed_due_at": "2026-12-09T12:00:00Z"},
        ),
    )
    found = explain(state, DEADLINES_POLICY, parse_rfc3339("2026-12-07T15:00:00Z"))
    assert [(m["metric"], m["target"], m["due_at"]) for m in found["metrics"]] == [
        (
            "first_response",
            "next business day at 16:00 after 2026-12-07T14:00:00Z: 2026-12-08T15:00:00Z",
            "2026-12-08T15:00:00Z",
        ),
        ("resolution", "attribute 'agreed_due_at' = 2026-12-09T12:00:00Z", "2026-12-09T12:00:00Z"),
    ]


# ---------------------------------------------------------------------------------------------
# The explanation is the fold's own truth: over thousands of random tickets, every sla.met of
# first response and resolution reports exactly the seconds the explanation counts then.

_KINDS = [
    "assigned",
    "paused",
    "resumed",
    "sla_stopped",
    "sla_started",
    "responded",
    "resolved",
    "reopened",
    "updated",
    "severity_changed",
]


def _random_ticket(rng: random.Random, number: int, severity: int) -> list[dict[str, Any]]:
    at = parse_rfc3339("2026-12-01T00:00:00Z") + rng.randrange(0, 30 * 86400) * 1_000_000
    ticket = f"R{number}"
    events = [
        body(
            "opened",
            format_instant(at),
            ticket=ticket,
            severity=severity,
            group=rng.choice(["emea", "amer", "support"]),
        )
    ]
    for _ in range(rng.randrange(1, 12)):
        at += rng.randrange(1, 3 * 3600) * 1_000_000 + rng.randrange(0, 1_000_000)
        kind = rng.choice(_KINDS)
        fields: dict[str, Any] = {"ticket": ticket}
        if kind == "assigned":
            fields["group"] = rng.choice(["emea", "amer", "support"])
        elif kind == "sla_stopped":
            fields |= {"reason": rng.choice(["third_party", "outage", "coffee"]), "actor": "a1"}
        elif kind == "sla_started":
            fields["actor"] = "a1"
        elif kind == "updated":
            fields["group"] = rng.choice(["emea", "amer"])
        elif kind == "severity_changed":
            fields["severity"] = severity
        events.append(body(kind, format_instant(at), **fields))
    return events


def test_explanation_totals_equal_took_seconds_for_random_tickets() -> None:
    rng = random.Random(24)
    checked = 0
    for number in range(5000):
        p, severity = rng.choice([(GROUPS_POLICY, 2), (STOPS_POLICY, 1), (DEADLINES_POLICY, 3)])
        state: TicketState | None = None
        for obj in _random_ticket(rng, number, severity):
            item = ticket_event_from_obj(obj)
            outcome = handle(state, item, p)
            if outcome.rejected is not None:
                continue
            state = outcome.state
            assert state is not None
            for record in outcome.emitted:
                if record["type"] != "sla.met" or record["metric"] not in (
                    "first_response",
                    "resolution",
                ):
                    continue
                found = explain(state, p, item.at)
                metric = next(m for m in found["metrics"] if m["metric"] == record["metric"])
                if record["metric"] == "resolution" and state.cycle:
                    continue  # a later cycle's met counts that cycle's spans and the earlier
                assert metric["counted_seconds"] == record["took_seconds"], (number, record)
                counted = sum(i["seconds"] for i in metric["intervals"])
                assert math.isclose(counted, record["took_seconds"], abs_tol=1e-5)
                assert all(i["seconds"] == 0 for i in metric["intervals"] if not i["counted"])
                checked += 1
    assert checked > 2000
