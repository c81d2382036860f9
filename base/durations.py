"""Durations written as text, one grammar for every caller: a number and a unit (`30m`, `4h`,
`2d`), in integer microseconds.

Each caller keeps the set it has always accepted, as a `Grammar` of its own (issue #21): the
policy language takes decimals, compounds, spaces and business days (`1.5h`, `1h30m`,
`1 h 30 m`, `1bd`; `POLICY`); a query window or a duration before now takes one whole number
of ASCII digits and one unit, weeks included (`90s`, `2d`, `1w`; `events.when.WINDOW`).
The ground floor: imports nothing of the project (`events.instants` takes its units from here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Final

Micros = int
"""An instant (microseconds since 1970-01-01T00:00:00Z) or a duration in microseconds."""

SECOND: Final[Micros] = 1_000_000
MINUTE: Final[Micros] = 60 * SECOND
HOUR: Final[Micros] = 60 * MINUTE
DAY: Final[Micros] = 24 * HOUR
WEEK: Final[Micros] = 7 * DAY

_UNITS: dict[str, Micros] = {"w": WEEK, "d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND}
BUSINESS_DAY_UNIT = "bd"
"""One business day: the calendar's open-to-close length, given by the caller."""


@dataclass(frozen=True)
class Grammar:
    """Which spellings of a duration a caller accepts.

    `units` from `w`, `d`, `h`, `m`, `s` and `bd`; `decimals`: `1.5h`; `compound`: `1h30m`;
    `spaces`: spaces anywhere are ignored (`1 h 30 m`), else only whitespace around the text;
    `any_digits`: digits of any script (`\\d`), else ASCII `0-9` only. Units are case-blind.
    """

    units: tuple[str, ...]
    decimals: bool = False
    compound: bool = False
    spaces: bool = False
    any_digits: bool = False

    def normal(self, text: str) -> str:
        """The text as matched: lower case, spaces removed (`spaces`) or stripped."""
        return (text.replace(" ", "") if self.spaces else text.strip()).lower()


POLICY = Grammar(("bd", "d", "h", "m", "s"), decimals=True, compound=True, spaces=True,
                 any_digits=True)  # fmt: skip
"""Policy durations (and `--max-delay` bounds): `30m`, `4h`, `2d`, `1bd`, `1.5h`, `1h30m`."""


@cache
def _part(grammar: Grammar) -> re.Pattern[str]:
    digit = r"\d" if grammar.any_digits else "[0-9]"
    number = f"{digit}+(?:\\.{digit}+)?" if grammar.decimals else f"{digit}+"
    units = "|".join(sorted(grammar.units, key=len, reverse=True))  # `bd` before `d`
    return re.compile(f"({number})({units})")


def measure(text: str, grammar: Grammar, business_day: Micros = DAY) -> Fraction | None:
    """The exact microseconds `text` spells in `grammar` (`bd` counts `business_day`
    microseconds), or None when it is not one of the grammar's durations. The shape only:
    zero, rounding and caps are each caller's to decide."""
    compact = grammar.normal(text)
    part = _part(grammar)
    if not grammar.compound:
        whole = part.fullmatch(compact)
        return None if whole is None else _amount(whole, business_day)
    total = Fraction(0)
    position = 0
    for match in part.finditer(compact):
        if match.start() != position:
            break
        total += _amount(match, business_day)
        position = match.end()
    return total if compact and position == len(compact) else None


def _amount(match: re.Match[str], business_day: Micros) -> Fraction:
    unit = match.group(2)
    return Fraction(match.group(1)) * (business_day if unit == BUSINESS_DAY_UNIT else _UNITS[unit])


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
    compact = POLICY.normal(text)
    if not compact:
        raise ValueError("empty duration")
    total = measure(text, POLICY, business_day)
    if total is None or len(compact) > 64:
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
