"""Several policies in one file, chosen per ticket by its attributes (issue #8 §2).

A vendor with three contracts (the example in docs/policies.md): `premium` (tier gold) on a 24x7
calendar, `emea` (group emea) on Europe/Warsaw business hours, `standard` for everyone else on
Toronto business hours Mon-Fri 09:00-17:00. 2026-11-30 is a Monday (Toronto UTC-5, Warsaw
UTC+1). Values are hand-computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.sla import state_codec
from streams.sla.cli import describe_policy
from streams.sla.fold import handle
from streams.sla.policy import PolicyError, check_policy, parse_policy
from tests.core.helpers import event, replay, utc

VENDOR_FILE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "vendor-policy.toml"
VENDOR = VENDOR_FILE.read_text()
POLICY = parse_policy(VENDOR, "vendor.toml")


def run(*events: Any, until: str) -> list[dict[str, Any]]:
    return replay(events, POLICY, until)


def timeline(out: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str, str]]:
    return [
        (r["type"], r["metric"], r["due_at"], r["at"], r["policy"]["name"], r["policy"]["calendar"])
        for r in out
    ]


def test_standard_is_the_catch_all_on_toronto_business_hours() -> None:
    out = run(event("opened", "2026-11-30 15:00", severity=1), until="2026-12-01 12:00")
    # 4h from Monday 15:00: 2h Monday, 2h Tuesday from 09:00 -> Tuesday 11:00.
    assert timeline(out) == [
        (
            "sla.breached",
            "first_response",
            utc("2026-12-01 11:00"),
            utc("2026-12-01 11:00"),
            "standard",
            "standard",
        ),
    ]
    assert out[0]["policy"]["version"] == "2027-01"


def test_gold_tier_runs_premium_24x7_with_its_escalation_on_the_elapsed_clock() -> None:
    opened = event("opened", "2026-11-28 22:00", severity=1, attributes={"tier": "gold"})
    out = run(opened, until="2026-11-29 03:00")  # a Saturday night: 24x7 counts it
    assert timeline(out) == [
        (
            "sla.breached",
            "first_response",
            utc("2026-11-28 22:30"),
            utc("2026-11-28 22:30"),
            "premium",
            "always",
        ),
        (
            "ticket.escalated",
            "escalation",
            utc("2026-11-28 23:00"),
            utc("2026-11-28 23:00"),
            "premium",
            "elapsed",
        ),
        (
            "sla.warning",
            "resolution",
            utc("2026-11-29 00:00"),
            utc("2026-11-29 00:00"),
            "premium",
            "always",
        ),
        (
            "sla.breached",
            "resolution",
            utc("2026-11-29 02:00"),
            utc("2026-11-29 02:00"),
            "premium",
            "always",
        ),
        (
            "customer.notification_required",
            "resolution",
            utc("2026-11-29 02:00"),
            utc("2026-11-29 02:00"),
            "premium",
            "always",
        ),
    ]


def test_emea_group_counts_on_warsaw_hours() -> None:
    # Monday 07:00 Toronto is 13:00 Warsaw: first response 2h -> 15:00 Warsaw (14:00Z);
    # resolution 1bd = 8h: 3h Monday to 16:00, 5h Tuesday 08:00-13:00 Warsaw (12:00Z).
    out = run(
        event("opened", "2026-11-30 07:00", severity=1, group="emea"), until="2026-12-01 08:00"
    )
    assert timeline(out) == [
        (
            "sla.breached",
            "first_response",
            "2026-11-30T14:00:00Z",
            "2026-11-30T14:00:00Z",
            "emea",
            "warsaw",
        ),
        (
            "sla.breached",
            "resolution",
            "2026-12-01T12:00:00Z",
            "2026-12-01T12:00:00Z",
            "emea",
            "warsaw",
        ),
        (
            "customer.notification_required",
            "resolution",
            "2026-12-01T12:00:00Z",
            "2026-12-01T12:00:00Z",
            "emea",
            "warsaw",
        ),
    ]


def test_update_moves_the_ticket_and_recomputes_from_the_report_time() -> None:
    """Opened 10:00 on standard; at 11:00 it turns gold: premium's 30m response (due 10:30) is
    overdue and fires at the change; its 1h escalation is due at 11:00 itself."""
    out = run(
        event("opened", "2026-11-30 10:00", severity=1),
        event("updated", "2026-11-30 11:00", attributes={"tier": "gold"}),
        event("responded", "2026-11-30 11:05"),
        event("resolved", "2026-11-30 11:30"),
        until="2026-12-03 12:00",
    )
    assert timeline(out) == [
        (
            "sla.breached",
            "first_response",
            utc("2026-11-30 10:30"),
            utc("2026-11-30 11:00"),
            "premium",
            "always",
        ),
        (
            "ticket.escalated",
            "escalation",
            utc("2026-11-30 11:00"),
            utc("2026-11-30 11:00"),
            "premium",
            "elapsed",
        ),
        (
            "sla.met",
            "resolution",
            utc("2026-11-30 14:00"),
            utc("2026-11-30 11:30"),
            "premium",
            "always",
        ),
    ]
    assert out[-1]["took_seconds"] == 90 * 60


def test_assignment_to_another_group_moves_the_ticket() -> None:
    out = run(
        event("opened", "2026-11-30 07:00", severity=1),
        event("assigned", "2026-11-30 07:30", group="emea", assignee="ola"),
        until="2026-11-30 09:30",
    )
    # Warsaw: reported 13:00, 2h -> 15:00 Warsaw = 14:00Z = 09:00 Toronto.
    assert timeline(out) == [
        (
            "sla.breached",
            "first_response",
            "2026-11-30T14:00:00Z",
            "2026-11-30T14:00:00Z",
            "emea",
            "warsaw",
        ),
    ]


def test_update_without_a_change_of_policy_keeps_the_timers() -> None:
    out = run(
        event("opened", "2026-11-30 15:00", severity=1, channel="email"),
        event("updated", "2026-11-30 15:30", channel="phone", tags=["vip"]),
        until="2026-12-01 12:00",
    )
    assert [r["due_at"] for r in out] == [utc("2026-12-01 11:00")]


def test_move_to_a_policy_without_the_severity_is_rejected_and_changes_nothing() -> None:
    premium_sev2 = (
        '[policies.severity.2]\nfirst_response = { target = "1h" }\n'
        'resolution = { target = "8h", pausable = true }\n'
    )
    assert premium_sev2 in VENDOR
    policy = parse_policy(VENDOR.replace(premium_sev2, ""), "v.toml")
    state = handle(None, event("opened", "2026-11-30 10:00", severity=2), policy).state
    assert state is not None and state.policy_name == "standard"
    timers = list(state.timers)
    gold = event("updated", "2026-11-30 10:10", attributes={"tier": "gold"})
    outcome = handle(state, gold, policy)
    assert outcome.rejected is not None and "'premium'" in outcome.rejected
    assert state.attributes == {} and state.policy_name == "standard" and state.timers == timers


def test_state_round_trip_keeps_policy_and_attributes() -> None:
    opened = event(
        "opened",
        "2026-11-30 10:00",
        severity=1,
        group="emea",
        channel="chat",
        tags=["a", "b"],
        attributes={"region": "emea"},
    )
    state = handle(None, opened, POLICY).state
    assert state is not None and state.policy_name == "emea"
    copy = state_codec.from_obj(state_codec.to_obj(state))
    assert state_codec.to_obj(copy) == state_codec.to_obj(state)
    assert (copy.channel, copy.tags, copy.attributes) == ("chat", ["a", "b"], {"region": "emea"})


@pytest.mark.parametrize(
    ("conditions", "fields", "chosen"),
    [
        ('{ customer = ["C-1", "C-2"] }', {"customer_id": "C-2"}, "first"),
        ('{ customer = ["C-1", "C-2"] }', {"customer_id": "C-3"}, "rest"),
        ('{ tags = ["vip", "exec"] }', {"tags": ["x", "exec"]}, "first"),
        ('{ tags = ["vip"] }', {"tags": ["x"]}, "rest"),
        ('{ channel = "phone", group = "g" }', {"channel": "phone", "group": "g"}, "first"),
        ('{ channel = "phone", group = "g" }', {"channel": "phone"}, "rest"),
        (
            '{ attributes = { region = ["emea", "apac"] } }',
            {"attributes": {"region": "apac"}},
            "first",
        ),
        ('{ attributes = { region = "emea" } }', {"attributes": {"tier": "emea"}}, "rest"),
    ],
)
def test_match_conditions(conditions: str, fields: dict[str, Any], chosen: str) -> None:
    text = (
        'name = "m"\n[calendars.c]\ntimezone = "UTC"\nhours = "24x7"\n'
        f'[[policies]]\nname = "first"\nmatch = {conditions}\n'
        '[policies.severity.1]\nfirst_response = { target = "1h" }\n'
        '[[policies]]\nname = "rest"\n[policies.severity.1]\nfirst_response = { target = "2h" }\n'
    )
    state = handle(
        None,
        event("opened", "2026-11-30 10:00", severity=1, **fields),
        parse_policy(text, "m.toml"),
    ).state
    assert state is not None and state.policy_name == chosen


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('name = "standard"', 'name = "standard"\nmatch = { group = "x" }'),
            "the last policy ('standard') must match every ticket",
        ),
        (('calendar = "warsaw"', 'calendar = "paris"'), "policies.1.calendar: 'paris'"),
        (
            ('target = "1bd" }', 'target = "1bd", calendar = "nowhere" }'),
            "policies.1.severity.1.resolution.calendar: 'nowhere'",
        ),
        (('name = "emea"', 'name = "premium"'), "names must be unique"),
    ],
)
def test_policy_set_errors_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=r"vendor\.toml") as caught:
        parse_policy(VENDOR.replace(*change), "vendor.toml")
    assert message in str(caught.value)


def test_check_prints_each_policy_and_warns_about_a_shadowed_one() -> None:
    text = describe_policy(POLICY)
    assert "policy premium: tier in gold" in text
    assert "policy emea: group in emea" in text and "policy standard: every ticket" in text
    assert "calendar warsaw: mon, tue, wed, thu, fri 08:00-16:00 Europe/Warsaw" in text
    assert "calendar always: 24x7 America/Toronto" in text
    shadowed = parse_policy(VENDOR.replace('match = { group = "emea" }\n', ""), "v.toml")
    assert "policies.1: 'emea' matches every ticket, so 'standard' can never match" in check_policy(
        shadowed
    )
    assert not any("never match" in w for w in check_policy(POLICY))


@pytest.mark.parametrize(
    ("earlier", "later", "shadowed"),
    [
        # gold tickets of any group go to premium first: gold EMEA tickets never reach emea.
        (
            '{ attributes = { tier = "gold" } }',
            '{ group = "emea", attributes = { tier = "gold" } }',
            True,
        ),
        ('{ group = ["emea", "apac"] }', '{ group = "emea", channel = "phone" }', True),
        ('{ tags = ["vip", "vvip"] }', '{ tags = "vip" }', True),
        # not shadowed: each lets through tickets the earlier refuses.
        ('{ attributes = { tier = "gold" } }', '{ group = "emea" }', False),
        ('{ tags = "vip" }', '{ tags = ["vip", "vvip"] }', False),
        ('{ group = "emea", channel = "phone" }', '{ group = "emea" }', False),
    ],
)
def test_check_warns_about_a_policy_shadowed_by_an_earlier_narrower_match(
    earlier: str, later: str, shadowed: bool
) -> None:
    """Not only a catch-all shadows: an earlier policy whose conditions every ticket of a later
    one meets takes all its tickets (issue #8 §4: a policy that can never match)."""
    text = VENDOR.replace('match = { attributes = { tier = "gold" } }', f"match = {earlier}")
    text = text.replace('match = { group = "emea" }', f"match = {later}")
    warnings = check_policy(parse_policy(text, "v.toml"))
    expected = (
        "policies.1: 'emea' can never match: every ticket it matches matches 'premium' "
        "(policies.0) first"
    )
    assert (expected in warnings) == shadowed
    assert not any("'standard' can never match" in w for w in warnings)


@pytest.mark.parametrize(
    ("condition", "key"),
    [
        ("{ tags = [] }", "policies.0.match.tags"),
        ("{ customer = [] }", "policies.0.match.customer"),
        ("{ attributes = { tier = [] } }", "policies.0.match.attributes.tier"),
    ],
)
def test_an_empty_list_of_accepted_values_is_refused(condition: str, key: str) -> None:
    """`tags = []` used to read as no condition (premium for every ticket) and `tier = []` as
    one no ticket meets; either way not what was written."""
    text = VENDOR.replace('match = { attributes = { tier = "gold" } }', f"match = {condition}")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "v.toml")
    assert str(caught.value).startswith(f"v.toml: {key}: Value should have at least 1 item")


def test_check_shows_the_holiday_categories_a_calendar_closes_on() -> None:
    """A calendar closed on optional holidays too read 'holidays: CA-ON' like one closed on
    public holidays only; policy check now names the categories (found trying #8)."""
    text = VENDOR.replace('holidays = "CA-ON"', 'holidays = { country = "CA", subdivision = "ON", '
                          'categories = ["public", "optional"] }')  # fmt: skip
    assert text != VENDOR
    described = describe_policy(parse_policy(text, "v.toml"))
    assert "holidays: CA-ON (public, optional);" in described
    assert "holidays: PL;" in describe_policy(POLICY)  # the package's default: public


def test_a_metric_and_a_level_on_another_calendar_than_their_policy_count_on_theirs() -> None:
    """The policy counts on Toronto office hours, but first response and the escalation name
    the 24x7 calendar: opened Saturday 2026-11-28 10:00 Toronto, first response (2h) is due
    12:00 the same Saturday and the level (3h) fires 13:00; resolution (8h, the policy's
    calendar) waits for Monday: 09:00-17:00 -> due Monday 2026-11-30 17:00."""
    text = (
        'name = "m"\ncalendar = "office"\n'
        '[calendars.always]\ntimezone = "America/Toronto"\nhours = "24x7"\n'
        '[calendars.office]\ntimezone = "America/Toronto"\n'
        '[calendars.office.hours]\nmon = ["09:00-17:00"]\ntue = ["09:00-17:00"]\n'
        "[severity.1]\n"
        'first_response = { target = "2h", calendar = "always" }\n'
        'resolution = { target = "8h" }\n'
        'escalations = [{ after = "3h", to = "lead", clock = "business", calendar = "always" }]\n'
    )
    out = replay(
        [event("opened", "2026-11-28 10:00", severity=1)],
        parse_policy(text, "m.toml"),
        "2026-11-30 18:00",
    )
    assert [(r["type"], r["metric"], r["due_at"], r["policy"]["calendar"]) for r in out] == [
        ("sla.breached", "first_response", utc("2026-11-28 12:00"), "always"),
        ("ticket.escalated", "escalation", utc("2026-11-28 13:00"), "always"),
        ("sla.breached", "resolution", utc("2026-11-30 17:00"), "office"),
        ("customer.notification_required", "resolution", utc("2026-11-30 17:00"), "office"),
    ]
