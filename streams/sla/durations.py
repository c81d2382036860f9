"""Policy durations: `30m`, `4h`, `2d` (elapsed days), `1bd` (business days), or `1h30m`."""

from __future__ import annotations

import re

from events.instants import DAY, HOUR, MINUTE, SECOND, Micros

_PART = re.compile(r"(\d+(?:\.\d+)?)(bd|d|h|m|s)")
_UNITS: dict[str, Micros] = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}


def parse_duration(text: str, business_day: Micros) -> Micros:
    """Microseconds of a duration; `bd` is one business day of `business_day` microseconds.

    A business day is the calendar's open-to-close length, so `1bd` on an 08:00-18:30 calendar
    is 10h30m of business time.
    """
    compact = text.replace(" ", "").lower()
    if not compact:
        raise ValueError("empty duration")
    total = 0.0
    position = 0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        amount, unit = float(match.group(1)), match.group(2)
        total += amount * (business_day if unit == "bd" else _UNITS[unit])
        position = match.end()
    if position != len(compact):
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit: s, m, h, d (elapsed days) "
            "or bd (business days), e.g. '30m', '4h', '1bd', '1h30m'"
        )
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return round(total)
