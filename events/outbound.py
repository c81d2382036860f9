"""Outbound SLA events: the contract with teams whose alerting consumes our output.

Every event carries ids and metadata only, never ticket free text. Its `event_id` is derived
from what the event is about (see `events.ids`), so a replay, a retry or a restarted worker
yields the same id and consumers can deduplicate on it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from events.text import MAX_TEXT, Printable

Metric = Literal[
    "first_response",
    "resolution",
    "next_response",
    "periodic_update",
    "escalation",
    "group_ownership",
]
Timestamp = Annotated[str, Field(description="RFC 3339, UTC, e.g. 2026-11-30T15:30:00Z")]
Id = Annotated[Printable, Field(min_length=1, max_length=MAX_TEXT)]
"""An id or name from the inbound contract: 1-256 characters, no control characters."""
MAX_COUNT = 2**31 - 1
"""Cycles, levels, rounds and repeats fit a 32-bit signed integer (a read model's column)."""


class PolicyRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: Printable = Field(
        description="The policy the ticket runs under (of the file's policies)."
    )
    version: Printable
    calendar: Printable | None = Field(
        None,
        description="The business calendar that timed this event, or `elapsed` for the "
        "elapsed clock.",
    )


class AgreementRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["sla", "ola"] = Field(
        description="`sla`: the customer SLA (the policy the ticket runs under); `ola`: an "
        "operational level agreement of the policy file (`[[olas]]`)."
    )
    name: Printable = Field(description="The policy's or the OLA's name.")


class Held(BaseModel):
    """Who held the ticket for part of a metric's counted time (time attribution)."""

    model_config = ConfigDict(frozen=True)

    group: Id | None = Field(description="The ticket's group then (null: none).")
    assignee: Id | None = Field(description="The ticket's assignee then (null: none).")
    seconds: float = Field(ge=0, description="Counted time held, on the metric's clock.")


Attribution = Annotated[
    list[Held] | None,
    Field(
        description="Files with time attribution (on with OLAs): how much of the metric's "
        "counted time (up to this event) each group and assignee held the ticket, in the "
        "order they first did."
    ),
]


class _SlaEventBase(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: Id = Field(description="Deterministic: same ticket, metric, rule, cycle -> same id.")
    ticket_id: Id
    severity: int = Field(ge=1, le=4)
    metric: Metric
    due_at: Timestamp = Field(description="The deadline this event is about.")
    at: Timestamp = Field(description="When the event fired (event time).")
    cycle: int = Field(
        ge=0, le=MAX_COUNT, description="0 for the first resolution cycle, +1 per reopen."
    )
    policy: PolicyRef
    customer_id: Id | None = Field(description="The ticket's customer (organisation), if known.")
    group: Id | None = Field(description="The ticket's group when the event fired, if known.")
    assignee: Id | None = Field(description="The ticket's assignee when the event fired.")
    round: int | None = Field(
        None,
        ge=1,
        le=MAX_COUNT,
        description="next_response and periodic_update: the round this event is about "
        "(1-based: the customer reply, or the update period, counted over the ticket); "
        "group_ownership: the OLA's ownership cycle (1-based, counted over the ticket).",
    )
    agreement: AgreementRef | None = Field(
        None,
        description="Files with OLAs: the agreement this event is about (absent otherwise: "
        "the customer SLA, the only one).",
    )
    ownership_group: Id | None = Field(
        None, description="group_ownership only: the group whose ownership cycle this is."
    )


class SlaWarning(_SlaEventBase):
    type: Literal["sla.warning"] = "sla.warning"
    threshold: float = Field(gt=0, lt=1, description="Fraction of the target elapsed.")
    before_seconds: float | None = Field(
        None,
        gt=0,
        description="A warning by lead time (`warn_before`): how long before the breach it "
        "fires, in seconds on the metric's clock.",
    )


class SlaBreached(_SlaEventBase):
    type: Literal["sla.breached"] = "sla.breached"
    attribution: Attribution = None


class SlaMet(_SlaEventBase):
    type: Literal["sla.met"] = "sla.met"
    took_seconds: float = Field(ge=0, description="Time it took, on the metric's clock.")
    clock: Literal["business", "elapsed"]
    attribution: Attribution = None


class SlaStopped(_SlaEventBase):
    """A breached group ownership cycle ended (the ticket moved to another group, the OLA
    stopped holding, or the ticket was resolved): how long the group held it in all."""

    type: Literal["sla.stopped"] = "sla.stopped"
    took_seconds: float = Field(ge=0, description="Time held, on the metric's clock.")
    clock: Literal["business", "elapsed"]
    attribution: Attribution = None


class TicketEscalated(_SlaEventBase):
    type: Literal["ticket.escalated"] = "ticket.escalated"
    level: int = Field(ge=1, le=MAX_COUNT, description="1-based escalation level.")
    to: Printable = Field(description="Who the ticket is escalated to.")
    repeat: int | None = Field(
        None,
        ge=1,
        le=MAX_COUNT,
        description="A repeated escalation of the level (`repeat_every`): 1 for the first "
        "repeat; absent on the level's first escalation.",
    )


class CustomerNotificationRequired(_SlaEventBase):
    """Sent with every resolution breach: tell the customer, with an estimated completion."""

    type: Literal["customer.notification_required"] = "customer.notification_required"
    eta: Timestamp = Field(
        description="Estimated completion: the breached deadline plus one more resolution "
        "target on the metric's clock."
    )


class SlaRetracted(_SlaEventBase):
    """A correction: the SLA event `retracts` no longer holds.

    Sent when a ticket event arrives after a timer it would have prevented or changed has
    already fired (a reply delivered late): the fired event is withdrawn, and the events that
    hold with the late event in its place follow, with new ids. Consumers delete (or mark) the
    retracted event; `metric`, `due_at` and `cycle` are the retracted event's, `at` is the
    `occurred_at` of the late ticket event.
    """

    type: Literal["sla.retracted"] = "sla.retracted"
    event_id: Id = Field(description="Deterministic: a UUIDv5 of the retracted event's id.")
    retracts: Id = Field(description="The event_id of the SLA event withdrawn.")
    retracted_type: Literal[
        "sla.warning",
        "sla.breached",
        "sla.met",
        "ticket.escalated",
        "customer.notification_required",
        "sla.stopped",
        "sla.stop_ended",
        "sla.breach_reason",
    ] = Field(description="The type of the SLA event withdrawn.")


class SlaStopEnded(_SlaEventBase):
    """A manual stop of the clock (`ticket.sla_stopped`) held longer than the policy allows
    (`[stop_clock] max`): it ended by itself at `at`, and `metric` counts again; `due_at` is
    its deadline from there (one event per stopped metric still running)."""

    type: Literal["sla.stop_ended"] = "sla.stop_ended"
    reason: Printable = Field(description="The stop's reason code.")
    actor: Printable = Field(description="Who stopped the clock (an id).")
    stopped_at: Timestamp = Field(description="When the stop began.")
    cause: Literal["max_stop"] = Field(description="Why it ended: the longest stop passed.")


class SlaBreachReason(_SlaEventBase):
    """Why `metric` breached (`ticket.breach_reason`): a code of the policy's
    `[breach_reasons]`; `exempt` breaches count as breached-exempt in compliance. A later
    reason for the same breach replaces this one."""

    type: Literal["sla.breach_reason"] = "sla.breach_reason"
    reason: Printable = Field(description="The breach reason code.")
    actor: Printable = Field(description="Who gave the reason (an id).")
    exempt: bool = Field(description="Whether the policy exempts this reason from compliance.")


SlaEvent = Annotated[
    SlaWarning
    | SlaBreached
    | SlaMet
    | TicketEscalated
    | CustomerNotificationRequired
    | SlaRetracted
    | SlaStopped
    | SlaStopEnded
    | SlaBreachReason,
    Field(discriminator="type"),
]
sla_event_adapter: TypeAdapter[SlaEvent] = TypeAdapter(SlaEvent)

SLA_EVENT_TYPES: tuple[str, ...] = (
    "sla.warning",
    "sla.breached",
    "sla.met",
    "ticket.escalated",
    "customer.notification_required",
    "sla.retracted",
    "sla.stopped",
    "sla.stop_ended",
    "sla.breach_reason",
)
