"""Inbound ticket lifecycle events: the contract with upstream ticketing systems.

One JSON object per event. Unknown extra fields are accepted and dropped on parsing, so free
text an upstream system sends along (titles, descriptions, comments) never reaches our state,
our outbound events or our logs.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter, field_validator, with_config
from typing_extensions import TypedDict

from events.instants import SUPPORTED_RANGE, Micros, parse_rfc3339
from events.text import MAX_TEXT, PRINTABLE_PATTERN

Severity = Annotated[int, Strict(), Field(ge=1, le=4, description="1 (critical) to 4 (low)")]
"""A JSON integer: `true`, `"1"` and `2.0` are rejected (strict JSON types)."""
DATE_TIME_PATTERN = (
    r"^(19[7-9][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""`occurred_at` as far as a regular expression can say it (years 1970-8999 before the offset
is applied; which days a month has is JSON Schema's `date-time` format's to check)."""
Timestamp = Annotated[
    str,
    Strict(),
    Field(
        max_length=64,
        description="RFC 3339 date-time with a UTC offset (T and Z in either case), between "
        f"{SUPPORTED_RANGE}; a leap second 23:59:60Z reads as 23:59:59.999999Z.",
        # The pattern is for schema readers only (events.instants.parse_rfc3339 decides).
        json_schema_extra={"format": "date-time", "pattern": DATE_TIME_PATTERN},
    ),
]
"""Validated as a JSON string here; its shape and range by `events.instants.parse_rfc3339`."""
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=PRINTABLE_PATTERN)]
"""A free string of the contract (an attribute value, `source`): at most 256 characters, no
control characters (`events.text`)."""
Identifier = Annotated[Text, Field(min_length=1)]
"""An id or name: 1-256 characters, no control characters (`events.text`), compared exactly."""

# Validated into plain dicts (pydantic TypedDicts), not model instances: building a model
# instance cost more than validating the event, and the core reads only a few fields (see
# `events.records`). The config is repeated on each class: TypedDicts do not inherit it.
_CONFIG = ConfigDict(extra="ignore")

Channel = Annotated[
    Identifier | None, Field(description="Where the ticket came in, e.g. email, phone, chat.")
]
Tags = Annotated[
    list[Identifier],
    Field(max_length=64, description="The ticket's tags (an SLA policy may match on them)."),
]
Attributes = Annotated[
    dict[Identifier, Text],
    Field(
        max_length=64,
        description="Free string attributes an SLA policy may match on, e.g. tier, region.",
    ),
]


@with_config(_CONFIG)
class _TicketEventBase(TypedDict):
    event_id: Annotated[
        Identifier, Field(description="Unique id of this event; redeliveries repeat it.")
    ]
    ticket_id: Identifier
    occurred_at: Timestamp
    source: NotRequired[Text | None]
    schema_version: NotRequired[
        Annotated[int, Strict()] | Annotated[Text, Field(max_length=64)] | None
    ]


@with_config(_CONFIG)
class TicketOpened(_TicketEventBase):
    type: Literal["ticket.opened"]
    severity: Severity
    customer_id: NotRequired[Identifier | None]
    group: NotRequired[Identifier | None]
    assignee: NotRequired[Identifier | None]
    channel: NotRequired[Channel]
    tags: NotRequired[Tags]
    attributes: NotRequired[Attributes]


@with_config(_CONFIG)
class TicketUpdated(_TicketEventBase):
    """The ticket's routing attributes changed: each field given replaces what was known (an
    absent field is unchanged). Another SLA policy may then apply (see README, "Policies")."""

    type: Literal["ticket.updated"]
    group: NotRequired[Identifier | None]
    channel: NotRequired[Channel]
    tags: NotRequired[Tags]
    attributes: NotRequired[Attributes]


@with_config(_CONFIG)
class TicketSeverityChanged(_TicketEventBase):
    type: Literal["ticket.severity_changed"]
    severity: Severity


@with_config(_CONFIG)
class TicketResponded(_TicketEventBase):
    """A public reply or update from an agent to the customer: fulfils first response, the
    open next-response round, and the current periodic-update period."""

    type: Literal["ticket.responded"]


@with_config(_CONFIG)
class TicketCustomerReplied(_TicketEventBase):
    """A public message from the customer (not the one that opened the ticket): starts a
    next-response round if the agent had answered since the customer's last message."""

    type: Literal["ticket.customer_replied"]


@with_config(_CONFIG)
class TicketPaused(_TicketEventBase):
    """Waiting on the customer: pausable clocks stop."""

    type: Literal["ticket.paused"]


@with_config(_CONFIG)
class TicketResumed(_TicketEventBase):
    type: Literal["ticket.resumed"]


@with_config(_CONFIG)
class TicketResolved(_TicketEventBase):
    type: Literal["ticket.resolved"]


@with_config(_CONFIG)
class TicketReopened(_TicketEventBase):
    type: Literal["ticket.reopened"]


@with_config(_CONFIG)
class TicketClosed(_TicketEventBase):
    type: Literal["ticket.closed"]


@with_config(_CONFIG)
class TicketAssigned(_TicketEventBase):
    """The current assignment: both fields replace what was known (absent: none)."""

    type: Literal["ticket.assigned"]
    assignee: NotRequired[Identifier | None]
    group: NotRequired[Identifier | None]


@with_config(_CONFIG)
class TicketCustomerNotified(_TicketEventBase):
    """The customer was given an estimated time for completion."""

    type: Literal["ticket.customer_notified"]


@with_config(_CONFIG)
class TicketEscalationAcknowledged(_TicketEventBase):
    """Someone took the escalation: the level's repeats stop (an optional `ack_timeout` of
    the level re-arms it when the ticket has not progressed; docs/actions.md). From a
    signed acknowledge link, PagerDuty's `incident.acknowledged`, or any integrator."""

    type: Literal["ticket.escalation_acknowledged"]
    level: NotRequired[
        Annotated[
            int,
            Strict(),
            Field(
                ge=1,
                le=2**31 - 1,
                description="The level acknowledged; absent: every level that has fired.",
            ),
        ]
        | None
    ]
    actor: NotRequired[
        Annotated[Identifier, Field(description="Who acknowledged: an id, never a name.")] | None
    ]


Code = Annotated[
    Identifier,
    Field(max_length=64, description="A reason code from the policy's list, e.g. third_party."),
]
Actor = Annotated[Identifier, Field(description="Who did it: an agent's id, never a name.")]


@with_config(_CONFIG)
class TicketSlaStopped(_TicketEventBase):
    """An agent stops the ticket's clock (stop-the-clock): the metrics the policy's
    `[stop_clock]` lists stop counting until `ticket.sla_started`, or until the policy's
    longest stop has passed. A reason not in the policy's list is rejected."""

    type: Literal["ticket.sla_stopped"]
    reason: Code
    actor: Actor


@with_config(_CONFIG)
class TicketSlaStarted(_TicketEventBase):
    """The manual stop ends: the stopped metrics count again."""

    type: Literal["ticket.sla_started"]
    actor: Actor
    reason: NotRequired[Code | None]


@with_config(_CONFIG)
class TicketBreachReason(_TicketEventBase):
    """Why a breached metric breached: a code from the policy's `[breach_reasons]`; an exempt
    code reports the breach as `breached-exempt` in compliance."""

    type: Literal["ticket.breach_reason"]
    metric: Literal["first_response", "resolution", "next_response", "periodic_update"]
    reason: Code
    actor: Actor


TicketEventPayload = Annotated[
    TicketOpened
    | TicketSeverityChanged
    | TicketResponded
    | TicketPaused
    | TicketResumed
    | TicketResolved
    | TicketReopened
    | TicketClosed
    | TicketAssigned
    | TicketCustomerNotified
    | TicketUpdated
    | TicketCustomerReplied
    | TicketEscalationAcknowledged
    | TicketSlaStopped
    | TicketSlaStarted
    | TicketBreachReason,
    Field(discriminator="type"),
]
"""Any inbound ticket event as JSON, told apart by its `type`: the integrators' contract."""

TICKET_EVENT_TYPES: tuple[str, ...] = (
    "ticket.opened",
    "ticket.severity_changed",
    "ticket.responded",
    "ticket.paused",
    "ticket.resumed",
    "ticket.resolved",
    "ticket.reopened",
    "ticket.closed",
    "ticket.assigned",
    "ticket.customer_notified",
    "ticket.updated",
    "ticket.customer_replied",
    "ticket.escalation_acknowledged",
    "ticket.sla_stopped",
    "ticket.sla_started",
    "ticket.breach_reason",
)

ticket_event_adapter: TypeAdapter[TicketEventPayload] = TypeAdapter(TicketEventPayload)


class ClockTick(BaseModel):
    """A control record for the event-time clock: "time is now at least `occurred_at`".

    Not a ticket event: stream processors in event-clock mode fire every timer due up to it.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["clock.tick"] = "clock.tick"
    occurred_at: Timestamp

    @field_validator("occurred_at")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        parse_rfc3339(value)
        return value

    @property
    def at(self) -> Micros:
        return parse_rfc3339(self.occurred_at)
