"""Policy durations: `30m`, `4h`, `2d` (elapsed days), `1bd` (business days), or `1h30m`."""

from __future__ import annotations

import re
from fractions import Fraction

from events.instants import DAY, HOUR, MINUTE, SECOND, Micros

_PART = re.compile(r"(\d+(?:\.\d+)?)(bd|d|h|m|s)")
_UNITS: dict[str, Micros] = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}

MAX_ELAPSED: Micros = 36_525 * DAY
"""The longest duration on the elapsed clock: 100 years."""
MAX_BUSINESS_DAYS = 26_100
"""The longest duration on a business clock, in business days: 100 years of five-day weeks.

With these caps every deadline of an event in the supported range (up to year 8999, see
`events.instants.MAX_INSTANT`) stays a representable date even on a calendar open one day a
week (26,100 weeks is 500 years); longer targets used to pass `policy check` and then fail
every ticket at run time.
"""


def parse_duration(text: str, business_day: Micros, business: bool = False) -> Micros:
    """Microseconds of a duration; `bd` is one business day of `business_day` microseconds.

    A business day is the calendar's open-to-close length, so `1bd` on an 08:00-18:30 calendar
    is 10h30m of business time. `business` says the duration is measured on a business clock
    (it is then capped in business days, else in elapsed time). Arithmetic is exact; ValueError
    for text that is not a duration, a duration under one microsecond, or one over the caps.
    """
    compact = text.replace(" ", "").lower()
    if not compact:
        raise ValueError("empty duration")
    total = Fraction(0)
    position = 0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        amount, unit = Fraction(match.group(1)), match.group(2)
        total += amount * (business_day if unit == "bd" else _UNITS[unit])
        position = match.end()
    if position != len(compact) or len(compact) > 64:
        raise ValueError(
            f"invalid duration {text[:64]!r}: use a number and a unit: s, m, h, d (elapsed days) "
            "or bd (business days), e.g. '30m', '4h', '1bd', '1h30m'"
        )
    micros = round(total)
    if micros <= 0:
        raise ValueError(f"duration {text!r} must be positive (at least one microsecond)")
    if business and micros > MAX_BUSINESS_DAYS * business_day:
        raise ValueError(
            f"duration {text!r} is longer than {MAX_BUSINESS_DAYS} business days (the most "
            "supported, 100 years of five-day weeks)"
        )
    if not business and micros > MAX_ELAPSED:
        raise ValueError(f"duration {text!r} is longer than 100 years (the most supported)")
    return micros


def parse_delay(text: str) -> Micros:
    """A bound such as `--max-delay` or `--allowed-lateness` in microseconds: seconds (`900`,
    `0`) or a duration (`15m`, `0.5s`, `2h`); raises ValueError naming what is wrong."""
    try:
        seconds = float(text)
    except ValueError:
        return 0 if text.strip() in ("0s", "0m") else parse_duration(text, DAY)
    if not 0 <= seconds < 1e12:
        raise ValueError(f"{text!r} must be a number of seconds from 0, or a duration")
    return round(seconds * SECOND)
