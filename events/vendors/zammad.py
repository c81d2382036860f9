"""Zammad trigger webhooks -> contract.

Source: Zammad admin documentation, "Webhook" and "Webhook payload"
(zammad-admin-documentation, manage/webhook/payload.rst): a POST per trigger with the ticket
as it is now (`ticket`: id, number, state, priority {name}, group_id, owner_id,
organization_id, article_count, article_ids, created_at, updated_at, ...) and the article
that caused it, if any (`article`: id, sender "Agent"/"Customer"/"System", internal,
created_at). Headers: `X-Zammad-Delivery` (a unique random id per delivery) and, when a
token is set, `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>`.

A snapshot carries no previous state, so the status transitions are found against the
states seen before, **ordered by the ticket's `updated_at`, not by arrival** (issue #20
item 3): each ticket's `Known` keeps the last KEEP snapshots' (updated_at, state). A
snapshot is placed at its own time among them and stated as the transition from the state
before it, at its time, and, if a later snapshot is known (it came late), the transition
from it to that later state, at that later time. So a late or replayed snapshot never moves
the ticket's state "now": its events are the ones already produced (same ids: duplicates)
or the ones that place it correctly in the past, which the engine folds in at their event
time. A snapshot older than every one kept, once KEEP are kept, is ignored (`Mapped.ignored`).

The memory is kept (`Memory.keep`) *before* the events are produced: if producing fails, the
vendor's retry of the same snapshot is placed at the same time and restates the same events
(same ids); kept after producing, a crash in between would lose the transition for good.
The first webhook seen for a ticket also states its opening (`ticket.opened`, id
`zammad:<id>:opened`, at `created_at`), and only the snapshot it came from restates it (its
redeliveries). Severity and assignment are restated on every webhook (a value equal to the
current one changes nothing); tags likewise when the payload has a `ticket.tags` array (the
default payload has none: the README says how).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from events.instants import format_instant, parse_rfc3339
from events.vendors.common import (
    Category,
    Mapped,
    Unmappable,
    contract_event,
    ident,
    list_of,
    rfc3339,
    severity_or_default,
    transition,
)

SOURCE = "zammad"
_ARTICLE = {"Agent": "ticket.responded", "Customer": "ticket.customer_replied"}
"""A public article by its `sender`: an agent's answers, a customer's starts next response."""
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Zammad-Delivery"
STATE: dict[str, Category] = {
    "new": "open",
    "open": "open",
    "pending reminder": "paused",
    "pending close": "paused",
    "closed": "resolved",
    "merged": "closed",
    "removed": "closed",
}
KEEP = 16
"""Snapshots kept per ticket: a snapshot later than the 16th before the newest is placed."""

Seen = tuple[int, str, Category]
"""One snapshot seen: (updated_at in microseconds since the epoch, as sent, its category)."""


@dataclass(frozen=True)
class Known:
    """What ingest knows of one Zammad ticket: the snapshots seen, oldest first (at most KEEP),
    and the `updated_at` (microseconds) of the snapshot that stated the opening."""

    opened_from: int
    seen: tuple[Seen, ...]


class Memory(Protocol):
    """Where `Known` is kept per contract ticket id (streams.ingest.zammad_store: SQLite)."""

    def known(self, ticket_id: str) -> Known | None: ...

    def keep(self, ticket_id: str, known: Known) -> None: ...


def ticket_id_of(number: str) -> str:
    return f"zammad-{number}"


Stated = list[tuple[Seen, Category | None]]
"""Transitions to state: a snapshot, with the category before it (None: the first sight)."""


def place(known: Known | None, snapshot: Seen) -> tuple[Known, Stated | None]:
    """`known` with `snapshot` placed by its time, and the transitions to state, the first
    being the snapshot's own (as placed); None for a snapshot older than all of KEEP kept
    snapshots (what came before it is forgotten: it states nothing).

    The same snapshot again (equal time) restates what it stated, with the ids of the first
    one's text; a snapshot between two known ones also restates the later one's transition,
    now from it.
    """
    at = snapshot[0]
    if known is None:
        return Known(at, (snapshot,)), [(snapshot, None)]
    seen = list(known.seen)
    if at < seen[0][0] and len(seen) >= KEEP:
        return known, None
    index = 0
    while index < len(seen) and seen[index][0] < at:
        index += 1
    if index < len(seen) and seen[index][0] == at:
        snapshot = (at, seen[index][1], snapshot[2])
        seen[index] = snapshot
    else:
        seen.insert(index, snapshot)
    before = seen[index - 1][2] if index > 0 else None
    stated: Stated = [(snapshot, before)]
    if index + 1 < len(seen):
        stated.append((seen[index + 1], snapshot[2]))
    return Known(known.opened_from, tuple(seen[-KEEP:])), stated


def _tags(ticket: dict[str, Any]) -> list[str] | None:
    """`ticket.tags` if the payload has an array of them (not Zammad's default payload)."""
    if not isinstance(ticket.get("tags"), list):
        return None
    tags: list[str] = []
    for tag in list_of(ticket.get("tags")):
        text = str(tag).strip() if isinstance(tag, str | int) else ""
        if text and len(text) <= 256 and text.isprintable() and text not in tags:
            tags.append(text)
    return tags[:64]


def _is_opening(article: dict[str, Any], ticket: dict[str, Any]) -> bool:
    """The article the ticket was opened with: the ticket's only article, or its first id.
    It opens the ticket; it is neither an agent's response nor a customer's reply."""
    ids = [i for i in list_of(ticket.get("article_ids")) if isinstance(i, int)]
    if ids:
        return article.get("id") == min(ids)
    return ticket.get("article_count") in (0, 1)


def map_payload(payload: Any, memory: Memory) -> Mapped:
    """Contract events for one Zammad webhook; Unmappable names what is missing or wrong.

    Keeps the ticket's `Known` in `memory` before returning (see the module docstring).
    An unknown priority opens at DEFAULT_SEVERITY with the warning in `Mapped.warnings`.
    """
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
    tags = _tags(ticket)
    severity, warning = severity_or_default(priority, tags or ())
    created = rfc3339(ticket.get("created_at"), "ticket.created_at")
    updated_text = ticket.get("updated_at")
    updated = rfc3339(updated_text, "ticket.updated_at")
    tid = ticket_id_of(number)
    routing = {
        "group": ident(ticket.get("group_id")),
        "assignee": ident(ticket.get("owner_id") if ticket.get("owner_id") != 1 else None),
    }
    known = memory.known(tid)
    kept, stated = place(known, (parse_rfc3339(updated), str(updated_text), category))
    if stated is None:
        return Mapped(ignored=f"a snapshot older than the {KEEP} kept for ticket {tid}")
    snapshot = stated[0][0]

    def stamp(seen: Seen) -> str:
        return f"zammad:{internal_id}:{seen[1]}"

    out: list[dict[str, Any]] = []
    if known is None or known.opened_from == snapshot[0]:
        extra: dict[str, Any] = {} if tags is None else {"tags": tags}
        out.append(
            contract_event(
                "ticket.opened",
                f"zammad:{internal_id}:opened",
                tid,
                created,
                SOURCE,
                severity=severity,
                customer_id=ident(ticket.get("organization_id")),
                **routing,
                **extra,
            )
        )
    out += [
        contract_event(
            "ticket.severity_changed",
            f"{stamp(snapshot)}:severity",
            tid,
            updated,
            SOURCE,
            severity=severity,
        ),
        contract_event(
            "ticket.assigned", f"{stamp(snapshot)}:assigned", tid, updated, SOURCE, **routing
        ),
    ]
    if tags is not None:
        out.append(
            contract_event(
                "ticket.updated", f"{stamp(snapshot)}:tags", tid, updated, SOURCE, tags=tags
            )
        )
    article = payload.get("article")
    sender = article.get("sender") if isinstance(article, dict) else None
    if (
        isinstance(article, dict)
        and sender in _ARTICLE
        and article.get("internal") is False
        and not _is_opening(article, ticket)
    ):
        out.append(
            contract_event(
                _ARTICLE[str(sender)],
                f"zammad:article:{ident(article.get('id'))}",
                tid,
                rfc3339(article.get("created_at", updated_text), "article.created_at"),
                SOURCE,
            )
        )
    for seen, before in stated:
        at = updated if seen is snapshot else format_instant(seen[0])
        for kind in transition(before, seen[2]):
            out.append(contract_event(kind, f"{stamp(seen)}:{kind}", tid, at, SOURCE))
    memory.keep(tid, kept)
    return Mapped(out, warnings=[] if warning is None else [warning])
