"""A validated inbound ticket event as the SLA core reads it: ids, type, time and metadata.

`events.codec` validates the JSON against the contract (`events.inbound`) and turns the
result into one of these: a compiled class with the few fields the core and projections use
and the event time already in microseconds. It has no place for free text, so nothing a
ticket says can reach our state, output or logs.
"""

from __future__ import annotations

import sys
import zlib
from typing import Any

from events.instants import Micros


class TicketEvent:
    """One ticket lifecycle event; `type` is the contract's tag, e.g. `ticket.opened`."""

    __slots__ = (
        "actor",
        "assignee",
        "at",
        "attributes",
        "channel",
        "customer_id",
        "event_id",
        "group",
        "has_group",
        "level",
        "metric",
        "pinned_digest",
        "reason",
        "severity",
        "tags",
        "ticket_id",
        "type",
    )

    def __init__(
        self,
        type: str,
        event_id: str,
        ticket_id: str,
        at: Micros,
        severity: int | None = None,
        customer_id: str | None = None,
        assignee: str | None = None,
        group: str | None = None,
        channel: str | None = None,
        tags: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        has_group: bool = True,
        level: int | None = None,
        reason: str | None = None,
        actor: str | None = None,
        metric: str | None = None,
    ) -> None:
        self.type = type
        self.event_id = event_id
        self.ticket_id = ticket_id
        self.at = at
        """`occurred_at` as microseconds since the epoch."""
        self.severity = severity
        """Set for `ticket.opened` and `ticket.severity_changed`."""
        self.customer_id = customer_id
        self.assignee = assignee
        self.group = group
        self.channel = channel
        self.tags = tags
        """None when the event does not say (a `ticket.updated` then leaves them unchanged)."""
        self.attributes = attributes
        self.has_group = has_group
        """Whether the event gives `group` (a `ticket.updated` without it keeps the group)."""
        self.level = level
        """`ticket.escalation_acknowledged`: the level acknowledged (None: every fired one)."""
        self.reason = reason
        """`ticket.sla_stopped`, `ticket.sla_started`, `ticket.breach_reason`: the reason code."""
        self.actor = actor
        """Who stopped or started the clock, or gave the breach reason: an id."""
        self.metric = metric
        """`ticket.breach_reason`: the breached metric it is about."""
        self.pinned_digest = 0
        """The digest of the event as received, when `redated` moved it (0: computed)."""

    def redated(self, at: Micros) -> TicketEvent:
        """The same event applied at `at` (a wall-clock worker takes an event dated slightly
        ahead of its clock as now), keeping the digest of the event as received, so that its
        redelivery, redated to another now, is still told apart from a reused id."""
        moved = TicketEvent(
            self.type,
            self.event_id,
            self.ticket_id,
            at,
            self.severity,
            self.customer_id,
            self.assignee,
            self.group,
            self.channel,
            self.tags,
            self.attributes,
            self.has_group,
            self.level,
            self.reason,
            self.actor,
            self.metric,
        )
        moved.pinned_digest = self.digest()
        return moved

    def digest(self) -> int:
        """A CRC-32 of the event's content (everything but its ids), stable across processes.

        Kept per seen event id, so a redelivery (same id, same content) is told apart from an
        id reused for a different event (same id, other content), which is rejected.
        """
        if self.pinned_digest:
            return self.pinned_digest
        content = (
            f"{self.type}|{self.at}|{self.severity}|{self.customer_id}|{self.assignee}|{self.group}"
        )
        if self.type == "ticket.updated" or self.channel or self.tags or self.attributes:
            extra = sorted(self.attributes.items()) if self.attributes is not None else None
            content += f"|{self.channel}|{self.tags}|{extra}|{self.has_group}"
        if self.level is not None:  # acknowledgements only: other digests are as before
            content += f"|level={self.level}"
        if self.reason is not None or self.actor is not None or self.metric is not None:
            content += f"|{self.reason}|{self.actor}|{self.metric}"  # issue 24's types only
        return zlib.crc32(content.encode()) or 1

    def __repr__(self) -> str:
        return f"TicketEvent({self.type!r}, {self.event_id!r}, {self.ticket_id!r}, at={self.at})"


_CLOCK_TYPES = frozenset({"ticket.sla_stopped", "ticket.sla_started", "ticket.breach_reason"})


def from_payload(payload: dict[str, Any], at: Micros) -> TicketEvent:
    """The record of a payload that passed validation against the contract.

    `at` is its `occurred_at`, already read by `events.instants.parse_rfc3339`.
    """
    kind = payload["type"]
    if kind in _CLOCK_TYPES:  # reason, actor, metric: issue 24's types only (an ack's actor
        return TicketEvent(  # is not kept, so its digest stays as it was)
            kind,
            payload["event_id"],
            payload["ticket_id"],
            at,
            has_group=False,
            reason=payload.get("reason"),
            actor=_shared(payload.get("actor")),
            metric=payload.get("metric"),
        )
    return TicketEvent(
        kind,
        payload["event_id"],
        payload["ticket_id"],
        at,
        payload.get("severity"),
        _shared(payload.get("customer_id")),
        _shared(payload.get("assignee")),
        _shared(payload.get("group")),
        _shared(payload.get("channel")),
        payload.get("tags"),
        payload.get("attributes"),
        "group" in payload,
        payload.get("level"),
    )


def _shared(value: str | None) -> str | None:
    """One string object for each customer, group, assignee and channel, whichever event
    named it: ticket states and their histories keep these, and a few thousand customers and
    agents are named over and over (an interned string is freed once nothing refers to it)."""
    return None if value is None else sys.intern(value)
