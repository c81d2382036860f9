"""Micro-benchmark of the business-hours clock: ``python tests/bench/bench_clocks.py``.

Not collected by pytest (no ``test_`` prefix). Prints operations per second for ``add`` and
``between`` on the Clevr calendar with spans of up to a few days, after warming the year cache
(as a long-running replay would), plus one cold run that includes building the year tables.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from streams.sla.clocks import BusinessCalendar, ElapsedClock, Micros

HOUR: Micros = 3_600_000_000
N = 200_000


def _calendar() -> BusinessCalendar:
    return BusinessCalendar(
        "America/Toronto",
        datetime.strptime("08:00", "%H:%M").time(),
        datetime.strptime("18:30", "%H:%M").time(),
        range(5),
        holidays="CA-ON",
    )


def _rate(label: str, op: Callable[[Micros, Micros], Micros], pairs: list[tuple[int, int]]) -> None:
    started = time.perf_counter()
    for a, b in pairs:
        op(a, b)
    elapsed = time.perf_counter() - started
    per_op = elapsed / len(pairs) * 1e6
    print(f"{label:<42} {len(pairs) / elapsed:>12,.0f} ops/s  {per_op:6.2f} us/op")


def main() -> None:
    rng = random.Random(42)
    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    year = 365 * 24 * HOUR
    starts = [base + rng.randrange(2 * year) for _ in range(N)]
    durations = [rng.randrange(1, 3 * 24 * HOUR) for _ in range(N)]  # up to 3 days of business
    spans = [rng.randrange(0, 4 * 24 * HOUR) for _ in range(N)]

    cold = _calendar()
    t0 = time.perf_counter()
    cold.add(base, HOUR)
    cold_ms = (time.perf_counter() - t0) * 1e3
    print(f"cold start (build one local year incl. holidays): {cold_ms:.2f} ms")

    cal = _calendar()
    for s in starts[:1000]:
        cal.add(s, HOUR)  # warm the year cache

    # Ordered stream (like a replay: instants mostly move forward, same local year).
    ordered = sorted(starts)
    pairs = list(zip(ordered, durations, strict=True))
    _rate("add, replay order, <=3 business days", cal.add, pairs)
    _rate(
        "between, replay order, spans <=4 days",
        cal.between,
        [(s, s + d) for s, d in zip(ordered, spans, strict=True)],
    )
    _rate("add, random order over 2 years", cal.add, list(zip(starts, durations, strict=True)))
    _rate(
        "between, random order over 2 years",
        cal.between,
        [(s, s + d) for s, d in zip(starts, spans, strict=True)],
    )
    _rate("add, 30 business days", cal.add, [(s, 30 * cal.day_length) for s in ordered])
    _rate(
        "is_open",
        lambda s, _d: int(cal.is_open(s)),
        [(s, 0) for s in ordered],
    )
    elapsed_clock = ElapsedClock()
    _rate("ElapsedClock.add", elapsed_clock.add, pairs)


if __name__ == "__main__":
    main()
