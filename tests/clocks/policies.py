"""Policy files of issue 24's tests (per-ticket calendars, deadline targets, manual stops,
breach reasons), with the issue's calendars: `toronto` and `warsaw`, 09:00-17:00 Mon-Fri."""

from __future__ import annotations

from typing import Final

from streams.sla.policy import parse_policy
from streams.sla.rules import Policy

CALENDARS: Final = """
name = "follow-the-sun"
version = "24"
calendar = "toronto"

[calendars.toronto]
timezone = "America/Toronto"
open = "09:00"
close = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]

[calendars.warsaw]
timezone = "Europe/Warsaw"
open = "09:00"
close = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
holidays = "PL"
"""

GROUPS: Final = (
    CALENDARS
    + """
[group_calendars]
emea = "warsaw"
amer = "toronto"

[severity.2.first_response]
target = "4h"
calendar = "group"

[severity.2.resolution]
target = "2bd"
calendar = "group"
"""
)

REGION: Final = (
    CALENDARS
    + """
[severity.2.first_response]
target = "4h"
calendar = "attribute:region"
calendar_default = "warsaw"
"""
)

DEADLINES: Final = (
    CALENDARS
    + """
[severity.3.first_response]
target = { next_business_day_at = "16:00" }
calendar = "warsaw"

[severity.3.resolution]
target = { from_attribute = "agreed_due_at", otherwise = "8h" }
clock = "elapsed"
warn_at = [0.5]
"""
)

STOPS: Final = (
    CALENDARS
    + """
[stop_clock]
reasons = ["third_party", "customer_hold", "outage"]
metrics = ["resolution"]
max = "2h"

[breach_reasons]
codes = ["customer_unreachable", "outage", "agent_error"]
exempt = ["customer_unreachable", "outage"]

[severity.1.first_response]
target = "1h"
clock = "elapsed"

[severity.1.resolution]
target = "4h"
clock = "elapsed"
pausable = true
"""
)


def policy(text: str) -> Policy:
    return parse_policy(text, "issue24.toml")


ALL: Final = (
    CALENDARS
    + """
[group_calendars]
emea = "warsaw"
amer = "toronto"

[stop_clock]
reasons = ["third_party", "customer_hold", "outage"]
metrics = ["resolution"]
max = "1d"

[breach_reasons]
codes = ["customer_unreachable", "outage", "agent_error"]
exempt = ["customer_unreachable", "outage"]

[severity.2.first_response]
target = "4h"
calendar = "group"

[severity.2.resolution]
target = "2bd"
calendar = "group"
pausable = true
"""
)
"""Every feature at once: group calendars, a governed stop, breach reasons (surface tests)."""
