"""Outbound SLA events: the contract with teams whose alerting consumes our output.

Every event carries ids and metadata only, never ticket free text. Its `event_id` is derived
from what the event is about (ticket, metric, rule, threshold or level, cycle), so a replay,
a retry or a restarted worker yields the same id and consumers can deduplicate on it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Metric = Literal["first_response", "resolution", "escalation"]
Timestamp = Annotated[str, Field(description="RFC 3339, UTC, e.g. 2026-11-30T15:30:00Z")]

ID_NAMESPACE = uuid.UUID("5d1f8b0e-3c1a-4f7e-9a57-6b2f0c1e4d21")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""The RFC 4122 variant bits set into the 17th hex digit of the hash."""


def sla_event_id(ticket_id: str, reported_at: int, metric: str, rule: str, cycle: int) -> str:
    """The deterministic id of an SLA event: a UUIDv5 of what the event is about.

    The ticket is named by its id and report instant (microseconds), so a ticket id that an
    upstream system reuses long after closing gets fresh ids. `rule` names the timer within
    the metric (`warning:0.5`, `breached`, `met:0`, `level:1`, ...).
    """
    name = f"{ticket_id}\x1f{reported_at}\x1f{metric}\x1f{rule}\x1f{cycle}".encode()
    # uuid.uuid5 by hand (same result, see tests): no UUID object on the hot path.
    h = hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


class PolicyRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str


class _SlaEventBase(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="Deterministic: same ticket, metric, rule, cycle -> same id.")
    ticket_id: str
    severity: int = Field(ge=1, le=4)
    metric: Metric
    due_at: Timestamp = Field(description="The deadline this event is about.")
    at: Timestamp = Field(description="When the event fired (event time).")
    cycle: int = Field(ge=0, description="0 for the first resolution cycle, +1 per reopen.")
    policy: PolicyRef


class SlaWarning(_SlaEventBase):
    type: Literal["sla.warning"] = "sla.warning"
    threshold: float = Field(gt=0, lt=1, description="Fraction of the target elapsed.")


class SlaBreached(_SlaEventBase):
    type: Literal["sla.breached"] = "sla.breached"


class SlaMet(_SlaEventBase):
    type: Literal["sla.met"] = "sla.met"
    took_seconds: float = Field(ge=0, description="Time it took, on the metric's clock.")
    clock: Literal["business", "elapsed"]


class TicketEscalated(_SlaEventBase):
    type: Literal["ticket.escalated"] = "ticket.escalated"
    level: int = Field(ge=1, description="1-based escalation level.")
    to: str = Field(description="Who the ticket is escalated to.")


class CustomerNotificationRequired(_SlaEventBase):
    """Sent with every resolution breach: tell the customer, with an estimated completion."""

    type: Literal["customer.notification_required"] = "customer.notification_required"
    eta: Timestamp = Field(
        description="Estimated completion: the breached deadline plus one more resolution "
        "target on the metric's clock."
    )


SlaEvent = Annotated[
    SlaWarning | SlaBreached | SlaMet | TicketEscalated | CustomerNotificationRequired,
    Field(discriminator="type"),
]
sla_event_adapter: TypeAdapter[SlaEvent] = TypeAdapter(SlaEvent)

SLA_EVENT_TYPES: tuple[str, ...] = (
    "sla.warning",
    "sla.breached",
    "sla.met",
    "ticket.escalated",
    "customer.notification_required",
)
