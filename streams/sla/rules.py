"""The compiled rules of a policy: targets in microseconds and the timers each metric arms.

Frozen dataclasses and the plain `Policy` class, built once by `streams.sla.policy` from the
TOML file and read by the state machine on every event; kept apart from the pydantic file
format so the SLA core compiles to native code (see setup.py) without pulling pydantic in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

from events.instants import Micros, format_duration
from events.sla_records import NOT_AGREED, Agreed, PolicyRef
from streams.sla.clocks import BusinessCalendar, Clock, ElapsedClock
from streams.sla.timer_key import NO_ROUND, TimerKey

if TYPE_CHECKING:
    from streams.sla.versions import PolicyBook

ClockName = Literal["business", "elapsed"]
MetricName = Literal["first_response", "resolution", "next_response", "periodic_update"]
OwnershipName = Literal["group_ownership"]
"""The metric of an OLA (`Ola`), kept apart: a customer SLA's severities do not have it."""
ROUNDED: Final = ("next_response", "periodic_update")
"""Metrics counted in rounds (each customer reply, each update period): a round's timers and
ids carry its number (`breached@3`), so each round fires its own warning, breach and met."""


@dataclass(frozen=True, slots=True)
class MetricRule:
    """A target on one clock, with warnings by fraction (`warn_at`) and by lead time
    (`warn_before`, microseconds before the breach on the same clock, as Zendesk's and
    Zammad's "alert N minutes before the breach").

    For `next_response` and `periodic_update` the target applies to each round (each customer
    reply, each update period). `calendar` names the policy's business calendar the target
    counts on (when `clock` is `business`)."""

    metric: MetricName | OwnershipName
    target: Micros
    clock: ClockName
    pausable: bool
    warn_at: tuple[float, ...]
    calendar: str = "default"
    warn_before: tuple[Micros, ...] = ()
    written: str = field(default="", compare=False)
    """The target as the file spells it (`24h`, `3bd`), for `policy check`."""
    choice: str = ""
    """Where a ticket's calendar comes from (`streams.sla.ticket_calendars`): "" (`calendar`),
    `group` (the policy's `[group_calendars]`) or `attribute:NAME` (a calendar or IANA zone
    named by the ticket's attribute); `calendar` is then the default."""
    deadline: str = ""
    """A deadline target (`streams.sla.deadlines`): "" (`target` is a duration),
    `next_business_day` (at `deadline_at` on the metric's calendar) or `attribute` (the
    instant in the ticket's attribute `deadline_attribute`; `target` when it is absent)."""
    deadline_at: Micros = 0
    """`next_business_day`: the wall time, microseconds after local midnight."""
    deadline_attribute: str = ""
    stoppable: bool = False
    """Whether a manual stop (`ticket.sla_stopped`) holds this metric (`[stop_clock]`)."""
    marks: tuple[Mark, ...] = field(init=False, repr=False, compare=False)
    """The metric's timers: each warning by the time it needs, then the breach (derived)."""
    by_rule: dict[str, Mark] = field(init=False, repr=False, compare=False)
    """Each mark by its rule name (derived)."""
    rounds: bool = field(init=False, repr=False, compare=False)
    """Whether the metric is counted in rounds (see ROUNDED; derived)."""

    def __post_init__(self) -> None:
        marks = _marks(self)
        object.__setattr__(self, "marks", marks)
        object.__setattr__(self, "by_rule", {mark.rule: mark for mark in marks})
        object.__setattr__(self, "rounds", self.metric in ROUNDED)


@dataclass(frozen=True, slots=True)
class Mark:
    """One timer of a metric: its rule name, how much clock time it needs, its key.

    `rank` orders it among the ticket's timers due at the same instant (see state.Timer).
    """

    rule: str
    amount: Micros
    fraction: float
    timer: TimerKey
    """Its key (`TimerKey.at_round` gives a round's, for a rounded metric)."""
    rank: tuple[int, float]
    before: Micros = 0
    """For a warning by lead time: how long before the breach it fires (0 otherwise)."""


_METRIC_RANK: dict[str, int] = {
    "first_response": 0,
    "resolution": 1,
    "next_response": 1,
    "periodic_update": 1,
    "group_ownership": 1,
}
"""Order among timers due at one instant (then by fraction, metric name, rule); the metrics
added after the first two come after first response, so the seed's order is unchanged."""


def _marks(rule: MetricRule) -> tuple[Mark, ...]:
    """The warnings (by fraction and by lead time), sorted by the clock time they need, then
    the breach: `spans.deadlines` takes the amounts in ascending order."""
    rank = _METRIC_RANK[rule.metric]
    warnings = [
        Mark(
            f"warning:{f:g}",
            round(rule.target * f),
            f,
            TimerKey(rule.metric, f"warning:{f:g}"),
            (rank, f),
        )
        for f in rule.warn_at
    ]
    for lead in rule.warn_before:
        name = f"warning:before:{format_duration(lead)}"
        fraction = (rule.target - lead) / rule.target if rule.target else 0.0
        warnings.append(
            Mark(
                name,
                rule.target - lead,
                fraction,
                TimerKey(rule.metric, name),
                (rank, fraction),
                lead,
            )
        )
    if rule.warn_before:
        warnings.sort(key=lambda mark: (mark.amount, mark.rule))
    breach = Mark("breached", rule.target, 1.0, TimerKey(rule.metric, "breached"), (rank, 1.0))
    return (*warnings, breach)


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Escalate to `to` once `after` has passed since the report, on `clock` (never paused).

    With `repeat_every` (microseconds, 0: never) the level escalates again each time that
    much more has passed since the report (`after + n * repeat_every`, repeat n = 1, 2, ...),
    at most `max_repeats` times (None: until the ticket is resolved), as an on-call escalation
    policy repeats (PagerDuty's "repeat this policy N times").

    An acknowledgement (`ticket.escalation_acknowledged`) stops the level's repeats; with
    `ack_timeout` (microseconds on the level's clock, 0: never) the level fires again that
    long after it when the ticket has not progressed (PagerDuty's acknowledgement timeout;
    docs/actions.md)."""

    level: int
    after: Micros
    clock: ClockName
    to: str
    calendar: str = "default"
    repeat_every: Micros = 0
    max_repeats: int | None = None
    ack_timeout: Micros = 0
    written: str = field(default="", compare=False)
    repeat_written: str = field(default="", compare=False)
    """`repeat_every` as the file spells it, for `policy check`."""
    timer: TimerKey = field(init=False, repr=False, compare=False)
    """The level's timer, `level:<level>` (derived; `TimerKey.repeat_of` for its repeats)."""
    rank: tuple[int, float] = field(init=False, repr=False, compare=False)
    """Its order among timers due at the same instant (derived)."""
    repeat_prefix: str = field(init=False, repr=False, compare=False)
    """The fired-key of a repeat without its number, `escalation:level:<level>:repeat:`."""
    ack_timer: TimerKey = field(init=False, repr=False, compare=False)
    """Its acknowledgement-timeout timer, `level:<level>:ack` (derived; docs/actions.md)."""

    def __post_init__(self) -> None:
        timer = TimerKey("escalation", f"level:{self.level}", NO_ROUND, self.level)
        object.__setattr__(self, "timer", timer)
        object.__setattr__(self, "rank", (2, float(self.level)))
        object.__setattr__(self, "repeat_prefix", timer.repeat_prefix)
        ack = TimerKey("escalation", f"level:{self.level}:ack", NO_ROUND, self.level)
        object.__setattr__(self, "ack_timer", ack)


@dataclass(frozen=True, slots=True)
class SeverityRules:
    first_response: MetricRule | None
    resolution: MetricRule | None
    escalations: tuple[EscalationRule, ...]
    next_response: MetricRule | None = None
    periodic_update: MetricRule | None = None
    clocked: tuple[MetricRule, ...] = field(init=False, repr=False, compare=False)
    """The metrics with a target, in order (derived): what the state machine schedules."""

    def __post_init__(self) -> None:
        rules = (self.first_response, self.resolution, self.next_response, self.periodic_update)
        object.__setattr__(self, "clocked", tuple(rule for rule in rules if rule is not None))

    def metric(self, name: MetricName) -> MetricRule | None:
        if name == "first_response":
            return self.first_response
        if name == "resolution":
            return self.resolution
        return self.next_response if name == "next_response" else self.periodic_update


@dataclass(frozen=True, slots=True)
class ClockRules:
    """A file's per-ticket clock rules (issue 24): calendars chosen per ticket, the governed
    manual stop and the breach reasons; None on a policy without any (the default's)."""

    group_calendars: dict[str, str] = field(default_factory=dict)
    """Group -> calendar name, for metrics with `calendar = "group"`."""
    stop_reasons: tuple[str, ...] = ()
    """The reasons a manual stop may give (none: `ticket.sla_stopped` is rejected)."""
    stop_max: Micros = 0
    """The longest manual stop, elapsed time (0: no limit)."""
    breach_codes: tuple[str, ...] = ()
    """The codes `ticket.breach_reason` may give (none: every breach reason is rejected)."""
    breach_exempt: tuple[str, ...] = ()
    """The codes that exempt a breach from compliance (`breached-exempt`)."""
    dynamic: bool = False
    """Whether a metric chooses its calendar or takes its target from the ticket's group or
    attributes (the fold then keeps them over time, `TicketState.routes`)."""
    zones: dict[str, BusinessCalendar] = field(default_factory=dict, compare=False)
    """Calendars made for IANA zones named by tickets (the default calendar's hours there)."""


class Match:
    """When a policy applies to a ticket: every condition given must hold (an empty Match holds
    for every ticket). A condition lists the values it accepts; `tags` holds when the ticket
    has at least one of them; `attributes` maps an attribute name to its accepted values."""

    __slots__ = ("attributes", "channels", "customers", "groups", "tags")

    def __init__(
        self,
        customers: frozenset[str] = frozenset(),
        groups: frozenset[str] = frozenset(),
        channels: frozenset[str] = frozenset(),
        tags: frozenset[str] = frozenset(),
        attributes: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.customers = customers
        self.groups = groups
        self.channels = channels
        self.tags = tags
        self.attributes: dict[str, frozenset[str]] = attributes or {}

    def is_catch_all(self) -> bool:
        return not (self.customers or self.groups or self.channels or self.tags or self.attributes)

    def holds(self, ticket: TicketAttributes) -> bool:
        if self.customers and ticket.customer_id not in self.customers:
            return False
        if self.groups and ticket.group not in self.groups:
            return False
        if self.channels and ticket.channel not in self.channels:
            return False
        if self.tags and self.tags.isdisjoint(ticket.tags):
            return False
        for name, accepted in self.attributes.items():
            if ticket.attributes.get(name) not in accepted:
                return False
        return True


class TicketAttributes(Protocol):
    """What a policy is chosen on (a ticket's state has these)."""

    @property
    def customer_id(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def attributes(self) -> dict[str, str]: ...


OWNERSHIP: Final[OwnershipName] = "group_ownership"
"""The metric of an OLA: how long one group holds the ticket (one cycle per group held)."""


def _agreed(name: str) -> Agreed:
    """The customer SLA `name`, as its events name it in a file with OLAs."""
    return {"agreement": {"kind": "sla", "name": name}}


@dataclass(frozen=True, slots=True)
class Ola:
    """An operational level agreement (`[[olas]]`): attached to a ticket wherever `match`
    holds (and its severity is among `severities`, empty: every one), alongside the ticket's
    customer SLA and the other OLAs. Its metric is group ownership (`ownership`): each cycle
    runs from a group's assignment to the ticket's move to another group, or its resolve; a
    new cycle starts for the new group and on reopen. Its timers are the metric's marks with
    the OLA's name in front (`l1/breached@2`: cycle 2 of `l1`)."""

    name: str
    match: Match
    ownership: MetricRule
    severities: frozenset[int] = frozenset()
    agreement: Agreed = field(init=False, repr=False, compare=False)
    """`{"agreement": {"kind": "ola", "name"}}`, unpacked into the OLA's events (shared:
    never change it)."""
    marks: tuple[Mark, ...] = field(init=False, repr=False, compare=False)
    """The metric's marks under the OLA's own keys (derived)."""
    prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = f"{self.name}/"
        marks = tuple(
            Mark(
                mark.rule,
                mark.amount,
                mark.fraction,
                TimerKey(OWNERSHIP, prefix + mark.rule),
                mark.rank,
                mark.before,
            )
            for mark in self.ownership.marks
        )
        agreed: Agreed = {"agreement": {"kind": "ola", "name": self.name}}
        object.__setattr__(self, "agreement", agreed)
        object.__setattr__(self, "marks", marks)
        object.__setattr__(self, "prefix", prefix)

    def holds(self, ticket: TicketAttributes, severity: int) -> bool:
        if self.severities and severity not in self.severities:
            return False
        return self.match.holds(ticket)


class Policy:
    """A compiled policy: what the state machine needs, nothing it has to parse.

    `streams.sla.policy` builds it from the TOML file; a plain class so mypyc compiles it.
    A file with several policies compiles to a root whose `policies` are tried in order for
    each ticket (`select`: the first whose `match` holds; the last holds for every ticket);
    the root's own severities are empty then. A file with one policy is its own only policy.
    """

    __slots__ = (
        "_default",
        "_refs",
        "agreement",
        "attribution",
        "book",
        "by_name",
        "calendar",
        "calendars",
        "clock_rules",
        "digest",
        "match",
        "name",
        "ola_by_name",
        "olas",
        "policies",
        "root",
        "severities",
        "version",
    )

    def __init__(
        self,
        name: str,
        version: str,
        calendar: BusinessCalendar,
        severities: dict[int, SeverityRules],
        calendars: dict[str, BusinessCalendar] | None = None,
        match: Match | None = None,
        policies: list[Policy] | None = None,
        digest: str = "",
        olas: tuple[Ola, ...] = (),
        attribution: bool = False,
        clock_rules: ClockRules | None = None,
    ) -> None:
        self.name = name
        self.clock_rules = clock_rules
        """Per-ticket calendars, manual stops, breach reasons (None: none of them)."""
        self.version = version
        """The file's `version` key, or a hash of its content: what outbound events name."""
        self.digest = digest
        """`sha256:` and the hex SHA-256 of the file's whole content (every key, canonical
        JSON): the version's identity, also when two files share a `version` key."""
        self.book: PolicyBook | None = None
        """Every published version and its rollouts, when the worker reads the policy topic
        (see `streams.sla.versions`); None for a single-file start (one version, no rollout)."""
        self.calendar = calendar
        """The policy's default business calendar."""
        self.calendars = calendars if calendars is not None else {"default": calendar}
        """Every calendar of the policy file by name."""
        self.severities = severities
        self.match = match if match is not None else Match()
        self.policies: list[Policy] = policies if policies is not None else []
        self.by_name: dict[str, Policy] = {p.name: p for p in self.policies}
        self.root: Policy = self
        self.olas = olas
        """The file's OLAs (`[[olas]]`), each attached where its match holds; on the root."""
        self.ola_by_name: dict[str, Ola] = {ola.name: ola for ola in olas}
        self.attribution = attribution
        """Whether the events that close a metric say who held the ticket while its clock
        ran (`attribution`; on by default in a file with OLAs). On the root."""
        self.agreement: Agreed = _agreed(name) if olas else NOT_AGREED
        """The customer SLA as outbound events name it, unpacked into them (shared: never
        change it); empty in a file without OLAs (its events name no agreement: one agreement,
        the customer's, as before)."""
        for child in self.policies:
            child.root = self
            child.agreement = _agreed(child.name) if olas else NOT_AGREED
        names = {name: cal for name, cal in self.calendars.items() if cal is calendar}
        default = next(iter(names), "default")
        self._default: str | None = default if names else None
        """The name of the policy's own calendar (`clock` finds it without a lookup)."""
        self._refs: dict[str, PolicyRef] = {
            key: {"name": name, "version": version, "calendar": key}
            for key in (*self.calendars, "elapsed")
        }
        self._refs[""] = self._refs.get(default, {"name": name, "version": version})

    def clock(self, name: str, calendar: str = "") -> Clock:
        """The clock `name` (`business` or `elapsed`); a business clock counts on `calendar`
        (default: the policy's calendar)."""
        if name != "business":
            return ELAPSED
        if not calendar or calendar == self._default:  # most rules count on it
            return self.calendar
        return self.calendars[calendar]

    def select(self, ticket: TicketAttributes) -> Policy:
        """The policy a ticket runs under: the first of `policies` whose match holds."""
        for policy in self.policies:
            if policy.match.holds(ticket):
                return policy
        return self

    def ref(self, clock: str = "business", calendar: str = "") -> PolicyRef:
        """`{"name", "version", "calendar"}` for outbound events: the calendar that timed
        the event (`elapsed` for the elapsed clock). One dict per calendar, shared: never
        change it."""
        return self._refs["elapsed" if clock != "business" else calendar]

    def ref_named(self, calendar: str) -> PolicyRef:
        """`ref` for a calendar a ticket chose (a calendar's name or an IANA zone's)."""
        found = self._refs.get(calendar)
        if found is None:
            found = {"name": self.name, "version": self.version, "calendar": calendar}
            self._refs[calendar] = found
        return found


ELAPSED: Final = ElapsedClock()
