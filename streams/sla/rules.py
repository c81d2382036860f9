"""The compiled rules of a policy: targets in microseconds and the timers each metric arms.

Frozen dataclasses and the plain `Policy` class, built once by `streams.sla.policy` from the
TOML file and read by the state machine on every event; kept apart from the pydantic file
format so the SLA core compiles to native code (see setup.py) without pulling pydantic in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from events.instants import Micros
from streams.sla.clocks import BusinessCalendar, Clock, ElapsedClock

ClockName = Literal["business", "elapsed"]
MetricName = Literal["first_response", "resolution"]


@dataclass(frozen=True, slots=True)
class MetricRule:
    """A response or resolution target on one clock, with warning thresholds."""

    metric: MetricName
    target: Micros
    clock: ClockName
    pausable: bool
    warn_at: tuple[float, ...]
    marks: tuple[Mark, ...] = field(init=False, repr=False, compare=False)
    """The metric's timers: each warning threshold, then the breach (derived, in order)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "marks", _marks(self))


@dataclass(frozen=True, slots=True)
class Mark:
    """One timer of a metric: its rule name, how much clock time it needs, its fired-key.

    `rank` orders it among the ticket's timers due at the same instant (see state.Timer).
    """

    rule: str
    amount: Micros
    fraction: float
    key: str
    rank: tuple[int, float]


_METRIC_RANK: dict[str, int] = {"first_response": 0, "resolution": 1}


def _marks(rule: MetricRule) -> tuple[Mark, ...]:
    rank = _METRIC_RANK[rule.metric]
    warnings = [
        Mark(
            f"warning:{f:g}",
            round(rule.target * f),
            f,
            f"{rule.metric}:warning:{f:g}",
            (rank, f),
        )
        for f in rule.warn_at
    ]
    breach = Mark("breached", rule.target, 1.0, f"{rule.metric}:breached", (rank, 1.0))
    return (*warnings, breach)


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Escalate to `to` once `after` has passed since the report, on `clock` (never paused)."""

    level: int
    after: Micros
    clock: ClockName
    to: str
    rule: str = field(init=False, repr=False, compare=False)
    """The timer's rule name, `level:<level>` (derived)."""
    key: str = field(init=False, repr=False, compare=False)
    """Its fired-key, `escalation:level:<level>` (derived)."""
    rank: tuple[int, float] = field(init=False, repr=False, compare=False)
    """Its order among timers due at the same instant (derived)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", f"level:{self.level}")
        object.__setattr__(self, "key", f"escalation:level:{self.level}")
        object.__setattr__(self, "rank", (2, float(self.level)))


@dataclass(frozen=True, slots=True)
class SeverityRules:
    first_response: MetricRule | None
    resolution: MetricRule | None
    escalations: tuple[EscalationRule, ...]

    def metric(self, name: MetricName) -> MetricRule | None:
        return self.first_response if name == "first_response" else self.resolution


class Policy:
    """A compiled policy: what the state machine needs, nothing it has to parse.

    `streams.sla.policy` builds it from the TOML file; a plain class so mypyc compiles it.
    """

    __slots__ = ("_ref", "calendar", "calendars", "name", "severities", "version")

    def __init__(
        self,
        name: str,
        version: str,
        calendar: BusinessCalendar,
        severities: dict[int, SeverityRules],
        calendars: dict[str, BusinessCalendar] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.calendar = calendar
        """The policy's default business calendar."""
        self.calendars = calendars if calendars is not None else {"default": calendar}
        """Every calendar of the policy file by name."""
        self.severities = severities
        self._ref = {"name": name, "version": version}

    def clock(self, name: str) -> Clock:
        return self.calendar if name == "business" else ELAPSED

    def ref(self) -> dict[str, str]:
        """`{"name", "version"}` for outbound events: one dict, shared; never change it."""
        return self._ref


ELAPSED: Final = ElapsedClock()
