"""Time parameters: an RFC 3339 instant with an offset, or a duration before now (`24h`, `1w`).

Shared by `escalator sample --start` (the contract's sample) and the read models' queries
(`since`, `from`, `now`, `breaching_within`: projections.queries wraps the errors in its
BadParameter naming the parameter). A window is one whole number of ASCII digits and a unit,
weeks included (`WINDOW`): no decimals, compounds or business days, unlike a policy duration.
"""

from __future__ import annotations

from base.durations import Grammar, measure
from events.instants import MAX_INSTANT, MIN_INSTANT, SUPPORTED_RANGE, Micros, parse_rfc3339

WINDOW = Grammar(("w", "d", "h", "m", "s"))
"""A window or a duration before now: `90s`, `15m`, `1h`, `2d`, `1w`."""


def shown(text: str) -> str:
    """A bounded, printable echo of a rejected value (never more than 40 characters)."""
    return ascii(text[:40])


def parse_window(text: str) -> Micros:
    """A positive elapsed duration such as `90s`, `15m`, `1h`, `2d`, `1w` (ASCII digits only),
    at most the length of the supported time range. Raises ValueError saying why."""
    value = measure(text, WINDOW)
    if value is None or value <= 0:
        raise ValueError(f"expected a duration such as 30m, 1h or 2d, got {shown(text)}")
    if value > MAX_INSTANT - MIN_INSTANT:
        raise ValueError(f"{shown(text)} is longer than the supported time range")
    return int(value)


def _check_instant(value: Micros, text: str) -> Micros:
    if not MIN_INSTANT <= value <= MAX_INSTANT:
        raise ValueError(f"{shown(text)} is outside the supported range, {SUPPORTED_RANGE}")
    return value


def check_when(text: str) -> str:
    """Validate a time parameter: a strict RFC 3339 instant with an offset, inside the
    supported range (`events.instants.parse_rfc3339`), or a duration before now (`24h`,
    `30d`). Returns the text; raises ValueError saying why."""
    stripped = text.strip()
    if measure(stripped, WINDOW) is not None:
        parse_window(stripped)
        return stripped
    if stripped[:1].isdigit() and stripped[:1].isascii() and "-" in stripped:
        parse_rfc3339(stripped)
        return stripped
    raise ValueError(
        f"expected an RFC 3339 time with offset or a duration such as 24h, got {shown(text)}"
    )


def instant_at(text: str, now: Micros) -> Micros:
    """The instant of a validated time parameter (`check_when`) at `now` (microseconds, UTC);
    ValueError when a duration reaches back before the supported range."""
    stripped = text.strip()
    if measure(stripped, WINDOW) is not None:
        return _check_instant(now - parse_window(stripped), text)
    return parse_rfc3339(stripped)
