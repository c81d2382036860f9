"""SLA policy: a TOML file, validated by pydantic, compiled into targets in microseconds.

The file format is the integrator-facing contract (see README); `Policy` is what the pure
state machine runs on. Errors name the file and the key, e.g.
`policy.toml: severity.1.resolution.target: invalid duration '1x' ...`.
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import date, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from events.instants import DAY, Micros, format_duration
from streams.sla.clocks import BusinessCalendar
from streams.sla.durations import parse_duration
from streams.sla.rules import (
    ClockName,
    EscalationRule,
    MetricName,
    MetricRule,
    Policy,
    SeverityRules,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_POLICY_RESOURCE = "default_policy.toml"


class PolicyError(ValueError):
    """An invalid policy file; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalendarSpec(_Strict):
    timezone: str
    open: time
    close: time
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    holidays: str | None = None
    closures: list[date] = []

    @field_validator("open", "close", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 5:
            return value + ":00"
        return value


class MetricSpec(_Strict):
    target: str
    clock: ClockName = "business"
    pausable: Annotated[bool, Strict()] = False
    warn_at: list[Annotated[float, Strict(), Field(gt=0, lt=1)]] = []
    """Fractions of the target as TOML numbers (`["0.5"]`, a string, is rejected)."""


class EscalationSpec(_Strict):
    after: str
    clock: ClockName = "elapsed"
    to: str = Field(min_length=1)


class SeveritySpec(_Strict):
    first_response: MetricSpec | None = None
    resolution: MetricSpec | None = None
    escalations: list[EscalationSpec] = []


class PolicySpec(_Strict):
    name: str = Field(min_length=1)
    version: str | None = None
    calendar: CalendarSpec
    severity: dict[Literal["1", "2", "3", "4"], SeveritySpec]


_CALENDAR_KEYS = (
    ("unknown time zone", "timezone"),
    ("opens (", "open"),
    ("open (", "open"),
    ("a business calendar needs at least one weekday", "weekdays"),
    ("weekdays", "weekdays"),
    ("closures", "closures"),
    ("bad holiday spec", "holidays"),
    ("holiday", "holidays"),
)


def calendar_key(table: str, reason: str) -> str:
    """The key a calendar error is about, as the file spells it (`calendar.timezone`).

    Errors raised while building a calendar name what is wrong in words; this maps them to the
    key so every policy error names the file's own key. `table` is the calendar's table.
    """
    for start, key in _CALENDAR_KEYS:
        if reason.startswith(start):
            return f"{table}.{key}"
    return table


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def compile_policy(spec: PolicySpec, source: str) -> Policy:
    """Turn a validated spec into targets in microseconds; `source` names the file in errors."""
    cal = spec.calendar
    try:
        calendar = BusinessCalendar(
            timezone=cal.timezone,
            opens=cal.open,
            closes=cal.close,
            weekdays=[WEEKDAYS.index(day) for day in cal.weekdays],
            holidays=cal.holidays,
            closures=cal.closures,
        )
    except (ValueError, KeyError) as exc:
        raise PolicyError(f"{source}: {calendar_key('calendar', str(exc))}: {exc}") from None

    def duration(text: str, key: str, clock: ClockName) -> Micros:
        try:
            return parse_duration(text, calendar.day_length, business=clock == "business")
        except ValueError as exc:
            raise PolicyError(f"{source}: {key}: {exc}") from None

    def metric(m: MetricSpec | None, name: MetricName, key: str) -> MetricRule | None:
        if m is None:
            return None
        return MetricRule(
            metric=name,
            target=duration(m.target, f"{key}.target", m.clock),
            clock=m.clock,
            pausable=m.pausable,
            warn_at=tuple(sorted(set(m.warn_at))),
        )

    severities: dict[int, SeverityRules] = {}
    for level, sev in spec.severity.items():
        key = f"severity.{level}"
        escalations = tuple(
            EscalationRule(
                level=index + 1,
                after=duration(esc.after, f"{key}.escalations.{index}.after", esc.clock),
                clock=esc.clock,
                to=esc.to,
            )
            for index, esc in enumerate(sev.escalations)
        )
        severities[int(level)] = SeverityRules(
            first_response=metric(sev.first_response, "first_response", f"{key}.first_response"),
            resolution=metric(sev.resolution, "resolution", f"{key}.resolution"),
            escalations=escalations,
        )
    version = (
        spec.version
        or "sha256:"
        + hashlib.sha256(
            orjson.dumps(spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:12]
    )
    return Policy(spec.name, version, calendar, severities)


def parse_policy(text: str, source: str) -> Policy:
    """Parse and compile policy TOML text; `source` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: invalid TOML: {exc}") from None
    try:
        spec = PolicySpec.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{_location(err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise PolicyError(f"{source}: {reasons}") from None
    return compile_policy(spec, source)


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file, or the shipped default (the Clevr Help Desk SLA) when `path` is None."""
    if path is None:
        text = resources.files("streams.sla").joinpath(DEFAULT_POLICY_RESOURCE).read_text()
        return parse_policy(text, DEFAULT_POLICY_RESOURCE)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    return parse_policy(text, str(path))


def check_policy(policy: Policy) -> list[str]:
    """Warnings about a valid policy that is probably not what its author meant."""
    warnings: list[str] = []
    day = policy.calendar.day_length
    for level in range(1, 5):
        rules = policy.severities.get(level)
        if rules is None:
            warnings.append(
                f"severity.{level}: not defined; tickets of severity {level} are rejected"
            )
            continue
        fr, res = rules.first_response, rules.resolution
        if fr and res and fr.target > res.target:
            warnings.append(
                f"severity.{level}: first_response target is later than the resolution target"
            )
        for name, rule in (("first_response", fr), ("resolution", res)):
            if rule and rule.clock == "business" and rule.target % DAY == 0 and rule.target % day:
                warnings.append(
                    f"severity.{level}.{name}: {format_duration(rule.target)} of business time is "
                    f"{rule.target / day:.2f} business days; did you mean business days ('bd')?"
                )
        afters = [esc.after for esc in rules.escalations]
        if afters != sorted(afters):
            warnings.append(f"severity.{level}.escalations: levels are not in increasing order")
        if rules.escalations and res is None:
            warnings.append(f"severity.{level}: escalations without a resolution target")
    return warnings
