"""Issue #19 item 15: `policy check` spells business time in hours and names calendars.

On a 12-hour business calendar, 48 business hours are 4 business days: "after 2d business"
read as two days. Business durations are shown in hours with the business days of their own
calendar's length, and each escalation names its calendar like a target does.
"""

from __future__ import annotations

from streams.sla.cli import describe_policy
from streams.sla.policy import parse_policy

POLICY = """
name = "twelve"
version = "t"
calendar = "office"
[calendars.office]
timezone = "Europe/Warsaw"
open = "08:00"
close = "20:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
[calendars.always]
timezone = "UTC"
hours = "24x7"
[severity.2]
first_response = { target = "2h" }
resolution = { target = "48h" }
escalations = [
  { after = "48h", to = "lead", clock = "business" },
  { after = "48h", to = "duty", clock = "business", calendar = "always" },
  { after = "30m", to = "pager", clock = "elapsed" },
]
"""


def test_business_time_in_hours_and_days_of_its_calendar() -> None:
    text = describe_policy(parse_policy(POLICY, "twelve.toml"))
    row = next(line for line in text.splitlines() if line.startswith("2 "))
    assert "48h business office (4bd)" in row  # the resolution target
    assert "L1 lead after 48h business office (4bd)" in row
    assert "L2 duty after 48h business always (2bd)" in row  # 24-hour days there
    assert "L3 pager after 30m elapsed" in row
    assert "2d business" not in text
