"""An outbound SLA event as the SLA core builds it: one TypedDict per type of the contract.

They mirror `events.outbound` field for field (a test compares them with the pydantic
models), so mypy checks the producer (`streams.sla.timers` and `streams.sla.corrections`)
against the contract, not only the consumers' tests. Inside the core an instant stays integer
microseconds UTC (`due_at`, `at`, `eta`); `wire` turns a record into the
contract's JSON, with RFC 3339 text, once, at the edge (the replay's output, the engine's
producer). A TypedDict is a plain dict at run time; the keys are in the order the core writes
them, which the golden outputs fix. Optional fields of the contract (`round`, `repeat`,
`before_seconds`, `agreement`, `ownership_group`, `attribution`) are left out when they do not
apply, never written as null: the core adds them by unpacking a `Round`, `Repeat`, `LeadTime`,
`Agreed`, `Owned` or `Attributed`, empty when they do not apply.
"""

# No `from __future__ import annotations`: Python 3.11 finds `NotRequired` (the TypedDicts'
# `__required_keys__`) only in annotations evaluated at class creation.
from typing import Final, Literal, NotRequired, TypedDict

from events.instants import Micros, format_instant


class PolicyRef(TypedDict):
    """`events.outbound.PolicyRef`: the policy and the calendar that timed the event."""

    name: str
    version: str
    calendar: NotRequired[str]


class AgreementRef(TypedDict):
    """`events.outbound.AgreementRef`: the customer SLA or an OLA."""

    kind: Literal["sla", "ola"]
    name: str


class Held(TypedDict):
    """`events.outbound.Held`: who held the ticket for part of a metric's counted time."""

    group: str | None
    assignee: str | None
    seconds: float


class SlaBody(TypedDict):
    """The fields every SLA event has after its `event_id` and `type`
    (`events.outbound._SlaEventBase`); `due_at` and `at` in microseconds UTC."""

    ticket_id: str
    severity: int
    metric: str
    due_at: Micros
    at: Micros
    cycle: int
    policy: PolicyRef
    customer_id: str | None
    group: str | None
    assignee: str | None
    agreement: NotRequired[AgreementRef]
    ownership_group: NotRequired[str]


class Agreed(TypedDict, total=False):
    """`agreement` of an event under a file with OLAs (absent: the customer SLA, the only one)."""

    agreement: AgreementRef


class Owned(TypedDict, total=False):
    """`ownership_group` of a group ownership cycle's event (absent: another metric)."""

    ownership_group: str


class Attributed(TypedDict, total=False):
    """`attribution` of an event closing a metric under a file with time attribution."""

    attribution: list[Held]


class _SlaRecord(SlaBody):
    event_id: str


class Round(TypedDict, total=False):
    """`round` of a rounded metric's event (absent: not rounded)."""

    round: int


class Repeat(TypedDict, total=False):
    """`repeat` of an escalation level's repeat (absent: the level's first firing)."""

    repeat: int


class LeadTime(TypedDict, total=False):
    """`before_seconds` of a warning set by lead time (absent: by fraction)."""

    before_seconds: float


NOT_ROUNDED: Final[Round] = {}
NOT_REPEATED: Final[Repeat] = {}
NO_LEAD_TIME: Final[LeadTime] = {}
NOT_AGREED: Final[Agreed] = {}
NOT_OWNED: Final[Owned] = {}
NOT_ATTRIBUTED: Final[Attributed] = {}


class SlaWarning(_SlaRecord):
    type: Literal["sla.warning"]
    threshold: float
    before_seconds: NotRequired[float]
    round: NotRequired[int]


class SlaBreached(_SlaRecord):
    type: Literal["sla.breached"]
    round: NotRequired[int]
    attribution: NotRequired[list[Held]]


class SlaMet(_SlaRecord):
    type: Literal["sla.met"]
    took_seconds: float
    clock: Literal["business", "elapsed"]
    round: NotRequired[int]
    attribution: NotRequired[list[Held]]


class SlaStopped(_SlaRecord):
    type: Literal["sla.stopped"]
    took_seconds: float
    clock: Literal["business", "elapsed"]
    round: NotRequired[int]
    attribution: NotRequired[list[Held]]


class TicketEscalated(_SlaRecord):
    type: Literal["ticket.escalated"]
    level: int
    to: str
    repeat: NotRequired[int]


class CustomerNotificationRequired(_SlaRecord):
    type: Literal["customer.notification_required"]
    eta: Micros


class SlaStopEnded(_SlaRecord):
    type: Literal["sla.stop_ended"]
    reason: str
    actor: str
    stopped_at: Micros
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
    "sla.stopped",
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
    | SlaStopped
    | SlaStopEnded
    | SlaBreachReason
)
"""Any SLA event the core emits (`type` tells which)."""


class PolicyActivated(TypedDict):
    """`events.rollouts.PolicyActivated`: a rollout took effect on one partition (the
    engine's audit record on the SLA topic; `at` is RFC 3339 text, as it is made once)."""

    type: Literal["policy.activated"]
    event_id: str
    name: str
    version: str
    digest: str
    mode: str
    at: str
    partition: int
    tickets_moved: int
    tickets_kept: int


Issued = (
    SlaWarning
    | SlaBreached
    | SlaMet
    | TicketEscalated
    | CustomerNotificationRequired
    | SlaStopped
    | SlaStopEnded
    | SlaBreachReason
)
"""An SLA event other than a retraction: what a retraction can withdraw."""


def wire(record: SlaRecord) -> dict[str, object]:
    """`record` as the contract has it (`events.outbound`): its instants as RFC 3339 text, UTC
    (`format_instant`), in the same key order. A new dict; `record` is unchanged."""
    due = record["due_at"]
    due_text = format_instant(due)
    at = record["at"]
    at_text = due_text if at == due else format_instant(at)
    if record["type"] == "customer.notification_required":
        return {**record, "due_at": due_text, "at": at_text, "eta": format_instant(record["eta"])}
    if record["type"] == "sla.stop_ended":
        stopped = format_instant(record["stopped_at"])
        return {**record, "due_at": due_text, "at": at_text, "stopped_at": stopped}
    return {**record, "due_at": due_text, "at": at_text}
