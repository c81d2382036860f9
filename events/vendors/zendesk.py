"""Zendesk webhooks (event subscriptions, `zendesk_event_version` 2022-11-06) -> contract.

Source: Zendesk developer docs, "Webhook event types: Ticket events" (payload: `type`
`zen:event-type:ticket.*`, `id`, `time`, `detail` = the ticket's current fields, `event` =
what changed) and "Verifying webhook authenticity" (signature below).
"""

from __future__ import annotations

from typing import Any

from events.vendors.common import (
    Category,
    Mapped,
    Unmappable,
    contract_event,
    dig,
    ident,
    list_of,
    obj_of,
    rfc3339,
    severity_of,
    transition,
)

SOURCE = "zendesk"
SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
"""base64(HMAC-SHA256(secret, timestamp + body)), per Zendesk's docs."""

_PREFIX = "zen:event-type:ticket."
STATUS: dict[str, Category] = {
    "new": "open",
    "open": "open",
    "hold": "open",  # on hold waits for a third party, not the customer: clocks run
    "pending": "paused",
    "solved": "resolved",
    "closed": "closed",
}
IGNORED = frozenset(
    {
        "attachment_linked_to_comment",
        "attachment_redacted_from_comment",
        "brand_changed",
        "comment_made_private",
        "comment_redacted",
        "custom_field_changed",
        "custom_status_changed",
        "description_changed",
        "external_id_changed",
        "email_ccs_changed",
        "followers_changed",
        "form_changed",
        "organization_changed",
        "problem_link_changed",
        "requester_changed",
        "subject_changed",
        "submitter_changed",
        "task_due_at_changed",
        "ticket_type_changed",
        "undeleted",
        "merged",
    }
)
"""Event types with no SLA meaning: answered, not produced, not dead-lettered."""


def ticket_id_of(number: str) -> str:
    return f"zendesk-{number}"


def _category(status: object) -> Category:
    category = STATUS.get(str(status).lower()) if status is not None else None
    if category is None:
        raise Unmappable(f"status {str(status)[:40]!r} has no mapping")
    return category


def map_payload(payload: Any) -> Mapped:
    """Contract events for one Zendesk ticket event; Unmappable names what is missing."""
    if not isinstance(payload, dict):
        raise Unmappable("expected a JSON object")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind.startswith(_PREFIX):
        raise Unmappable(f"field 'type': {str(kind)[:64]!r} is not a Zendesk ticket event")
    name = kind[len(_PREFIX) :]
    detail = payload.get("detail")
    if not isinstance(detail, dict):
        raise Unmappable("field 'detail': missing")
    number = ident(detail.get("id"))
    event_uid = ident(payload.get("id"))
    if number is None:
        raise Unmappable("field 'detail.id': missing")
    if event_uid is None:
        raise Unmappable("field 'id': missing")
    if name in IGNORED:
        return Mapped(ignored=f"{kind} has no SLA meaning")
    at = rfc3339(payload.get("time"), "time")
    ticket = ticket_id_of(number)
    event = obj_of(payload.get("event"))
    tags = list_of(detail.get("tags"))
    out: list[dict[str, Any]] = []

    def add(contract_type: str, **fields: Any) -> None:
        suffix = f":{len(out)}" if out else ""
        out.append(
            contract_event(
                contract_type, f"zendesk:{event_uid}{suffix}", ticket, at, SOURCE, **fields
            )
        )

    routing = {
        "group": ident(detail.get("group_id")),
        "assignee": ident(detail.get("assignee_id")),
    }
    if name == "created":
        add(
            "ticket.opened",
            severity=severity_of(detail.get("priority"), tags),
            customer_id=ident(detail.get("organization_id")),
            **routing,
        )
        category = _category(detail.get("status"))
        for follow in transition("open", category):
            add(follow)
    elif name in ("priority_changed", "tags_changed"):
        add("ticket.severity_changed", severity=severity_of(detail.get("priority"), tags))
    elif name == "status_changed":
        previous = event.get("previous")
        current = event.get("current", detail.get("status"))
        for follow in transition(
            _category(previous) if previous is not None else None, _category(current)
        ):
            add(follow)
    elif name == "comment_added":
        comment = event.get("comment")
        if not isinstance(comment, dict):
            raise Unmappable("field 'event.comment': missing")
        staff = dig(comment, "author", "is_staff")
        if comment.get("is_public") is not True or not isinstance(staff, bool):
            return Mapped(ignored="not a public comment by a known author")
        add("ticket.responded" if staff else "ticket.customer_replied")
    elif name in ("agent_assignment_changed", "group_assignment_changed"):
        add("ticket.assigned", **routing)
    elif name in ("soft_deleted", "permanently_deleted", "marked_as_spam"):
        add("ticket.closed")
    else:
        raise Unmappable(f"field 'type': {kind[:64]!r} has no mapping")
    if not out:
        return Mapped(ignored=f"{kind}: no change the SLA clocks depend on")
    return Mapped(out)
