"""Inbound ticket lifecycle events: the contract with upstream ticketing systems.

One JSON object per event. Unknown extra fields are accepted and dropped on parsing, so free
text an upstream system sends along (titles, descriptions, comments) never reaches our state,
our outbound events or our logs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, overload

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_serializer

from events.instants import Micros, from_datetime

Severity = Annotated[int, Field(ge=1, le=4, description="1 (critical) to 4 (low)")]
Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class _EventTime:
    """`occurred_at` as microseconds since the epoch, computed on first access and kept.

    functools.cached_property without its lock (Python 3.11 takes one on every first access,
    which costs more than the conversion): the value lands in the instance `__dict__`, which
    then shadows this non-data descriptor.
    """

    @overload
    def __get__(self, instance: None, owner: Any = None) -> _EventTime: ...
    @overload
    def __get__(self, instance: _TicketEventBase, owner: Any = None) -> Micros: ...
    def __get__(self, instance: _TicketEventBase | None, owner: Any = None) -> Micros | _EventTime:
        if instance is None:
            return self
        value = from_datetime(instance.occurred_at)
        instance.__dict__["at"] = value
        return value


class _TicketEventBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: Identifier = Field(description="Unique id of this event; redeliveries repeat it.")
    ticket_id: Identifier
    occurred_at: AwareDatetime = Field(description="RFC 3339 timestamp with a UTC offset.")
    source: str | None = Field(default=None, max_length=256)
    schema_version: int | str | None = None

    at: ClassVar[_EventTime] = _EventTime()
    """`occurred_at` as microseconds since the epoch."""

    @field_serializer("occurred_at")
    def _utc(self, value: datetime) -> str:
        return value.isoformat()


class TicketOpened(_TicketEventBase):
    type: Literal["ticket.opened"] = "ticket.opened"
    severity: Severity
    customer_id: Identifier | None = None


class TicketSeverityChanged(_TicketEventBase):
    type: Literal["ticket.severity_changed"] = "ticket.severity_changed"
    severity: Severity


class TicketResponded(_TicketEventBase):
    """An agent replied to the customer: fulfils first response."""

    type: Literal["ticket.responded"] = "ticket.responded"


class TicketPaused(_TicketEventBase):
    """Waiting on the customer: pausable clocks stop."""

    type: Literal["ticket.paused"] = "ticket.paused"


class TicketResumed(_TicketEventBase):
    type: Literal["ticket.resumed"] = "ticket.resumed"


class TicketResolved(_TicketEventBase):
    type: Literal["ticket.resolved"] = "ticket.resolved"


class TicketReopened(_TicketEventBase):
    type: Literal["ticket.reopened"] = "ticket.reopened"


class TicketClosed(_TicketEventBase):
    type: Literal["ticket.closed"] = "ticket.closed"


class TicketAssigned(_TicketEventBase):
    type: Literal["ticket.assigned"] = "ticket.assigned"
    assignee: Identifier | None = None
    group: Identifier | None = None


class TicketCustomerNotified(_TicketEventBase):
    """The customer was given an estimated time for completion."""

    type: Literal["ticket.customer_notified"] = "ticket.customer_notified"


TicketEvent = Annotated[
    TicketOpened
    | TicketSeverityChanged
    | TicketResponded
    | TicketPaused
    | TicketResumed
    | TicketResolved
    | TicketReopened
    | TicketClosed
    | TicketAssigned
    | TicketCustomerNotified,
    Field(discriminator="type"),
]
"""Any inbound ticket event, told apart by its `type`."""

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
)

ticket_event_adapter: TypeAdapter[TicketEvent] = TypeAdapter(TicketEvent)


class ClockTick(BaseModel):
    """A control record for the event-time clock: "time is now at least `occurred_at`".

    Not a ticket event: stream processors in event-clock mode fire every timer due up to it.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["clock.tick"] = "clock.tick"
    occurred_at: AwareDatetime

    @property
    def at(self) -> Micros:
        return from_datetime(self.occurred_at)
