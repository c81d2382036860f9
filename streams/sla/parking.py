"""Parked events: an event that cannot apply yet, only because of its ticket's status.

A resume before its pause, a reopen before its resolve, any event before its ticket's
`ticket.opened`: an earlier event still to come may make it valid, so the fold keeps it in the
ticket's state (`TicketState.parked`, with its original JSON text) until it applies or the
watermark passes its time (`expire`: then it is rejected, to the dead letters).
"""

from __future__ import annotations

import json
from typing import Any, Final

from events.instants import Micros, format_instant
from events.records import TicketEvent
from streams.sla.outcome import Outcome
from streams.sla.state import Parked, TicketState


def _article(word: str) -> str:
    """`an open`, `a paused`: the indefinite article before a status."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


_NEEDS: Final[dict[str, tuple[str, str]]] = {
    "ticket.paused": ("open", "pause"),
    "ticket.resumed": ("paused", "resume"),
    "ticket.reopened": ("resolved", "reopen"),
}
"""The lifecycle events that need a status: type -> (status needed, verb)."""


def blocked(status: str, kind: str) -> str | None:
    """Why an event of type `kind` cannot apply to a ticket in `status` (None: it can). Only
    about the status, so an earlier event still to come (a pause before a resume) may lift it;
    a closed ticket is final (`_apply` rejects everything on it)."""
    needs = _NEEDS.get(kind)
    if needs is None or status == needs[0] or status == "closed":
        return None
    return f"cannot {needs[1]} {_article(status)} ticket"


def as_json(event: TicketEvent) -> str:
    """An event as contract JSON, for a parked event given without its original text."""
    obj: dict[str, Any] = {
        "event_id": event.event_id,
        "ticket_id": event.ticket_id,
        "type": event.type,
        "occurred_at": format_instant(event.at),
    }
    if event.severity is not None:
        obj["severity"] = event.severity
    if event.has_group:
        obj["group"] = event.group
    if event.level is not None:
        obj["level"] = event.level
    optional: list[tuple[str, object]] = [
        ("customer_id", event.customer_id),
        ("assignee", event.assignee),
        ("channel", event.channel),
        ("tags", event.tags),
        ("attributes", event.attributes),
        ("reason", event.reason),
        ("actor", event.actor),
        ("metric", event.metric),
    ]
    for name, value in optional:
        if value is not None:
            obj[name] = value
    return json.dumps(obj)


def expire(state: TicketState, now: Micros | None, outcome: Outcome) -> None:
    """Reject the parked events whose time the watermark passed (all of them if `now` is None:
    the ticket is gone)."""
    parked = state.parked
    if parked is None:
        return
    keep: list[Parked] = []
    for entry in parked:
        if now is not None and entry[0] > now:
            keep.append(entry)
        else:
            outcome.expired.append(
                (
                    entry[2],
                    f"{entry[3]} (held until the watermark passed its time, "
                    f"{format_instant(entry[0])}: no earlier event of the ticket made it valid)",
                    entry[4],
                )
            )
    state.parked = keep or None
