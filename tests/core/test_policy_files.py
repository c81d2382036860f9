"""Issue #10 sections 2 and 7: policy files fail `policy check` with a reason naming the key.

Each input is the issue's value. What `policy check` accepts must run: a duration too long
for the core used to pass the check and then fail every ticket at run time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from base.durations import MAX_BUSINESS_DAYS, parse_duration
from events.codec import decode_ticket_event
from events.instants import MAX_INSTANT, format_instant
from streams.sla.fold import handle
from streams.sla.policy import PolicyError, load_policy, parse_policy
from tests.core.test_cli import escalator
from tests.core.test_hostile_input import opened

CALENDAR = (
    '[calendar]\ntimezone = "America/Toronto"\nopen = "08:00"\nclose = "18:30"\n'
    'weekdays = ["mon", "tue", "wed", "thu", "fri"]\n'
)


def policy_text(metric: str) -> str:
    return f'name = "p"\n{CALENDAR}[severity.1]\nresolution = {{ {metric} }}\n'


def reason(metric: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy_text(metric), "p.toml")
    return str(caught.value)


def test_5000000bd_is_rejected_by_policy_check_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "long.toml"
    path.write_text(policy_text('target = "5000000bd"'))
    result = escalator("policy", "check", str(path))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert f"{path}: severity.1.resolution.target: duration '5000000bd' is longer than" in err
    assert "Traceback" not in err


def test_durations_are_capped_per_clock() -> None:
    assert "longer than 100 years" in reason('target = "36526d", clock = "elapsed"')
    assert "business days" in reason(f'target = "{MAX_BUSINESS_DAYS + 1}bd"')
    parse_policy(policy_text(f'target = "{MAX_BUSINESS_DAYS}bd"'), "p.toml")
    parse_policy(policy_text('target = "36525d", clock = "elapsed"'), "p.toml")
    escalation = 'escalations = [{ after = "40000d", clock = "elapsed", to = "x" }]\n'
    with pytest.raises(PolicyError, match=r"severity\.1\.escalations\.0\.after: .* 100 years"):
        parse_policy(policy_text('target = "4h"') + escalation, "p.toml")


def test_the_longest_target_still_runs_at_the_end_of_the_supported_range() -> None:
    """An event at the last supported instant with the longest business target: no error."""
    policy = parse_policy(
        'name = "p"\n[calendar]\ntimezone = "America/Toronto"\nopen = "08:00"\n'
        'close = "08:01"\nweekdays = ["mon"]\n[severity.1]\n'
        f'resolution = {{ target = "{MAX_BUSINESS_DAYS}bd" }}\n',
        "p.toml",
    )
    event = decode_ticket_event(opened(severity=1, occurred_at=format_instant(MAX_INSTANT)))
    outcome = handle(None, event, policy)
    assert outcome.rejected is None and outcome.state is not None
    assert outcome.state.next_due is not None


def test_a_target_under_a_microsecond_is_rejected_like_zero() -> None:
    assert "must be positive" in reason('target = "0.0000001s"')
    assert "must be positive" in reason('target = "0h"')
    assert parse_duration("0.000001s", 0) == 1
    assert parse_duration("1.5h", 0) == 5_400_000_000


def test_warn_at_must_be_numbers() -> None:
    assert "severity.1.resolution.warn_at.0" in reason('target = "4h", warn_at = ["0.5"]')
    assert "severity.1.resolution.pausable" in reason('target = "4h", pausable = "yes"')
    parse_policy(policy_text('target = "4h", warn_at = [0.5], pausable = true'), "p.toml")


def test_a_file_that_is_not_utf8_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(policy_text('target = "4h"').replace('"p"', '"caf\xe9"').encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8 text"):
        load_policy(path)
    result = escalator("policy", "check", str(path))
    assert result.returncode == 2
    assert b"not UTF-8 text" in result.stderr and b"Traceback" not in result.stderr


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM; it was read as TOML and refused ('Invalid
    statement (at line 1, column 1)'). Found trying #8 as a new user."""
    text = policy_text('target = "4h"')
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_policy(path).version == parse_policy(text, "p.toml").version


@pytest.mark.parametrize(
    ("calendar", "key"),
    [
        ('timezone = "Mars/Base"\nopen = "08:00"\nclose = "18:00"\n', "calendar.timezone"),
        ('timezone = "UTC"\nopen = "18:00"\nclose = "08:00"\n', "calendar.open"),
        ('timezone = "UTC"\nopen = "08:00"\nclose = "18:00"\nholidays = "XX-YY-ZZ"\n',
         "calendar.holidays"),
    ],
)  # fmt: skip
def test_calendar_errors_name_the_key_the_file_uses(calendar: str, key: str) -> None:
    text = f'name = "p"\n[calendar]\n{calendar}weekdays = ["mon"]\n[severity.1]\n'
    with pytest.raises(PolicyError) as caught:
        parse_policy(text + 'resolution = { target = "4h" }\n', "p.toml")
    assert str(caught.value).startswith(f"p.toml: {key}: "), caught.value
