"""SLA policy: a TOML file, validated by pydantic, compiled into targets in microseconds.

The file format is the integrator-facing contract (see README); `Policy` is what the pure
state machine runs on. Errors name the file and the key, e.g.
`policy.toml: severity.1.resolution.target: invalid duration '1x' ...`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from datetime import date as date_type
from datetime import time
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from base.durations import parse_duration
from base.errors import EscalatorError
from events.instants import DAY, SECOND, Micros, format_duration
from streams.sla.clocks import WEEKDAY_NAMES, BusinessCalendar, Interval
from streams.sla.ical import read_ical_closures
from streams.sla.rules import (
    OWNERSHIP,
    ClockName,
    ClockRules,
    EscalationRule,
    Match,
    MetricName,
    MetricRule,
    Ola,
    OwnershipName,
    Policy,
    SeverityRules,
)

WEEKDAYS = WEEKDAY_NAMES
DEFAULT_POLICY_RESOURCE = "default_policy.toml"


class PolicyError(EscalatorError, ValueError):
    """An invalid policy file; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_HOURS = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
WeekdayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_wall_time(text: str, *, closing: bool = False) -> Micros:
    """``"HH:MM"`` or ``"HH:MM:SS"`` as microseconds after local midnight; ``"24:00"`` (the
    midnight that ends a day) only when ``closing``. ValueError names the text."""
    found = _HOURS.match(text.strip())
    if found is None:
        raise ValueError(f"invalid time {text!r}: use HH:MM, e.g. '08:00' or '24:00'")
    hour, minute, second = int(found[1]), int(found[2]), int(found[3] or 0)
    if minute > 59 or second > 59 or hour > 24 or (hour == 24 and (minute or second)):
        raise ValueError(f"invalid time {text!r}")
    if hour == 24 and not closing:
        raise ValueError(f"invalid time {text!r}: 24:00 can only close an interval")
    return ((hour * 60 + minute) * 60 + second) * SECOND


def parse_interval(text: str) -> Interval:
    """``"09:00-17:00"``; an end at or before the start is on the next day (``"22:00-06:00"``
    is a night shift belonging to the day it starts); ``"00:00-24:00"`` is the whole day."""
    start_text, dash, end_text = text.partition("-")
    if not dash:
        raise ValueError(f"invalid hours {text!r}: use OPEN-CLOSE, e.g. '09:00-17:00'")
    start = parse_wall_time(start_text)
    end = parse_wall_time(end_text, closing=True)
    return (start, end if end > start else end + DAY)


def _interval(value: Any) -> Any:
    if isinstance(value, str):
        parse_interval(value)  # ValueError -> a validation error naming the key
    return value


Hours = list[Annotated[str, AfterValidator(_interval)]]


class HolidaysSpec(_Strict):
    country: str
    subdivision: str | None = None
    categories: list[str] = []


class PartialClosureSpec(_Strict):
    """Part of a day closed: wall times ``from`` (default 00:00) to ``to`` (default 24:00) of
    ``date``, checked here so an error names the closure's own key."""

    date: date_type
    from_: str = Field("00:00", alias="from")
    to: str = "24:00"

    @field_validator("from_")
    @classmethod
    def _opens(cls, value: str) -> str:
        parse_wall_time(value)
        return value

    @field_validator("to")
    @classmethod
    def _closes(cls, value: str) -> str:
        parse_wall_time(value, closing=True)
        return value

    @model_validator(mode="after")
    def _in_order(self) -> PartialClosureSpec:
        if parse_wall_time(self.to, closing=True) <= parse_wall_time(self.from_):
            raise ValueError(f"'to' ({self.to}) must be after 'from' ({self.from_})")
        return self


class OpeningSpec(_Strict):
    date: date_type
    hours: Hours = Field(min_length=1)


class CalendarSpec(_Strict):
    """A business calendar: weekly ``hours`` (or the original ``open``/``close``/``weekdays``),
    holidays, closures, extra openings, an iCalendar file of closures."""

    timezone: str
    open: str | None = None
    close: str | None = None

    @field_validator("open", "close", mode="before")
    @classmethod
    def _toml_time(cls, value: Any) -> Any:
        if isinstance(value, time):
            return value.isoformat()
        if isinstance(value, str) and len(value) == 5:
            return value + ":00"  # as the first format's `time` field stored it (hashed)
        return value

    weekdays: list[WeekdayName] | None = Field(None, min_length=1)
    hours: dict[WeekdayName, list[str]] | None = None
    """Per weekday, its intervals; the string ``"24x7"`` is every day 00:00-24:00."""
    holidays: str | HolidaysSpec | None = None
    closures: list[date_type | PartialClosureSpec] = []
    openings: list[OpeningSpec] = []
    ical: str | None = None

    @field_validator("hours", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().lower() != "24x7":
                raise ValueError(f'{value!r}: use "24x7" or a table of weekdays\' intervals')
            return {day: ["00:00-24:00"] for day in WEEKDAYS}
        return value

    @field_validator("hours")
    @classmethod
    def _intervals(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for day, intervals in (value or {}).items():
            for text in intervals:
                try:
                    parse_interval(text)
                except ValueError as exc:
                    raise ValueError(f"{day}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_week(self) -> CalendarSpec:
        legacy = (self.open, self.close, self.weekdays)
        if self.hours is None and None in legacy:
            raise ValueError("give weekly 'hours', or 'open', 'close' and 'weekdays'")
        if self.hours is not None and legacy != (None, None, None):
            raise ValueError("give weekly 'hours' or 'open'/'close'/'weekdays', not both")
        return self

    def week(self) -> list[list[Interval]]:
        """Seven days (Monday first) of intervals."""
        if self.hours is not None:
            by_day = {str(day): hours for day, hours in self.hours.items()}
            return [[parse_interval(text) for text in by_day.get(day, [])] for day in WEEKDAYS]
        assert self.open is not None and self.close is not None and self.weekdays is not None
        span = parse_interval(f"{self.open}-{self.close}")
        if span[1] > DAY:
            raise ValueError(f"open ({self.open}) must be before close ({self.close})")
        return [[span] if day in self.weekdays else [] for day in WEEKDAYS]


class TargetSpec(_Strict):
    """A deadline target (`streams.sla.deadlines`): one of `next_business_day_at` (a wall
    time) or `from_attribute` (the ticket attribute holding an RFC 3339 instant, with the
    `otherwise` duration for a ticket without it)."""

    next_business_day_at: str | None = None
    from_attribute: str | None = Field(None, min_length=1)
    otherwise: str | None = None

    @field_validator("next_business_day_at")
    @classmethod
    def _wall(cls, value: str | None) -> str | None:
        if value is not None:
            parse_wall_time(value)
        return value

    @model_validator(mode="after")
    def _one(self) -> TargetSpec:
        if (self.next_business_day_at is None) == (self.from_attribute is None):
            raise ValueError("give one of next_business_day_at or from_attribute")
        if self.from_attribute is not None and self.otherwise is None:
            raise ValueError("from_attribute needs otherwise (the target without the attribute)")
        if self.next_business_day_at is not None and self.otherwise is not None:
            raise ValueError("otherwise goes with from_attribute only")
        return self


class MetricSpec(_Strict):
    target: str | TargetSpec
    clock: ClockName = "business"
    pausable: Annotated[bool, Strict()] = False
    warn_at: list[Annotated[float, Strict(), Field(gt=0, lt=1)]] = []
    """Fractions of the target as TOML numbers (`["0.5"]`, a string, is rejected)."""
    calendar: str | None = None
    """The calendar a business clock counts on (default: the policy's); `group` (the file's
    `[group_calendars]`) or `attribute:NAME` (a calendar or IANA zone the ticket's attribute
    names) choose it per ticket (`streams.sla.ticket_calendars`)."""
    calendar_default: str | None = None
    """With `group` or `attribute:NAME`: the calendar when the ticket names none (default:
    the policy's)."""
    warn_before: list[str] = []
    """Warnings a fixed time before the breach, on the metric's clock (`["30m"]`)."""


class PeriodicSpec(MetricSpec):
    """`periodic_update`: `target` is the period; paused time does not count by default (an
    update is due while the ticket is open and not paused)."""

    pausable: Annotated[bool, Strict()] = True


class EscalationSpec(_Strict):
    after: str
    clock: ClockName = "elapsed"
    to: str = Field(min_length=1)
    calendar: str | None = None
    repeat_every: str | None = None
    """Escalate again each time this much more has passed (on the level's clock)."""
    max_repeats: Annotated[int, Strict(), Field(ge=1)] | None = None
    """At most this many repeats (default: until the ticket is resolved)."""
    ack_timeout: str | None = None
    """After an acknowledgement, fire the level again when this much has passed (on the
    level's clock) without the ticket progressing (docs/actions.md)."""

    @model_validator(mode="after")
    def _repeats(self) -> EscalationSpec:
        if self.max_repeats is not None and self.repeat_every is None:
            raise ValueError("max_repeats needs repeat_every")
        return self


class SeveritySpec(_Strict):
    first_response: MetricSpec | None = None
    resolution: MetricSpec | None = None
    escalations: list[EscalationSpec] = []
    next_response: MetricSpec | None = None
    periodic_update: PeriodicSpec | None = None


Values = Annotated[
    list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v), Field(min_length=1)
]
"""One string or a non-empty list of them: the values a condition accepts (an empty list would
accept nothing, or read as no condition: neither is what its author meant)."""


class MatchSpec(_Strict):
    """Conditions on the ticket, all of which must hold; none: every ticket."""

    customer: Values = []
    group: Values = []
    channel: Values = []
    tags: Values = []
    """At least one of these tags."""
    attributes: dict[str, Values] = {}


class StopClockSpec(_Strict):
    """The governed manual stop (`ticket.sla_stopped` / `ticket.sla_started`)."""

    reasons: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    metrics: list[MetricName] = Field(min_length=1)
    """The metrics a stop holds (others keep counting)."""
    max: str | None = None
    """The longest stop, elapsed time; a stop held longer ends then (`sla.stop_ended`)."""


class BreachReasonsSpec(_Strict):
    """The codes `ticket.breach_reason` may give; `exempt` ones report `breached-exempt`."""

    codes: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    exempt: list[str] = []

    @model_validator(mode="after")
    def _known(self) -> BreachReasonsSpec:
        unknown = [code for code in self.exempt if code not in self.codes]
        if unknown:
            raise ValueError(f"exempt: {unknown} are not among codes")
        return self


class ChildPolicySpec(_Strict):
    """One policy of a file that holds several (``[[policies]]``)."""

    name: str = Field(min_length=1)
    calendar: str | None = None
    match: MatchSpec = MatchSpec()
    severity: dict[Literal["1", "2", "3", "4"], SeveritySpec]


class OlaSpec(_Strict):
    """An operational level agreement (``[[olas]]``): a group ownership target, attached to
    every ticket its match holds for, alongside the customer SLA and the other OLAs."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    calendar: str | None = None
    match: MatchSpec = MatchSpec()
    severities: list[Literal[1, 2, 3, 4]] = []
    """The severities it applies to (default: every one)."""
    group_ownership: MetricSpec


class PolicySpec(_Strict):
    name: str = Field(min_length=1)
    version: str | None = None
    calendar: CalendarSpec | str | None = None
    """The original single ``[calendar]`` table, or the name of the policy's default calendar
    in ``calendars`` (optional when there is only one)."""
    calendars: dict[str, CalendarSpec] = {}
    severity: dict[Literal["1", "2", "3", "4"], SeveritySpec] | None = None
    policies: list[ChildPolicySpec] = []
    """Several policies, tried in order for each ticket; the last must match every ticket."""
    olas: list[OlaSpec] = []
    """Operational level agreements, each attached wherever its match holds."""
    attribution: Annotated[bool, Strict()] | None = None
    """Whether met, breached and stopped events say who held the ticket while the metric's
    clock ran (default: on in a file with OLAs, off otherwise)."""
    group_calendars: dict[str, str] = {}
    """Group -> calendar, for metrics with `calendar = "group"`."""
    stop_clock: StopClockSpec | None = None
    breach_reasons: BreachReasonsSpec | None = None

    @model_validator(mode="after")
    def _calendar_named(self) -> PolicySpec:
        if isinstance(self.calendar, CalendarSpec):
            if self.calendars:
                raise ValueError("give one [calendar] table or named [calendars.NAME], not both")
        elif self.calendar is None:
            if len(self.calendars) != 1:
                raise ValueError(
                    "give a [calendar] table, or [calendars.NAME] and calendar = NAME "
                    "(the policy's default calendar)"
                )
        elif self.calendar not in self.calendars:
            raise ValueError(f"calendar {self.calendar!r} is not among [calendars]")
        if "elapsed" in self.calendars:
            raise ValueError("'elapsed' names the elapsed clock; give the calendar another name")
        if (self.severity is None) == (not self.policies):
            raise ValueError("give [severity.N] tables, or [[policies]] each with its own")
        olas = [ola.name for ola in self.olas]
        if len(set(olas)) != len(olas):
            raise ValueError(f"olas: names must be unique, got {olas}")
        if self.policies:
            names = [policy.name for policy in self.policies]
            if len(set(names)) != len(names):
                raise ValueError(f"policies: names must be unique, got {names}")
            if self.policies[-1].match != MatchSpec():
                raise ValueError(
                    f"policies: the last policy ({names[-1]!r}) must match every ticket "
                    "(no match conditions), so each ticket has a policy"
                )
        return self

    def named_calendars(self) -> tuple[str, dict[str, CalendarSpec]]:
        """The default calendar's name and every calendar by name (the original ``[calendar]``
        table is named ``default``)."""
        if isinstance(self.calendar, CalendarSpec):
            return "default", {"default": self.calendar}
        return self.calendar or next(iter(self.calendars)), self.calendars


_CALENDAR_KEYS = (
    ("unknown time zone", "timezone"),
    ("opens (", "open"),
    ("open (", "open"),
    ("a business calendar needs at least one weekday", "weekdays"),
    ("weekdays", "weekdays"),
    ("closures", "closures"),
    ("closure on", "closures"),
    ("opening on", "openings"),
    ("a week", "hours"),
    ("give either", "hours"),
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


_FIRST_FORMAT: dict[str, frozenset[str]] = {
    "PolicySpec": frozenset({"name", "version", "calendar", "severity"}),
    "CalendarSpec": frozenset({"timezone", "open", "close", "weekdays", "holidays", "closures"}),
    "SeveritySpec": frozenset({"first_response", "resolution", "escalations"}),
    "MetricSpec": frozenset({"target", "clock", "pausable", "warn_at"}),
    "EscalationSpec": frozenset({"after", "clock", "to"}),
}
"""The fields of the first policy format, always hashed; fields added since are hashed only
when the file sets them, so a policy written before they existed keeps its default version."""


def _hashed_content(value: Any) -> Any:
    """A spec as hashed into the default version (see :data:`_FIRST_FORMAT`)."""
    if isinstance(value, BaseModel):
        first = _FIRST_FORMAT.get(type(value).__name__)
        return {
            name: _hashed_content(getattr(value, name))
            for name in type(value).model_fields
            if first is None or name in first or name in value.model_fields_set
        }
    if isinstance(value, dict):
        return {key: _hashed_content(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_hashed_content(item) for item in value]
    if isinstance(value, date_type | time):
        return value.isoformat()
    return value


_BRANCH = re.compile(r"^(str|date|[a-z-]+\[.*\]|[A-Z]\w*Spec)$")
"""pydantic's labels of union branches in an error location (``str``, ``function-after[...]``,
``CalendarSpec``): not keys of the file, so left out of messages."""


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not _BRANCH.match(str(p))) or "(top level)"


_MISMATCH = frozenset({"string_type", "date_type", "model_type", "dict_type", "list_type"})
"""Error types that only say a value is not of one union branch's kind."""


def _branch_at(loc: tuple[int | str, ...]) -> int | None:
    return next((i for i, p in enumerate(loc) if _BRANCH.match(str(p))), None)


def _reasons(exc: ValidationError, text: str = "") -> str:
    """One ``key: reason (line N)`` per error. A union branch that the value is plainly not of
    (a table given where a date could also go) is not reported when another branch says what
    is wrong with the value (a closure's bad time, a date with a time of day)."""
    errors = exc.errors(include_url=False, include_input=False)

    def said_elsewhere(err: Any) -> bool:
        k = _branch_at(err["loc"])
        if err["type"] not in _MISMATCH or k is None:
            return False
        return any(
            other["type"] not in _MISMATCH
            and _branch_at(other["loc"]) == k
            and other["loc"][:k] == err["loc"][:k]
            and other["loc"][k] != err["loc"][k]
            for other in errors
        )

    return "; ".join(
        dict.fromkeys(
            f"{_location(err['loc'])}: {err['msg']}{_at_line(text, _location(err['loc']))}"
            for err in errors
            if not (len(errors) > 1 and err["type"] == "string_type" and err["loc"][-1] == "str")
            and not said_elsewhere(err)
        )
    )


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_\-\.\" ]+?)\s*=\s*(.*)$")


def _parts(dotted: str) -> list[str]:
    return [part.strip().strip('"') for part in dotted.split(".")]


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each key of a TOML policy is written: its dotted path (array elements by index,
    as error locations name them) -> 1-based line. Tables, ``[[policies]]`` elements, keys,
    and the elements of an array written one per line (``escalations = [`` then ``{...},``).
    A plain scan of the lines, good enough to point at a key; tomllib gives no positions."""
    where: dict[tuple[str, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    array: tuple[str, ...] | None = None
    element = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if array is not None:
            if stripped.startswith("]"):
                array = None
            elif stripped.startswith(("{", '"', "[")):
                where.setdefault((*array, str(element)), number)
                element += 1
            continue
        header = _HEADER.match(line)
        if header is not None:
            path = tuple(_parts(header[2]))
            if header[1] == "[[":
                index = counts.get(path, -1) + 1
                counts[path] = index
                table = (*path, str(index))
            else:  # a sub-table of the latest element of an array of tables
                head = path[:1]
                table = (*head, str(counts[head]), *path[1:]) if head in counts else path
            where.setdefault(table, number)
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment is None or stripped.startswith("#"):
            continue
        key = (*table, *_parts(assignment[1]))
        where.setdefault(key, number)
        if assignment[2].strip() == "[":
            array, element = key, 0
    return where


def _at_line(text: str, key: str) -> str:
    """`` (line N)``: where the policy text writes `key` (its longest written prefix)."""
    if not text:
        return ""
    lines = key_lines(text)
    path = tuple(_parts(key))
    while path:
        if path in lines:
            return f" (line {lines[path]})"
        path = path[:-1]
    return ""


def compile_policy(spec: PolicySpec, source: str, base: Path | None = None) -> Policy:
    """Turn a validated spec into targets in microseconds; `source` names the file in errors,
    `base` is the folder relative file names (``ical``) are read from (default: the current)."""
    default, specs = spec.named_calendars()
    calendars: dict[str, BusinessCalendar] = {}
    for name, cal in specs.items():
        key = "calendar" if isinstance(spec.calendar, CalendarSpec) else f"calendars.{name}"
        try:
            calendars[name] = build_calendar(cal, base)
        except IcalError as exc:
            raise PolicyError(f"{source}: {key}.ical: {exc}") from None
        except (ValueError, KeyError, OSError) as exc:
            raise PolicyError(f"{source}: {calendar_key(key, str(exc))}: {exc}") from None
    version = (
        spec.version
        or "sha256:"
        + hashlib.sha256(
            orjson.dumps(_hashed_content(spec), option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:12]
    )
    digest = content_digest(spec)
    olas = _olas(spec.olas, calendars, default, source)
    attribution = bool(olas) if spec.attribution is None else spec.attribution
    stop = spec.stop_clock
    stoppable = frozenset(stop.metrics) if stop is not None else frozenset()
    if spec.severity is not None:
        severities = _severities(spec.severity, calendars, default, source, "", stoppable)
        policy = Policy(
            spec.name,
            version,
            calendars[default],
            severities,
            calendars,
            digest=digest,
            olas=olas,
            attribution=attribution,
        )
        policy.clock_rules = _clock_rules(spec, calendars, source, [policy])
        return policy
    children: list[Policy] = []
    for index, child in enumerate(spec.policies):
        key = f"policies.{index}"
        own = child.calendar or default
        if own not in calendars:
            raise PolicyError(f"{source}: {key}.calendar: {own!r} is not among [calendars]")
        severities = _severities(child.severity, calendars, own, source, f"{key}.", stoppable)
        match = _match(child.match)
        children.append(
            Policy(child.name, version, calendars[own], severities, calendars, match=match)
        )
    root = Policy(
        spec.name,
        version,
        calendars[default],
        {},
        calendars,
        policies=children,
        digest=digest,
        olas=olas,
        attribution=attribution,
    )
    root.clock_rules = _clock_rules(spec, calendars, source, children)
    for made in children:
        made.clock_rules = root.clock_rules
    return root


def _clock_rules(
    spec: PolicySpec, calendars: dict[str, BusinessCalendar], source: str, policies: list[Policy]
) -> ClockRules | None:
    """The file's per-ticket clock rules (issue 24); None when it has none."""
    for group, name in spec.group_calendars.items():
        if name not in calendars:
            raise PolicyError(
                f"{source}: group_calendars.{group}: {name!r} is not among [calendars]"
            )
    rules = [
        rule
        for policy in policies
        for severity in policy.severities.values()
        for rule in severity.clocked
    ]
    grouped = any(rule.choice == "group" for rule in rules)
    if grouped and not spec.group_calendars:
        raise PolicyError(f"{source}: group_calendars: calendar = 'group' needs this table")
    dynamic = any(rule.choice or rule.deadline == "attribute" for rule in rules)
    deadlines = any(rule.deadline for rule in rules)
    stop, reasons = spec.stop_clock, spec.breach_reasons
    if not (dynamic or deadlines or stop or reasons or spec.group_calendars):
        return None
    stop_max = 0
    if stop is not None and stop.max is not None:
        try:
            stop_max = parse_duration(stop.max, DAY, business=False)
        except ValueError as exc:
            raise PolicyError(f"{source}: stop_clock.max: {exc}") from None
    return ClockRules(
        group_calendars=dict(spec.group_calendars),
        stop_reasons=tuple(stop.reasons) if stop is not None else (),
        stop_max=stop_max,
        breach_codes=tuple(reasons.codes) if reasons is not None else (),
        breach_exempt=tuple(reasons.exempt) if reasons is not None else (),
        dynamic=dynamic,
    )


_ADDED_LATER: Final[dict[str, Any]] = {
    "olas": [],
    "attribution": None,
    "group_calendars": {},
    "stop_clock": None,
    "breach_reasons": None,
    "calendar_default": None,
}
"""Keys added since digests were first taken (issues 23 and 24), left out at their defaults so
a file without them keeps its digest."""


def _without_unset_additions(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_unset_additions(item)
            for key, item in value.items()
            if not (key in _ADDED_LATER and item == _ADDED_LATER[key])
        }
    if isinstance(value, list):
        return [_without_unset_additions(item) for item in value]
    return value


def content_digest(spec: PolicySpec) -> str:
    """A policy's identity: ``sha256:`` and the hex SHA-256 of every key of the file as
    canonical JSON (sorted keys, defaults filled in), so comments and layout do not make a new
    version while any change of value does. Unlike the default `version` (a short hash of the
    first format's fields, kept stable for old files), it covers every key. An ``ical`` file
    is named, not read: publish refuses such files (see `streams.sla.versions`)."""
    content = _without_unset_additions(spec.model_dump(mode="json", by_alias=True))
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _metric_rule(
    m: MetricSpec,
    name: MetricName | OwnershipName,
    key: str,
    calendar: str,
    calendars: dict[str, BusinessCalendar],
    source: str,
    choice: str = "",
    stoppable: bool = False,
) -> MetricRule:
    """One metric's compiled target and warnings, counted on `calendar` (`key`: its key;
    `choice`: `group` or `attribute:NAME` when the ticket chooses the calendar, `calendar`
    being the default then; `stoppable`: a manual stop may hold it)."""

    def duration(text: str, where: str) -> Micros:
        try:
            day = calendars[calendar].day_length
            return parse_duration(text, day, business=m.clock == "business")
        except ValueError as exc:
            raise PolicyError(f"{source}: {where}: {exc}") from None

    deadline, at, attribute = "", 0, ""
    if isinstance(m.target, TargetSpec):
        if m.target.next_business_day_at is not None:
            deadline, target = "next_business_day", 0
            at = parse_wall_time(m.target.next_business_day_at)
            written = f"next business day at {m.target.next_business_day_at}"
        else:
            deadline, attribute = "attribute", m.target.from_attribute or ""
            written = m.target.otherwise or ""
            target = duration(written, f"{key}.target.otherwise")
    else:
        written = m.target
        target = duration(m.target, f"{key}.target")
    leads = []
    for index, text in enumerate(m.warn_before):
        where = f"{key}.warn_before.{index}"
        lead = duration(text, where)
        if lead >= target and not deadline:
            raise PolicyError(
                f"{source}: {where}: {text!r} is not shorter than the target ({m.target}): "
                "the warning would come at or before the start"
            )
        leads.append(lead)
    return MetricRule(
        metric=name,
        target=target,
        clock=m.clock,
        pausable=m.pausable,
        warn_at=tuple(sorted(set(m.warn_at))),
        calendar=calendar,
        warn_before=tuple(sorted(set(leads), reverse=True)),
        written=written,
        choice=choice,
        deadline=deadline,
        deadline_at=at,
        deadline_attribute=attribute,
        stoppable=stoppable,
    )


def _olas(
    specs: list[OlaSpec], calendars: dict[str, BusinessCalendar], default: str, source: str
) -> tuple[Ola, ...]:
    """The file's compiled OLAs (`[[olas]]`)."""
    olas: list[Ola] = []
    for index, spec in enumerate(specs):
        key = f"olas.{index}"
        own = spec.calendar or default
        if own not in calendars:
            raise PolicyError(f"{source}: {key}.calendar: {own!r} is not among [calendars]")
        where = f"{key}.group_ownership"
        calendar = spec.group_ownership.calendar or own
        if calendar not in calendars:
            raise PolicyError(f"{source}: {where}.calendar: {calendar!r} is not among [calendars]")
        rule = _metric_rule(spec.group_ownership, OWNERSHIP, where, calendar, calendars, source)
        olas.append(Ola(spec.name, _match(spec.match), rule, frozenset(spec.severities)))
    return tuple(olas)


def _match(condition: MatchSpec) -> Match:
    return Match(
        customers=frozenset(condition.customer),
        groups=frozenset(condition.group),
        channels=frozenset(condition.channel),
        tags=frozenset(condition.tags),
        attributes={name: frozenset(v) for name, v in condition.attributes.items()},
    )


def _severities(
    specs: dict[Literal["1", "2", "3", "4"], SeveritySpec],
    calendars: dict[str, BusinessCalendar],
    default: str,
    source: str,
    prefix: str,
    stoppable: frozenset[str] = frozenset(),
) -> dict[int, SeverityRules]:
    """The compiled targets of one policy; `default` names its calendar, `prefix` its key."""

    def calendar_of(name: str | None, key: str) -> str:
        if name is None:
            return default
        if name not in calendars:
            raise PolicyError(f"{source}: {key}.calendar: {name!r} is not among [calendars]")
        return name

    def duration(text: str, key: str, clock: ClockName, calendar: str) -> Micros:
        try:
            day = calendars[calendar].day_length
            return parse_duration(text, day, business=clock == "business")
        except ValueError as exc:
            raise PolicyError(f"{source}: {key}: {exc}") from None

    def metric(m: MetricSpec | None, name: MetricName, key: str) -> MetricRule | None:
        if m is None:
            return None
        choice = ""
        if m.calendar == "group" or (m.calendar or "").startswith("attribute:"):
            choice = m.calendar or ""
            if choice == "attribute:":
                raise PolicyError(f"{source}: {key}.calendar: name the attribute: 'attribute:NAME'")
            calendar = calendar_of(m.calendar_default, f"{key}.calendar_default")
        else:
            if m.calendar_default is not None:
                raise PolicyError(
                    f"{source}: {key}.calendar_default: only with calendar = 'group' or "
                    "'attribute:NAME'"
                )
            calendar = calendar_of(m.calendar, key)
        stops = name in stoppable
        return _metric_rule(m, name, key, calendar, calendars, source, choice, stops)

    severities: dict[int, SeverityRules] = {}
    for level, sev in specs.items():
        key = f"{prefix}severity.{level}"
        escalations = []
        for index, esc in enumerate(sev.escalations):
            where = f"{key}.escalations.{index}"
            calendar = calendar_of(esc.calendar, where)
            every = esc.repeat_every
            escalations.append(
                EscalationRule(
                    level=index + 1,
                    after=duration(esc.after, f"{where}.after", esc.clock, calendar),
                    clock=esc.clock,
                    to=esc.to,
                    calendar=calendar,
                    repeat_every=0
                    if every is None
                    else duration(every, f"{where}.repeat_every", esc.clock, calendar),
                    max_repeats=esc.max_repeats,
                    ack_timeout=0
                    if esc.ack_timeout is None
                    else duration(esc.ack_timeout, f"{where}.ack_timeout", esc.clock, calendar),
                    written=esc.after,
                    repeat_written=every or "",
                )
            )
        severities[int(level)] = SeverityRules(
            first_response=metric(sev.first_response, "first_response", f"{key}.first_response"),
            resolution=metric(sev.resolution, "resolution", f"{key}.resolution"),
            escalations=tuple(escalations),
            next_response=metric(sev.next_response, "next_response", f"{key}.next_response"),
            periodic_update=metric(
                sev.periodic_update, "periodic_update", f"{key}.periodic_update"
            ),
        )
    return severities


class IcalError(EscalatorError, ValueError):
    """The calendar's ``ical`` file is unreadable or invalid (its own key, whatever the file is
    called: a message starting ``closures.ics:`` must not read as the ``closures`` key's)."""


def build_calendar(cal: CalendarSpec, base: Path | None = None) -> BusinessCalendar:
    """A :class:`BusinessCalendar` from its spec; reads the ``ical`` file (relative to
    ``base``). Raises ValueError with the reason (:class:`IcalError` for the ``ical`` file)."""
    holidays = cal.holidays
    categories: list[str] = []
    if isinstance(holidays, HolidaysSpec):
        categories = holidays.categories
        holidays = holidays.country + (f"-{holidays.subdivision}" if holidays.subdivision else "")
    closures = {day for day in cal.closures if isinstance(day, date_type)}
    partial = [
        (
            part.date,
            parse_wall_time(part.from_),
            parse_wall_time(part.to, closing=True),
        )
        for part in cal.closures
        if isinstance(part, PartialClosureSpec)
    ]
    spans: list[Interval] = []
    if cal.ical is not None:
        path = Path(cal.ical) if base is None else base / cal.ical
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IcalError(f"{cal.ical}: cannot read: {exc.strerror}") from None
        try:
            dates, spans = read_ical_closures(data, cal.timezone, str(cal.ical))
        except ValueError as exc:
            raise IcalError(str(exc)) from None
        closures |= dates
    return BusinessCalendar(
        cal.timezone,
        week=cal.week(),
        holidays=holidays,
        holiday_categories=categories,
        closures=closures,
        partial_closures=partial,
        closed_spans=spans,
        openings={
            opening.date: [parse_interval(text) for text in opening.hours]
            for opening in cal.openings
        },
    )


def parse_policy(text: str, source: str, base: Path | None = None) -> Policy:
    """Parse and compile policy TOML text; `source` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: invalid TOML: {exc}") from None
    try:
        spec = PolicySpec.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_reasons(exc, text)}") from None
    try:
        return compile_policy(spec, source, base)
    except PolicyError as exc:
        message = str(exc)
        key = message[len(source) + 2 :].partition(": ")[0]
        raise PolicyError(message + _at_line(text, key)) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file, or the shipped default (the Clevr Help Desk SLA) when `path` is None."""
    if path is None:
        text = resources.files("streams.sla").joinpath(DEFAULT_POLICY_RESOURCE).read_text()
        return parse_policy(text, DEFAULT_POLICY_RESOURCE)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not TOML
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    return parse_policy(text, str(path), Path(path).parent)


_ABBREVIATED_ZONES = frozenset(
    {"EST", "MST", "HST", "EST5EDT", "CST6CDT", "MST7MDT", "PST8PDT", "CET", "EET", "MET", "WET"}
)
"""The tz database's zones named by an abbreviation rather than a place (its `backward` file):
all-caps names such as ``GB``, ``NZ`` or ``PRC`` are places (links to Europe/London, ...)."""
_UTC_NAMES = frozenset(
    {"UTC", "UCT", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Universal", "Zulu"}
)
_OFFSET_ZONE = re.compile(r"^(UTC|GMT|UCT)?[+-]\d")


def is_fixed_offset_zone(name: str) -> bool:
    """Whether a time zone name is a fixed offset or an abbreviation (``EST``, ``UTC-5``,
    ``Etc/GMT+5``, ``EST5EDT``) rather than a place (``America/Toronto``, or a place's old name
    such as ``GB``): such a zone does not follow the place's daylight saving time. UTC itself
    (``UTC``, ``Etc/UTC``, ``Zulu``, ...) is a deliberate choice, not one."""
    bare = name.removeprefix("Etc/")
    if bare in _UTC_NAMES:
        return False
    return name.startswith("Etc/") or name in _ABBREVIATED_ZONES or bool(_OFFSET_ZONE.match(name))


def check_policy(policy: Policy) -> list[str]:
    """Warnings about a valid policy that is probably not what its author meant."""
    warnings: list[str] = []
    for name, cal in policy.calendars.items():
        key = "calendar" if name == "default" else f"calendars.{name}"
        if is_fixed_offset_zone(cal.timezone):
            warnings.append(
                f"{key}.timezone: {cal.timezone!r} is a fixed offset or abbreviation and ignores "
                "daylight saving time; name the place (e.g. 'America/Toronto')"
            )
        for day, hours in zip(WEEKDAYS, cal.week, strict=True):
            if any(a[1] > b[0] for a, b in pairwise(hours)):
                warnings.append(f"{key}.hours.{day}: intervals overlap (counted once)")
        for index, day in enumerate(WEEKDAYS):
            today, eve = cal.week[index], cal.week[index - 1]
            if today and eve and max(end for _, end in eve) > DAY + today[0][0]:
                warnings.append(
                    f"{key}.hours.{day}: the previous day's hours run past its opening "
                    "(counted once)"
                )
    children = policy.policies or [policy]
    for index, child in enumerate(children):
        prefix = f"policies.{index}." if policy.policies else ""
        if policy.policies and index < len(children) - 1 and child.match.is_catch_all():
            later = ", ".join(repr(p.name) for p in children[index + 1 :])
            warnings.append(
                f"policies.{index}: {child.name!r} matches every ticket, so {later} can never match"
            )
        elif policy.policies and not child.match.is_catch_all():
            earlier = next(
                (i for i, p in enumerate(children[:index]) if _covers(p.match, child.match)), None
            )
            if earlier is not None:
                warnings.append(
                    f"policies.{index}: {child.name!r} can never match: every ticket it matches "
                    f"matches {children[earlier].name!r} (policies.{earlier}) first"
                )
        warnings += _check_severities(child, prefix)
    for index, ola in enumerate(policy.olas):
        key = f"olas.{index}"
        owned = ola.ownership
        length = policy.calendars[owned.calendar].day_length
        if owned.clock != "business":
            warnings += _business_days_elapsed(
                f"{key}.group_ownership", owned.written, owned.target, length
            )
        elif _elapsed_days(owned.target, owned.written, length):
            warnings.append(
                f"{key}.group_ownership: {owned.written!r} of business time is "
                f"{owned.target / length:.2f} business days; did you mean business days ('bd')?"
            )
        if ola.severities and all(
            level not in child.severities for child in children for level in ola.severities
        ):
            warnings.append(
                f"{key}.severities: no policy of the file defines them; {ola.name!r} never holds"
            )
    return warnings


def _covers(first: Match, later: Match) -> bool:
    """Whether every ticket ``later`` matches is matched by ``first`` (so, tried first, it
    shadows ``later``): each of ``first``'s conditions is one ``later`` also sets, accepting
    no value ``first`` refuses (for ``tags``, no tag outside ``first``'s)."""
    pairs = [
        (first.customers, later.customers),
        (first.groups, later.groups),
        (first.channels, later.channels),
        (first.tags, later.tags),
    ]
    pairs += [(v, later.attributes.get(name, frozenset())) for name, v in first.attributes.items()]
    return all(not wide or (narrow and narrow <= wide) for wide, narrow in pairs)


def _elapsed_days(amount: Micros, written: str, business_day: Micros) -> bool:
    """Whole elapsed days (`24h`, `2d`) on a business clock whose day is not 24h: almost
    always meant as calendar days or business days. Written in `bd`, it is what it says."""
    return amount % DAY == 0 and business_day != DAY and "bd" not in written.lower()


def _business_days_elapsed(
    key: str, written: str, amount: Micros, business_day: Micros
) -> list[str]:
    """Business days (`1bd`) on the elapsed clock (the escalations' default) are that many
    business days' length of wall time: almost always meant on the business clock."""
    if "bd" not in written.lower() or business_day == DAY:
        return []
    return [
        f"{key}: {written!r} on the elapsed clock is {format_duration(amount)} of wall time; "
        "did you mean clock = 'business'?"
    ]


def _check_severities(policy: Policy, prefix: str) -> list[str]:
    warnings: list[str] = []
    for level in range(1, 5):
        key = f"{prefix}severity.{level}"
        rules = policy.severities.get(level)
        if rules is None:
            warnings.append(f"{key}: not defined; tickets of severity {level} are rejected")
            continue
        fr, res = rules.first_response, rules.resolution
        if fr and res and fr.target > res.target:
            warnings.append(f"{key}: first_response target is later than the resolution target")
        for rule in rules.clocked:
            name = rule.metric
            if rule.deadline == "next_business_day":  # an hour of the day, not a duration
                continue
            day = policy.calendars[rule.calendar].day_length
            if rule.clock != "business":
                warnings += _business_days_elapsed(f"{key}.{name}", rule.written, rule.target, day)
                continue
            if _elapsed_days(rule.target, rule.written, day):
                warnings.append(
                    f"{key}.{name}: {rule.written!r} of business time is "
                    f"{rule.target / day:.2f} business days; did you mean business days ('bd')?"
                )
        for esc in rules.escalations:
            day = policy.calendars[esc.calendar].day_length
            if esc.clock == "elapsed":
                where = f"{key}.escalations.{esc.level - 1}"
                warnings += _business_days_elapsed(where, esc.written, esc.after, day)
            if esc.clock == "business" and _elapsed_days(esc.after, esc.written, day):
                warnings.append(
                    f"{key}.escalations.{esc.level - 1}: {esc.written!r} of business "
                    f"time is {esc.after / day:.2f} business days; did you mean 'bd'?"
                )
            every = esc.repeat_every
            if every and esc.clock == "elapsed":
                where = f"{key}.escalations.{esc.level - 1}.repeat_every"
                warnings += _business_days_elapsed(where, esc.repeat_written, every, day)
            if every and esc.clock == "business" and _elapsed_days(every, esc.repeat_written, day):
                warnings.append(
                    f"{key}.escalations.{esc.level - 1}.repeat_every: "
                    f"{esc.repeat_written!r} of business time is "
                    f"{esc.repeat_every / day:.2f} business days; did you mean 'bd'?"
                )
        afters = [esc.after for esc in rules.escalations]
        if afters != sorted(afters):
            warnings.append(f"{key}.escalations: levels are not in increasing order")
        if rules.escalations and res is None:
            warnings.append(f"{key}: escalations without a resolution target")
    return warnings
