"""Response shapes of the projections API, as pydantic models: FastAPI validates every answer
against them and documents them in the generated OpenAPI (/openapi.json, /docs).

The query functions in `projections.queries` build plain dicts; these models only describe
them. Optional keys that a query leaves out (an SLA event's `level`, ...) stay out of the
answer (`response_model_exclude_unset`), keys present as null stay null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from projections.queries import SlaState, TicketStatus

Instant = str
"""RFC 3339 in UTC with a `Z` (microseconds only when non-zero)."""


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Metric(_Model):
    state: SlaState
    due_at: Instant | None
    remaining_seconds: float | None = Field(
        description="Time left on the metric's own clock (business or elapsed); negative once "
        "overdue; frozen while paused. Counted over at most ten years of elapsed time (a deadline "
        "further from `now` shows ten years' worth)."
    )
    clock: Literal["business", "elapsed"] | None
    calendar: str | None = Field(
        None,
        description="The policy file's business calendar that times the metric (the metric's "
        "own, else its policy's); null on the elapsed clock.",
    )
    round: int | None = Field(
        None,
        description="next_response and periodic_update: the number of the current round (each "
        "customer reply that finds the ticket answered, each update period), or of the last "
        "one once it is done; absent on the other metrics.",
    )


Metrics = dict[str, Metric]
"""Per metric the ticket's policy times (`first_response`, `resolution`, ...): metric names
are data, as on the SLA events."""


class Ticket(_Model):
    ticket_id: str
    status: TicketStatus
    severity: int = Field(ge=1, le=4)
    customer_id: str | None
    assignee: str | None
    group: str | None
    policy: str | None = Field(
        None,
        description="Name of the policy the ticket runs under (chosen per ticket from the "
        "policy file's policies by its attributes).",
    )
    policy_version: str | None = Field(
        None, description="Version of the policy file the ticket was last evaluated under."
    )
    calendar: str | None = Field(
        None,
        description="Name of the ticket's policy's business calendar (a metric may name "
        "another: see each metric's `calendar`).",
    )
    reported_at: Instant | None
    first_response_at: Instant | None
    resolved_at: Instant | None
    closed_at: Instant | None
    cycle: int
    sla_state: SlaState | None
    next_due_at: Instant | None
    escalation_level: int
    last_event_at: Instant | None
    clock_stopped: str | None = Field(
        None,
        description="Why the SLA clock is not running now: `paused` (waiting on the customer) "
        "or `outside_business_hours`; null while it runs.",
    )
    elapsed_fraction: float | None = Field(
        None,
        description="Share of the next running target already used (0..1, above 1 once "
        "overdue), on the metric's own clock.",
    )
    metrics: Metrics


class TicketPage(_Model):
    now: Instant
    items: list[Ticket]
    limit: int
    offset: int
    next_offset: int | None


Round = Annotated[
    int | None,
    Field(description="next_response and periodic_update: the round the event is about."),
]
Repeat = Annotated[
    int | None, Field(description="A repeated escalation of its level (`repeat_every`): 1, 2, ...")
]
BeforeSeconds = Annotated[
    float | None,
    Field(description="A warning by lead time (`warn_before`): seconds before the breach."),
]
"""Fields an SLA event carries for the metrics of #8 §3, in a ticket's timeline and in listings."""
AgreementKind = Annotated[
    str | None,
    Field(description="Files with OLAs: `sla` (the customer SLA) or `ola`; absent otherwise."),
]
AgreementName = Annotated[
    str | None, Field(description="Files with OLAs: the policy's or the OLA's name.")
]
OwnershipGroup = Annotated[
    str | None, Field(description="group_ownership: the group whose ownership cycle it is.")
]


class Held(_Model):
    group: str | None
    assignee: str | None
    seconds: float = Field(description="Counted time held, on the metric's clock.")


class TimelineEntry(_Model):
    at: Instant
    type: str
    event_id: str | None = None
    metric: str | None = None
    severity: int | None = None
    cycle: int | None = None
    due_at: Instant | None = None
    level: int | None = None
    to: str | None = None
    threshold: float | None = None
    took_seconds: float | None = None
    clock: str | None = None
    eta: Instant | None = None
    calendar: str | None = Field(
        None, description="The calendar that timed the SLA event (`elapsed`: the elapsed clock)."
    )
    policy_version: str | None = Field(
        None,
        description="On an SLA event: the policy version that timed it (after a rollout, the "
        "version the ticket moved to or stayed on).",
    )
    round: Round = None
    repeat: Repeat = None
    before_seconds: BeforeSeconds = None
    agreement_kind: AgreementKind = None
    agreement: AgreementName = None
    ownership_group: OwnershipGroup = None
    attribution: list[Held] | None = Field(
        None,
        description="sla.met, sla.breached, sla.stopped with time attribution: who held the "
        "ticket for how much of the metric's counted time.",
    )


class TicketDetail(Ticket):
    now: Instant
    timeline: list[TimelineEntry]


class PolicyRef(_Model):
    name: str
    version: str | int | None = None
    calendar: str | None = Field(
        None,
        description="On an SLA event: the business calendar that timed it, or `elapsed` for "
        "the elapsed clock (null when the event names none); on the dashboard: the policy's.",
    )


class SlaEvent(_Model):
    event_id: str
    ticket_id: str
    type: str
    metric: str
    severity: int
    cycle: int
    due_at: Instant
    at: Instant
    policy: PolicyRef
    level: int | None = None
    to: str | None = None
    threshold: float | None = None
    took_seconds: float | None = None
    clock: str | None = None
    eta: Instant | None = None
    round: Round = None
    repeat: Repeat = None
    before_seconds: BeforeSeconds = None
    agreement_kind: AgreementKind = None
    agreement: AgreementName = None
    ownership_group: OwnershipGroup = None


class SlaEventPage(_Model):
    items: list[SlaEvent]
    limit: int
    offset: int
    next_offset: int | None


class Escalation(_Model):
    event_id: str
    ticket_id: str
    level: int
    to: str | None
    severity: int
    cycle: int
    escalated_at: Instant
    ticket_status: TicketStatus | None
    resolved_since: bool
    resolved_at: Instant | None
    customer_id: str | None
    assignee: str | None
    group: str | None
    policy: str | None = None


class EscalationPage(_Model):
    now: Instant
    since: Instant
    items: list[Escalation]
    limit: int
    offset: int
    next_offset: int | None


class Stats(_Model):
    mean_seconds: float | None
    median_seconds: float | None


class MetricCompliance(_Model):
    met: int
    breached: int
    breached_exempt: int | None = Field(
        None,
        description="Breaches whose reason (`ticket.breach_reason`) the policy exempts: in "
        "neither `met` nor `breached`. First response and resolution only.",
    )
    compliance: float | None = Field(description="met / (met + breached); null when neither.")
    elapsed: Stats
    business: Stats


class ComplianceGroup(_Model):
    key: int | str
    tickets: int
    first_response: MetricCompliance
    resolution: MetricCompliance
    metrics: dict[str, MetricCompliance] = Field(
        default_factory=dict,
        description="Every other metric decided for the group's tickets (next_response, "
        "periodic_update, ...), by metric name: each round met or breached counts once; times "
        "are the met rounds' on the clock that timed them.",
    )
    agreements: dict[str, MetricCompliance] | None = Field(
        None,
        description="Files with OLAs: each OLA's group ownership, by its name: each cycle met "
        "or breached counts once.",
    )


class ComplianceReport(_Model):
    start: Instant = Field(alias="from")
    end: Instant = Field(alias="to")
    group_by: str
    timezone: str
    groups: list[ComplianceGroup]


class HeldTotal(_Model):
    group: str | None = None
    assignee: str | None = None
    seconds: float
    events: int


class AttributionReport(_Model):
    start: Instant = Field(alias="from")
    end: Instant = Field(alias="to")
    type: str
    groups: list[HeldTotal]
    assignees: list[HeldTotal]


class ExplainedInterval(_Model):
    start: Instant
    end: Instant
    counted: bool
    seconds: float = Field(description="Seconds the interval counted (0 when it did not).")
    cause: Literal["counted", "closed hours", "holiday", "closure", "paused", "stopped"]
    calendar: str | None = Field(
        None, description="The calendar that counted it (or was closed); `elapsed` if none."
    )
    holiday: str | None = Field(None, description="The holiday's name (cause `holiday`).")
    reason: str | None = Field(None, description="A manual stop's reason code.")
    actor: str | None = Field(None, description="Who stopped the clock (an id).")


class ExplainedMetric(_Model):
    metric: str
    status: Literal["running", "held", "met", "breached", "stopped"]
    clock: Literal["business", "elapsed"]
    calendars: list[str] = Field(description="The calendars that counted it, in order.")
    target: str = Field(description="How the target was set (a duration or a deadline).")
    target_seconds: float
    due_at: Instant | None = Field(description="The deadline now (null while held).")
    counted_seconds: float = Field(
        description="What the metric's clock counted: `took_seconds` of its sla.met."
    )
    intervals: list[ExplainedInterval]


class ExplainedBreachReason(_Model):
    metric: str
    round: int
    reason: str
    actor: str
    at: Instant


class Explanation(_Model):
    ticket_id: str
    severity: int
    status: str
    policy: str
    version: str
    upto: Instant = Field(description="Clocks still running are explained up to this instant.")
    metrics: list[ExplainedMetric]
    breach_reasons: list[ExplainedBreachReason]


class Error(_Model):
    error: str
    parameter: str | None = None


class Health(_Model):
    status: Literal["ok"]


class Ready(_Model):
    ready: bool
    database: bool
    projector: Literal["caught_up", "behind", "not_running", "topic_missing", "disabled"]
    lag: dict[str, int] = Field(description="Records behind the end of each `topic/partition`.")
    max_lag: int
    missing_topics: list[str] = Field(
        description="Subscribed topics the broker does not have (yet): not ready while any is."
    )


class Offset(_Model):
    topic: str
    partition: int
    next_offset: int


class ProjectorStats(_Model):
    tickets: int
    offsets: list[Offset]
    projector: dict[str, Any] | None


class Tiles(_Model):
    open: int
    breached: int = Field(description="Open tickets with a metric breached or overdue now.")
    at_risk_1h: int = Field(description="Open, not breached, next deadline within the hour.")
    escalated_24h: int = Field(description="Distinct tickets escalated in the last 24 hours.")
    compliance_today: float | None = Field(
        description="SLA outcomes decided since local midnight: met / (met + breached)."
    )
    met_today: int
    breached_today: int


class Filters(_Model):
    group: str | None
    customer: str | None
    policy: str | None


class Dashboard(_Model):
    now: Instant
    filters: Filters
    tiles: Tiles
    open: list[Ticket] = Field(description="Breached first, then by next deadline.")
    escalations: list[Escalation]
    compliance: list[ComplianceGroup] = Field(description="Last 30 days per severity.")
    compliance_by_day: list[ComplianceGroup] = Field(description="Last 30 days per local day.")
    compliance_by_policy: list[ComplianceGroup] = Field(
        description="Last 30 days per policy (each ticket's own)."
    )
    breach_time_by_group: list[HeldTotal] = Field(
        default_factory=list,
        description="Last 30 days: the counted time each group held tickets while a metric "
        "that breached ran (attribution of the sla.breached events; empty without it).",
    )
    policy: PolicyRef
