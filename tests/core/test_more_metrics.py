"""Issue #8 section 3, hand-computed: next_response, periodic_update, warnings by lead time,
repeating escalation levels.

Calendar: Mon-Fri 09:00-17:00 America/Toronto (EST, UTC-5 in November/December), no holidays;
1bd = 8h. 2026-11-30 is a Monday, 2026-12-01 a Tuesday.
"""

from __future__ import annotations

from typing import Any

import pytest

from events.ids import sla_event_id
from events.sla_records import wire
from streams.sla.cli import describe_policy
from streams.sla.policy import PolicyError, check_policy, parse_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from tests.core.helpers import event, replay, toronto, utc

CALENDAR = """
[calendar]
timezone = "America/Toronto"
open = "09:00"
close = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
"""

POLICY = parse_policy(
    'name = "more"\nversion = "t"\n'
    + CALENDAR
    + """
[severity.1]
first_response = { target = "1h" }
next_response = { target = "2h", warn_at = [0.5], warn_before = ["15m"] }
[severity.2]
first_response = { target = "1h" }
periodic_update = { target = "2h" }
[severity.3]
escalations = [
  { after = "1h", to = "lead", repeat_every = "2h", max_repeats = 2 },
  { after = "2h", to = "manager", repeat_every = "1h" },
]
[severity.4]
resolution = { target = "1bd", pausable = true, warn_at = [0.5], warn_before = ["1h"] }
""",
    "more.toml",
)


PLAIN = 'name = "plain"\n' + CALENDAR + '[severity.1]\nfirst_response = { target = "1h" }\n'


def run(*events: Any, until: str | None = None, policy: Policy = POLICY) -> list[dict[str, Any]]:
    return replay(events, policy, until)


def rows(out: list[dict[str, Any]], metric: str | None = None) -> list[tuple[Any, ...]]:
    """(type, rule-ish detail, due_at, at) of each event of `metric` (all when None)."""
    return [
        (
            r["type"],
            r.get("round", r.get("repeat")),
            r.get("threshold"),
            r["due_at"],
            r["at"],
        )
        for r in out
        if metric is None or r["metric"] == metric
    ]


# -- next_response


def test_next_response_rounds_each_fire_their_own_warning_breach_and_met() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=1),
        event("responded", "2026-11-30 09:30"),  # first response; no round yet
        # round 1 from 10:00, 2h target: half (1h) at 11:00, 15m before the breach at 11:45,
        # breach 12:00; answered 11:30: met, took 1h30 = 5400 s
        event("customer_replied", "2026-11-30 10:00"),
        event("responded", "2026-11-30 11:30"),
        # round 2 from 13:00 (the reply at 13:30 joins it: the oldest unanswered message
        # counts): 14:00 half, 14:45 lead warning, 15:00 breach; the answer at 16:00 is late
        event("customer_replied", "2026-11-30 13:00"),
        event("customer_replied", "2026-11-30 13:30"),
        event("responded", "2026-11-30 16:00"),
        # round 3 from 16:30: 30m on Monday + 1h30 on Tuesday = 2h -> Tue 10:30; half (1h):
        # 30m Mon + 30m Tue -> Tue 09:30; 1h45 -> Tue 10:15. Resolved at Tue 10:00: the open
        # round stops without sla.met, its later timers are cancelled.
        event("customer_replied", "2026-11-30 16:30"),
        event("resolved", "2026-12-01 10:00"),
        until="2026-12-02 17:00",
    )
    warn_lead = 1 - 15 / 120  # 0.875 of the target elapsed when 15m are left
    assert rows(out, "next_response") == [
        ("sla.warning", 1, 0.5, utc("2026-11-30 11:00"), utc("2026-11-30 11:00")),
        ("sla.met", 1, None, utc("2026-11-30 12:00"), utc("2026-11-30 11:30")),
        ("sla.warning", 2, 0.5, utc("2026-11-30 14:00"), utc("2026-11-30 14:00")),
        ("sla.warning", 2, warn_lead, utc("2026-11-30 14:45"), utc("2026-11-30 14:45")),
        ("sla.breached", 2, None, utc("2026-11-30 15:00"), utc("2026-11-30 15:00")),
        ("sla.warning", 3, 0.5, utc("2026-12-01 09:30"), utc("2026-12-01 09:30")),
    ]
    met = next(r for r in out if r["type"] == "sla.met" and r["metric"] == "next_response")
    assert met["took_seconds"] == 5400.0 and met["clock"] == "business"
    lead = next(r for r in out if r.get("before_seconds"))
    assert lead["before_seconds"] == 900.0
    # each round its own deterministic id: the round number is in the rule
    breach = next(r for r in out if r["type"] == "sla.breached")
    reported = toronto("2026-11-30 09:00")
    assert breach["event_id"] == sla_event_id("T1", reported, "next_response", "breached@2", 0)
    assert met["event_id"] == sla_event_id("T1", reported, "next_response", "met@1", 0)
    assert len({r["event_id"] for r in out}) == len(out)


def test_a_customer_reply_before_the_first_response_starts_no_round() -> None:
    """The opening message is first response's; a second customer message before any answer
    changes nothing (the ticket was never answered)."""
    out = run(
        event("opened", "2026-11-30 09:00", severity=1),
        event("customer_replied", "2026-11-30 09:10"),
        event("responded", "2026-11-30 09:20"),
        until="2026-11-30 17:00",
    )
    assert [(r["type"], r["metric"]) for r in out] == [("sla.met", "first_response")]


def test_next_response_pauses_when_pausable_and_after_a_reopen() -> None:
    policy = parse_policy(
        'name = "p"\n' + CALENDAR + '[severity.1]\nfirst_response = { target = "1h" }\n'
        'next_response = { target = "2h", pausable = true }\n',
        "p.toml",
    )
    out = run(
        event("opened", "2026-11-30 09:00", severity=1),
        event("responded", "2026-11-30 09:10"),
        # round 1 from 10:00; paused 11:00-12:30 (1h consumed before): the remaining 1h runs
        # from 12:30 -> breach 13:30
        event("customer_replied", "2026-11-30 10:00"),
        event("paused", "2026-11-30 11:00"),
        event("resumed", "2026-11-30 12:30"),
        event("resolved", "2026-11-30 14:00"),
        # reopened 15:00; the customer's reply at 15:05 starts round 2 (a resolve counts as
        # answered) -> 2h: 1h55 on Monday + 5m Tuesday -> Tue 09:05
        event("reopened", "2026-11-30 15:00"),
        event("customer_replied", "2026-11-30 15:05"),
        policy=policy,
        until="2026-12-01 12:00",
    )
    assert rows(out, "next_response") == [
        ("sla.breached", 1, None, utc("2026-11-30 13:30"), utc("2026-11-30 13:30")),
        ("sla.breached", 2, None, utc("2026-12-01 09:05"), utc("2026-12-01 09:05")),
    ]
    assert [r["cycle"] for r in out if r["metric"] == "next_response"] == [0, 1]


# -- periodic_update


def test_periodic_update_is_due_every_period_while_open_and_not_paused() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        # first response at 09:30 starts period 1 -> due 11:30; the update at 11:00 meets it
        # (took 1h30 = 5400 s) and starts period 2 -> 13:00
        event("responded", "2026-11-30 09:30"),
        event("responded", "2026-11-30 11:00"),
        # paused 12:00-14:00 with 1h of period 2 used: due 15:00, breached then
        event("paused", "2026-11-30 12:00"),
        event("resumed", "2026-11-30 14:00"),
        # the update at 15:30 (late: no met) starts period 3: 1h30 Monday + 30m Tuesday ->
        # Tue 09:30; resolved Tue 09:00 first: stopped, no event
        event("responded", "2026-11-30 15:30"),
        event("resolved", "2026-12-01 09:00"),
        # reopened Tue 10:00: period 4 from the reopen -> 12:00, breached (cycle 1)
        event("reopened", "2026-12-01 10:00"),
        until="2026-12-01 13:00",
    )
    assert rows(out, "periodic_update") == [
        ("sla.met", 1, None, utc("2026-11-30 11:30"), utc("2026-11-30 11:00")),
        ("sla.breached", 2, None, utc("2026-11-30 15:00"), utc("2026-11-30 15:00")),
        ("sla.breached", 4, None, utc("2026-12-01 12:00"), utc("2026-12-01 12:00")),
    ]
    met = next(r for r in out if r["metric"] == "periodic_update")
    assert met["took_seconds"] == 5400.0
    assert [r["cycle"] for r in out if r["metric"] == "periodic_update"] == [0, 0, 1]


# -- warnings by lead time


def test_warn_before_counts_back_from_the_breach_on_the_business_clock_with_pauses() -> None:
    out = run(
        # 1bd = 8h from Mon 16:00: 1h Monday + 7h Tuesday -> Tue 16:00; half (4h): Tue 12:00;
        # 1h before (7h): Tue 15:00. Paused Tue 14:00-14:30 moves both later ones by 30m:
        # warning 15:30, breach 16:30.
        event("opened", "2026-11-30 16:00", severity=4),
        event("paused", "2026-12-01 14:00"),
        event("resumed", "2026-12-01 14:30"),
        until="2026-12-01 17:00",
    )
    assert rows(out, "resolution")[:3] == [
        ("sla.warning", None, 0.5, utc("2026-12-01 12:00"), utc("2026-12-01 12:00")),
        ("sla.warning", None, 0.875, utc("2026-12-01 15:30"), utc("2026-12-01 15:30")),
        ("sla.breached", None, None, utc("2026-12-01 16:30"), utc("2026-12-01 16:30")),
    ]
    assert out[3]["type"] == "customer.notification_required"
    lead = out[1]
    assert lead["before_seconds"] == 3600.0 and "before_seconds" not in out[0]


# -- repeating escalations


def test_escalation_levels_repeat_until_resolved_or_their_maximum() -> None:
    out = run(
        # L1 after 1h -> 10:00, repeats every 2h at most twice: 12:00 (1), 14:00 (2), not
        # 16:00. L2 after 2h -> 11:00, repeats every 1h: 12:00 (1) ... 16:00 (5), then stops
        # at the resolve 16:30 (17:00 never fires). At one instant, level 1 first.
        event("opened", "2026-11-30 09:00", severity=3),
        event("resolved", "2026-11-30 16:30"),
        until="2026-11-30 23:00",
    )
    assert [(r["level"], r.get("repeat"), r["to"], r["due_at"]) for r in out] == [
        (1, None, "lead", utc("2026-11-30 10:00")),
        (2, None, "manager", utc("2026-11-30 11:00")),
        (1, 1, "lead", utc("2026-11-30 12:00")),
        (2, 1, "manager", utc("2026-11-30 12:00")),
        (2, 2, "manager", utc("2026-11-30 13:00")),
        (1, 2, "lead", utc("2026-11-30 14:00")),
        (2, 3, "manager", utc("2026-11-30 14:00")),
        (2, 4, "manager", utc("2026-11-30 15:00")),
        (2, 5, "manager", utc("2026-11-30 16:00")),
    ]
    assert len({r["event_id"] for r in out}) == 9
    reported = toronto("2026-11-30 09:00")
    assert out[2]["event_id"] == sla_event_id("T1", reported, "escalation", "level:1:repeat:1", 0)


def test_repeats_missed_while_resolved_fire_once_at_the_reopen() -> None:
    out = run(
        event("opened", "2026-11-30 09:00", severity=3),
        event("resolved", "2026-11-30 13:30"),
        # Reopened 18:10 (elapsed clock, 9h10 after the report). L1: repeat 2 (due 14:00) is
        # the latest missed and the last allowed: fires at the reopen. L2: repeats 3..7 (due
        # 14:00..18:00) were missed: only 7 fires at the reopen; the next is 8, at 19:00.
        event("reopened", "2026-11-30 18:10"),
        until="2026-11-30 19:30",
    )
    after = [(r["level"], r.get("repeat"), r["due_at"], r["at"], r["cycle"]) for r in out[5:]]
    assert after == [
        (1, 2, utc("2026-11-30 14:00"), utc("2026-11-30 18:10"), 1),
        (2, 7, utc("2026-11-30 18:00"), utc("2026-11-30 18:10"), 1),
        (2, 8, utc("2026-11-30 19:00"), utc("2026-11-30 19:00"), 1),
    ]


# -- changes: severity, policy moves, late events


def test_a_severity_change_recomputes_an_open_round_from_its_start() -> None:
    policy = parse_policy(
        'name = "s"\n' + CALENDAR + '[severity.1]\nfirst_response = { target = "1h" }\n'
        'next_response = { target = "30m" }\n'
        '[severity.3]\nfirst_response = { target = "1h" }\nnext_response = { target = "4h" }\n',
        "s.toml",
    )
    out = run(
        event("opened", "2026-11-30 09:00", severity=3),
        event("responded", "2026-11-30 09:10"),
        event("customer_replied", "2026-11-30 10:00"),
        # Sev1's 30m from 10:00 -> 10:30, overdue at the change (11:00): fires then
        event("severity_changed", "2026-11-30 11:00", severity=1),
        policy=policy,
        until="2026-11-30 17:00",
    )
    assert rows(out, "next_response") == [
        ("sla.breached", 1, None, utc("2026-11-30 10:30"), utc("2026-11-30 11:00")),
    ]


def test_a_policy_move_recomputes_rounds_and_repeats_from_their_start() -> None:
    policy = parse_policy(
        'name = "m"\ncalendar = "office"\n'
        + CALENDAR.replace("[calendar]", "[calendars.office]")
        + """
[calendars.always]
timezone = "America/Toronto"
hours = "24x7"
[[policies]]
name = "gold"
calendar = "always"
match = { attributes = { tier = "gold" } }
[policies.severity.2]
first_response = { target = "1h" }
periodic_update = { target = "1h", warn_before = ["10m"] }
escalations = [{ after = "30m", to = "duty", repeat_every = "30m" }]
[[policies]]
name = "standard"
[policies.severity.2]
first_response = { target = "1h" }
periodic_update = { target = "4h" }
escalations = [{ after = "4h", to = "lead" }]
""",
        "m.toml",
    )
    out = run(
        event("opened", "2026-11-30 09:00", severity=2),
        event("responded", "2026-11-30 09:20"),  # period 1 from 09:20 (4h on standard)
        # moved to gold at 10:45: period 1 is now 1h on 24x7 from 09:20 -> 10:20, its lead
        # warning 10:10, both overdue: fire at the move. Escalation L1 after 30m -> 09:30,
        # overdue (fires at 10:45, first: the earliest due); its repeats every 30m (10:00,
        # 10:30 missed) resume after the move: repeat 3 at 11:00 (09:00 + 30m + 3 x 30m);
        # resolved 11:10.
        event("updated", "2026-11-30 10:45", attributes={"tier": "gold"}),
        event("resolved", "2026-11-30 11:10"),
        policy=policy,
        until="2026-11-30 17:00",
    )
    assert [(r["type"], r["metric"], r.get("repeat"), r["due_at"], r["at"]) for r in out[1:]] == [
        ("ticket.escalated", "escalation", None, utc("2026-11-30 09:30"), utc("2026-11-30 10:45")),
        ("sla.warning", "periodic_update", None, utc("2026-11-30 10:10"), utc("2026-11-30 10:45")),
        ("sla.breached", "periodic_update", None, utc("2026-11-30 10:20"), utc("2026-11-30 10:45")),
        ("ticket.escalated", "escalation", 3, utc("2026-11-30 11:00"), utc("2026-11-30 11:00")),
    ]  # fmt: skip
    assert {r["policy"]["name"] for r in out[1:]} == {"gold"}
    assert [r["policy"]["calendar"] for r in out[1:]] == ["elapsed", "always", "always", "elapsed"]


def test_a_late_answer_retracts_the_next_response_breach() -> None:
    replayer = Replayer(POLICY)
    for ev in (
        event("opened", "2026-11-30 09:00", severity=1, event_id="o"),
        event("responded", "2026-11-30 09:30", event_id="r1"),
        event("customer_replied", "2026-11-30 10:00", event_id="c1"),
    ):
        assert replayer.feed(ev)[1] is None
    fired = replayer.advance(toronto("2026-11-30 12:30"))
    assert [r["type"] for r in fired] == ["sla.warning", "sla.warning", "sla.breached"]
    # the agent's answer at 11:50 arrives late: the lead warning (11:45) still holds, the
    # breach (12:00) does not: retracted, then met (due 12:00, took 1h50 = 6600 s)
    out, rejected = replayer.feed(event("responded", "2026-11-30 11:50", event_id="r2"))
    assert rejected is None
    assert [(r["type"], r.get("retracts"), r.get("took_seconds")) for r in out] == [
        ("sla.retracted", fired[2]["event_id"], None),
        ("sla.met", None, 6600.0),
    ]
    assert out[1]["round"] == 1 and out[1]["metric"] == "next_response"


def test_a_late_customer_reply_starts_its_round_at_its_own_time() -> None:
    replayer = Replayer(POLICY)
    for ev in (
        event("opened", "2026-11-30 09:00", severity=1),
        event("responded", "2026-11-30 09:30"),
        event("paused", "2026-11-30 13:00"),
    ):
        assert replayer.feed(ev)[1] is None
    # the customer's reply of 10:00 arrives after the 13:00 event: folded in at 10:00, its
    # round's timers (11:00, 11:45, 12:00) are overdue when it arrives and fire at once
    out, rejected = replayer.feed(event("customer_replied", "2026-11-30 10:00"))
    assert rejected is None
    assert rows(list(map(wire, out)), "next_response") == [
        ("sla.warning", 1, 0.5, utc("2026-11-30 11:00"), utc("2026-11-30 11:00")),
        ("sla.warning", 1, 0.875, utc("2026-11-30 11:45"), utc("2026-11-30 11:45")),
        ("sla.breached", 1, None, utc("2026-11-30 12:00"), utc("2026-11-30 12:00")),
    ]


# -- the policy file


@pytest.mark.parametrize(
    ("severity", "needle"),
    [
        (
            'next_response = { target = "1h", warn_before = ["1h"] }',
            "more.toml: severity.1.next_response.warn_before.0: '1h' is not shorter than the "
            "target (1h)",
        ),
        (
            'next_response = { target = "1h", warn_before = ["soon"] }',
            "more.toml: severity.1.next_response.warn_before.0: invalid duration 'soon'",
        ),
        (
            'escalations = [{ after = "1h", to = "x", max_repeats = 2 }]',
            "more.toml: severity.1.escalations.0: Value error, max_repeats needs repeat_every",
        ),
        (
            'escalations = [{ after = "1h", to = "x", repeat_every = "2h", max_repeats = 0 }]',
            "more.toml: severity.1.escalations.0.max_repeats: Input should be greater than or "
            "equal to 1",
        ),
        (
            'escalations = [{ after = "1h", to = "x", repeat_every = "0m" }]',
            "more.toml: severity.1.escalations.0.repeat_every: duration '0m' must be positive",
        ),
        (
            'periodic_update = { every = "2h" }',
            "more.toml: severity.1.periodic_update.target: Field required",
        ),
    ],
)
def test_policy_errors_name_the_key(severity: str, needle: str) -> None:
    text = 'name = "more"\n' + CALENDAR + "[severity.1]\n" + severity + "\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "more.toml")
    assert needle in str(caught.value)
    assert str(caught.value).endswith("(line 9)")  # the severity's line in `text`


def test_errors_point_at_the_line_of_an_array_element_or_a_policy() -> None:
    text = (
        'name = "m"\ncalendar = "office"\n'  # lines 1-2
        + CALENDAR.replace("[calendar]", "[calendars.office]")  # lines 3-8
        + "[[policies]]\n"  # 9
        + 'name = "a"\nmatch = { group = "x" }\n'  # 10-11
        + "[policies.severity.1]\n"  # 12
        + "escalations = [\n"  # 13
        + '  { after = "1h", to = "lead" },\n'  # 14
        + '  { after = "2h", to = "boss", repeat_every = "1x" },\n'  # 15
        + "]\n"  # 16
        + '[[policies]]\nname = "b"\n[policies.severity.1]\n'  # 17-19
        + 'periodic_update = { target = "1h", pausable = "yes" }\n'  # 20
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "m.toml")
    assert str(caught.value) == (
        "m.toml: policies.1.severity.1.periodic_update.pausable: Input should be a valid "
        "boolean (line 20)"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text.replace('"yes"', "true"), "m.toml")
    assert str(caught.value).startswith(
        "m.toml: policies.0.severity.1.escalations.1.repeat_every: invalid duration '1x'"
    )
    assert str(caught.value).endswith("(line 15)")


def test_policy_check_prints_the_new_keys_and_warns_about_elapsed_days() -> None:
    text = describe_policy(POLICY)
    assert (
        "  severity 1: next response 2h business (0.25bd), warn at 0.5, warn 15m before the breach"
        in (text)
    )
    assert "  severity 2: periodic update every 2h business (0.25bd), pausable" in text
    assert "  severity 3: L1 repeats every 2h elapsed (2x); L2 repeats every 1h elapsed " in text
    assert "  severity 4: resolution, warn 1h before the breach" in text
    assert "  severity 1:" not in describe_policy(parse_policy(PLAIN, "plain.toml"))
    days = parse_policy(
        'name = "d"\n' + CALENDAR + '[severity.1]\nnext_response = { target = "24h" }\n'
        'escalations = [{ after = "1bd", clock = "business", to = "x", repeat_every = "48h" }]\n',
        "d.toml",
    )
    warnings = "\n".join(check_policy(days))
    assert "severity.1.next_response: '24h' of business time is 3.00 business days" in warnings
    assert "severity.1.escalations.0.repeat_every: '48h' of business time is 6.00 bus" in warnings
