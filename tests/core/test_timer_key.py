"""A timer's identity as a value (`TimerKey`, issue #21): the parts it is made of, and the
text that event ids and stored states spell, unchanged since the seed."""

from __future__ import annotations

import pytest

from streams.sla.policy import load_policy
from streams.sla.state import Timer
from streams.sla.timer_key import NO_ROUND, TimerKey, fired_repeat, parse


def test_a_round_of_a_rounded_metric_is_spelled_with_its_number() -> None:
    breach = TimerKey("next_response", "breached")
    third = breach.at_round(3)
    assert (third.name, third.round, third.text) == ("breached", 3, "breached@3")
    assert third.fired == "next_response:breached@3"
    assert breach.at_round(3) is third  # made once, shared by every ticket
    assert breach.at_round(0).text == "breached@0"  # round 0 is a round, as before
    assert breach.round == NO_ROUND and breach.text == "breached"


def test_an_escalation_repeat_is_spelled_after_its_level() -> None:
    level = TimerKey("escalation", "level:2", NO_ROUND, 2)
    fourth = level.repeat_of(4)
    assert (fourth.level, fourth.repeat, fourth.text) == (2, 4, "level:2:repeat:4")
    assert fourth.fired == "escalation:level:2:repeat:4"
    assert fired_repeat(fourth.fired, level.repeat_prefix) == 4
    assert fired_repeat("escalation:level:2", level.repeat_prefix) == -1
    assert fired_repeat("escalation:level:3:repeat:1", level.repeat_prefix) == -1


@pytest.mark.parametrize(
    ("metric", "text", "parts"),
    [
        ("first_response", "warning:0.75", ("warning:0.75", NO_ROUND, 0, 0)),
        ("resolution", "warning:before:4h", ("warning:before:4h", NO_ROUND, 0, 0)),
        ("resolution", "breached", ("breached", NO_ROUND, 0, 0)),
        ("next_response", "warning:before:15m@2", ("warning:before:15m", 2, 0, 0)),
        ("periodic_update", "breached@12", ("breached", 12, 0, 0)),
        ("escalation", "level:1", ("level:1", NO_ROUND, 1, 0)),
        ("escalation", "level:3:repeat:2", ("level:3", NO_ROUND, 3, 2)),
        ("ticket", "purge", ("purge", NO_ROUND, 0, 0)),
    ],
)
def test_a_stored_timer_reads_back_into_its_parts_and_the_same_text(
    metric: str, text: str, parts: tuple[str, int, int, int]
) -> None:
    key = parse(metric, text)
    assert (key.name, key.round, key.level, key.repeat) == parts
    assert key.text == text
    assert key.fired == f"{metric}:{text}"


def test_text_that_is_not_a_timer_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="field 'timers'"):
        parse("escalation", "level:2:repeat:04")  # would be written back as `...:repeat:4`
    with pytest.raises(ValueError, match="field 'timers'"):
        parse("escalation", "level")
    with pytest.raises(ValueError, match="field 'timers'"):
        parse("next_response", "breached@x")


def test_a_warning_by_fraction_has_the_threshold_its_name_says() -> None:
    assert TimerKey("first_response", "warning:0.5").threshold == 0.5
    assert TimerKey("first_response", "warning:0.123457").threshold == 0.123457


def test_the_default_policy_marks_carry_the_seed_names() -> None:
    """Severity 1 of the default policy: resolution warns at half its target, escalates once."""
    rules = load_policy().severities[1]
    assert rules.resolution is not None
    assert [mark.timer.fired for mark in rules.resolution.marks] == [
        "resolution:warning:0.5",
        "resolution:breached",
    ]
    assert rules.escalations[0].timer.fired == "escalation:level:1"
    assert rules.escalations[0].repeat_prefix == "escalation:level:1:repeat:"


def test_timers_due_at_one_instant_with_one_rank_sort_by_text() -> None:
    """As when the key was a string: `warning:0.5` before `warning:before:1h`."""
    by_lead = Timer(10, (0, 0.5), "first_response", TimerKey("first_response", "warning:before:1h"))
    by_fraction = Timer(10, (0, 0.5), "first_response", TimerKey("first_response", "warning:0.5"))
    assert sorted([by_lead, by_fraction]) == [by_fraction, by_lead]
    assert parse("first_response", "warning:0.5") == TimerKey("first_response", "warning:0.5")
