"""Zammad trigger webhooks -> contract.

Source: Zammad admin documentation, "Webhook" and "Webhook payload": a POST per trigger
with the ticket as it is now (`ticket`: id, number, state, priority {name}, group_id,
owner_id, organization_id, created_at, updated_at, ...) and the article that caused it, if
any (`article`: id, sender "Agent"/"Customer"/"System", internal, created_at).
Signed when a token is set: `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>`.

A snapshot carries no previous state, so status transitions are found against the last
state seen per ticket (`StatusMemory`). The first webhook seen for a ticket also states its
opening (`ticket.opened`, id `zammad:<id>:opened`, at `created_at`); the severity and the
assignment are restated on every webhook (a value equal to the current one changes nothing).
After a restart the opening of a known ticket is stated again: the core drops it as a
duplicate, or, if the ticket has changed since, rejects it as an id reused with other
content (dead letter, with that reason); the restated severity and assignment still apply.
"""

from __future__ import annotations

from typing import Any

from events.vendors.common import (
    Category,
    Mapped,
    StatusMemory,
    Unmappable,
    contract_event,
    dig,
    ident,
    list_of,
    rfc3339,
    severity_of,
    transition,
)

SOURCE = "zammad"
_ARTICLE = {"Agent": "ticket.responded", "Customer": "ticket.customer_replied"}
"""A public article by its `sender`: an agent's answers, a customer's starts next response."""
SIGNATURE_HEADER = "X-Hub-Signature"
STATE: dict[str, Category] = {
    "new": "open",
    "open": "open",
    "pending reminder": "paused",
    "pending close": "paused",
    "closed": "resolved",
    "merged": "closed",
    "removed": "closed",
}


def ticket_id_of(number: str) -> str:
    return f"zammad-{number}"


def _opened(
    internal_id: str,
    tid: str,
    created: str,
    severity: int,
    ticket: dict[str, Any],
    routing: dict[str, str | None],
) -> dict[str, Any]:
    return contract_event(
        "ticket.opened",
        f"zammad:{internal_id}:opened",
        tid,
        created,
        SOURCE,
        severity=severity,
        customer_id=ident(ticket.get("organization_id")),
        **routing,
    )


def map_payload(payload: Any, memory: StatusMemory) -> Mapped:
    """Contract events for one Zammad webhook; Unmappable names what is missing."""
    if not isinstance(payload, dict):
        raise Unmappable("expected a JSON object")
    ticket = payload.get("ticket")
    if not isinstance(ticket, dict):
        raise Unmappable("field 'ticket': missing")
    internal_id = ident(ticket.get("id"))
    number = ident(ticket.get("number"))
    if internal_id is None or number is None:
        raise Unmappable("field 'ticket.id' or 'ticket.number': missing")
    state = ticket.get("state")
    if isinstance(state, dict):
        state = state.get("name")
    category = STATE.get(str(state).lower()) if state is not None else None
    if category is None:
        raise Unmappable(f"field 'ticket.state': {str(state)[:40]!r} has no mapping")
    priority = ticket.get("priority")
    if isinstance(priority, dict):
        priority = priority.get("name")
    tags = list_of(ticket.get("tags"))
    severity = severity_of(priority, tags)
    created = rfc3339(ticket.get("created_at"), "ticket.created_at")
    updated_text = ticket.get("updated_at")
    updated = rfc3339(updated_text, "ticket.updated_at")
    tid = ticket_id_of(number)
    stamp = f"zammad:{internal_id}:{updated_text}"
    routing = {
        "group": ident(ticket.get("group_id")),
        "assignee": ident(ticket.get("owner_id") if ticket.get("owner_id") != 1 else None),
    }
    previous = memory.last(tid)
    out = (
        []
        if previous is not None
        else [_opened(internal_id, tid, created, severity, ticket, routing)]
    )
    out += [
        contract_event(
            "ticket.severity_changed", f"{stamp}:severity", tid, updated, SOURCE, severity=severity
        ),
        contract_event("ticket.assigned", f"{stamp}:assigned", tid, updated, SOURCE, **routing),
    ]
    article = payload.get("article")
    sender = article.get("sender") if isinstance(article, dict) else None
    if isinstance(article, dict) and sender in _ARTICLE and article.get("internal") is False:
        out.append(
            contract_event(
                _ARTICLE[str(sender)],
                f"zammad:article:{ident(article.get('id'))}",
                tid,
                rfc3339(article.get("created_at", updated_text), "article.created_at"),
                SOURCE,
            )
        )
    if previous is None and dig(ticket, "article_count") in (0, 1) and category == "open":
        previous = "open"
    for kind in transition(previous, category):
        out.append(contract_event(kind, f"{stamp}:{kind}", tid, updated, SOURCE))
    return Mapped(out, done=lambda: memory.remember(tid, category))
