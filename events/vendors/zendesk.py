"""Zendesk Support webhooks (event subscriptions, `zendesk_event_version` 2022-11-06) -> contract.

Source: Zendesk developer docs, "Webhook event types: Ticket events" (payload: `type`
`zen:event-type:ticket.*`, `id`, `time`, `detail` = the ticket's fields including `tags` and
`via.channel`, `event` = what changed), "Messaging events" (`messaging_ticket.message_added`)
and "Verifying webhook authenticity" (signature below).

Trigger and automation webhooks (a JSON body an administrator writes with placeholders) are
not supported, and dead-lettered saying so: such a body carries no event id (a redelivery
cannot be told from a new change), no previous status (a transition needs per-ticket memory
ordered by Zendesk's time, the problem issue #20 item 3 found for Zammad's snapshots) and only
what one administrator chose to write; an event subscription carries all of it, signed.
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
    obj_of,
    rfc3339,
    severity_or_default,
    tags_of,
    transition,
)

SOURCE = "zendesk"
SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
"""base64(HMAC-SHA256(secret, timestamp + body)), per Zendesk's docs."""

_PREFIX = "zen:event-type:ticket."
_MESSAGING = "zen:event-type:messaging_ticket."
MESSAGING_ACTORS = {"agent": "ticket.responded", "end_user": "ticket.customer_replied"}
"""`messaging_ticket.message_added` by `event.actor.type` (Zendesk developer docs, "Webhook
event types: Messaging events"); "trigger" and "system" (bots) are ignored (BOT_MESSAGE)."""
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
        "type_changed",
        "next_sla_breach_changed",
        "sla_policy_changed",
        "ola_policy_changed",
        "schedule_changed",
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


OPENING_COMMENT = "the ticket's opening comment (its description) is not a reply"
"""Zendesk's first reply time ends at the first public agent comment *after* creation; when an
agent creates the ticket, at the agent's next public comment, the description does not count
(Zendesk help: "Calculating first reply time", support.zendesk.com/hc/en-us/articles/
4408821871642; "About native Support time duration metrics", 4408834848154, exceptions)."""
BOT_MESSAGE = "messaging message by a trigger or bot: not a reply"
"""Zendesk: "First reply time is calculated exclusively based on agent replies ... automated
or bot-related actions in conversations aren't considered" (article 4408821871642)."""
TRIGGER_UNSUPPORTED = (
    "not a Zendesk event-subscription payload (field 'type' is not zen:event-type:*): trigger "
    "and automation webhooks with a custom JSON body are not supported; subscribe the webhook "
    "to ticket events instead (docs/ingest.md, Zendesk)"
)


def _opening(detail: dict[str, Any]) -> bool:
    """Whether this event came with the ticket's creation: the ticket has not been updated
    since it was created (`detail.updated_at` equals `detail.created_at`, as in Zendesk's
    `ticket.created` example). The opening comment is the description, never a reply."""
    created = detail.get("created_at")
    return isinstance(created, str) and bool(created) and detail.get("updated_at") == created


def map_payload(payload: Any) -> Mapped:
    """Contract events for one Zendesk ticket or messaging event; Unmappable names what is
    missing (a trigger webhook's custom body: TRIGGER_UNSUPPORTED)."""
    if not isinstance(payload, dict):
        raise Unmappable("expected a JSON object")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind.startswith("zen:event-type:"):
        raise Unmappable(TRIGGER_UNSUPPORTED)
    if not kind.startswith((_PREFIX, _MESSAGING)):
        raise Unmappable(f"field 'type': {kind[:64]!r} is not a Zendesk ticket event")
    detail = payload.get("detail")
    if not isinstance(detail, dict):
        raise Unmappable("field 'detail': missing")
    number = ident(detail.get("id"))
    event_uid = ident(payload.get("id"))
    if number is None:
        raise Unmappable("field 'detail.id': missing")
    if event_uid is None:
        raise Unmappable("field 'id': missing")
    name = kind[len(_PREFIX) :]
    if name in IGNORED:
        return Mapped(ignored=f"{kind} has no SLA meaning")
    at = rfc3339(payload.get("time"), "time")
    ticket = ticket_id_of(number)
    event = obj_of(payload.get("event"))
    warnings: list[str] = []
    out: list[dict[str, Any]] = []

    def add(contract_type: str, **fields: Any) -> None:
        suffix = f":{len(out)}" if out else ""
        out.append(
            contract_event(
                contract_type, f"zendesk:{event_uid}{suffix}", ticket, at, SOURCE, **fields
            )
        )

    def severity(tags: list[str]) -> int:
        value, warning = severity_or_default(detail.get("priority"), tags)
        if warning is not None:
            warnings.append(warning)
        return value

    routing = {
        "group": ident(detail.get("group_id")),
        "assignee": ident(detail.get("assignee_id")),
    }
    if kind == _MESSAGING + "message_added":
        actor = dig(event, "actor", "type")
        if actor not in MESSAGING_ACTORS:
            return Mapped(ignored=BOT_MESSAGE)
        add(MESSAGING_ACTORS[str(actor)])
    elif name == "created":
        tags = tags_of(detail.get("tags"), warnings)
        channel = dig(detail, "via", "channel")
        add(
            "ticket.opened",
            severity=severity(tags),
            customer_id=ident(detail.get("organization_id")),
            channel=channel if isinstance(channel, str) and channel else None,
            tags=tags,
            **routing,
        )
        category = _category(detail.get("status"))
        for follow in transition("open", category):
            add(follow)
    elif name == "priority_changed":
        add("ticket.severity_changed", severity=severity(tags_of(detail.get("tags"), warnings)))
    elif name == "tags_changed":
        tags = tags_of(detail.get("tags"), warnings)
        add("ticket.updated", tags=tags)
        add("ticket.severity_changed", severity=severity(tags))  # a sevN tag overrides
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
        if _opening(detail):
            return Mapped(ignored=OPENING_COMMENT)
        add("ticket.responded" if staff else "ticket.customer_replied")
    elif name in ("agent_assignment_changed", "group_assignment_changed"):
        add("ticket.assigned", **routing)
    elif name in ("soft_deleted", "permanently_deleted", "marked_as_spam"):
        add("ticket.closed")
    else:
        raise Unmappable(f"field 'type': {kind[:64]!r} has no mapping")
    if not out:
        return Mapped(ignored=f"{kind}: no change the SLA clocks depend on", warnings=warnings)
    return Mapped(out, warnings=warnings)
