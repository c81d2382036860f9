"""An outbound SLA event as the SLA core builds it: one TypedDict per type of the contract.

They mirror `events.outbound` field for field (a test compares them with the pydantic
models), so mypy checks the producer (the fold, `streams.sla.timers` and
`streams.sla.corrections`) against the contract, not only the consumers' tests. A TypedDict
is a plain dict at run time: this costs the fold nothing, and the events are encoded as they
are (`orjson.dumps`: the keys in the order the core writes them, which the golden outputs
fix). Optional fields of the contract (`round`, `repeat`, `before_seconds`) are left out
when they do not apply, never written as null.
"""

# No `from __future__ import annotations`: Python 3.11 finds `NotRequired` (the TypedDicts'
# `__required_keys__`) only in annotations evaluated at class creation.
from typing import Literal, NotRequired, TypedDict


class PolicyRef(TypedDict):
    """`events.outbound.PolicyRef`: the policy and the calendar that timed the event."""

    name: str
    version: str
    calendar: NotRequired[str]


class _SlaRecord(TypedDict):
    """The fields every SLA event has (`events.outbound._SlaEventBase`); instants are RFC
    3339 text, UTC."""

    event_id: str
    ticket_id: str
    severity: int
    metric: str
    due_at: str
    at: str
    cycle: int
    policy: PolicyRef
    customer_id: str | None
    group: str | None
    assignee: str | None


class SlaWarning(_SlaRecord):
    type: Literal["sla.warning"]
    threshold: float
    before_seconds: NotRequired[float]
    round: NotRequired[int]


class SlaBreached(_SlaRecord):
    type: Literal["sla.breached"]
    round: NotRequired[int]


class SlaMet(_SlaRecord):
    type: Literal["sla.met"]
    took_seconds: float
    clock: Literal["business", "elapsed"]
    round: NotRequired[int]


class TicketEscalated(_SlaRecord):
    type: Literal["ticket.escalated"]
    level: int
    to: str
    repeat: NotRequired[int]


class CustomerNotificationRequired(_SlaRecord):
    type: Literal["customer.notification_required"]
    eta: str


class SlaStopEnded(_SlaRecord):
    type: Literal["sla.stop_ended"]
    reason: str
    actor: str
    stopped_at: str
    cause: Literal["max_stop"]
    round: NotRequired[int]


class SlaBreachReason(_SlaRecord):
    type: Literal["sla.breach_reason"]
    reason: str
    actor: str
    exempt: bool
    round: NotRequired[int]


RetractedType = Literal[
    "sla.warning",
    "sla.breached",
    "sla.met",
    "ticket.escalated",
    "customer.notification_required",
    "sla.stop_ended",
    "sla.breach_reason",
]


class SlaRetracted(_SlaRecord):
    type: Literal["sla.retracted"]
    retracts: str
    retracted_type: RetractedType


SlaRecord = (
    SlaWarning
    | SlaBreached
    | SlaMet
    | TicketEscalated
    | CustomerNotificationRequired
    | SlaRetracted
    | SlaStopEnded
    | SlaBreachReason
)
"""Any SLA event the core emits (`type` tells which)."""
Issued = (
    SlaWarning
    | SlaBreached
    | SlaMet
    | TicketEscalated
    | CustomerNotificationRequired
    | SlaStopEnded
    | SlaBreachReason
)
"""An SLA event other than a retraction: what a retraction can withdraw."""
