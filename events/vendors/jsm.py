"""Jira Service Management webhooks (Jira Cloud webhook payloads) -> contract.

Source: Atlassian's Jira Cloud "Webhooks" docs: `webhookEvent` (`jira:issue_created`,
`jira:issue_updated` with a `changelog` of `{field, fromString, toString}` items,
`comment_created`), `timestamp` in epoch milliseconds, `issue.key`, `issue.fields`
(priority, status with its statusCategory, assignee, labels, components); JSM comments carry
`jsdPublic` (visible to the customer) and customers' accounts have `accountType` "customer".
Webhooks registered with a secret are signed: `X-Hub-Signature: sha256=<hex HMAC-SHA256>`.
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

SOURCE = "jsm"
SIGNATURE_HEADER = "X-Hub-Signature"
ORGANIZATIONS_FIELD = "customfield_10002"
"""JSM's "Organizations" field on Jira Cloud (configurable: ESCALATOR_JSM_ORGANIZATIONS_FIELD)."""

WAITING = frozenset({"waiting for customer", "waiting for reporter", "pending"})
DONE = frozenset({"resolved", "closed", "done", "canceled", "cancelled", "declined", "completed"})


def _category(status_name: object, category_key: object = None) -> Category:
    name = str(status_name or "").strip().lower()
    if name in WAITING:
        return "paused"
    if category_key == "done" or name in DONE:
        return "resolved"
    return "open"


def _routing(fields: dict[str, Any], organizations_field: str) -> dict[str, Any]:
    components = fields.get("components")
    group = (
        ident(components[0].get("id")) if components and isinstance(components[0], dict) else None
    )
    orgs = fields.get(organizations_field)
    customer = ident(orgs[0].get("id")) if orgs and isinstance(orgs[0], dict) else None
    return {
        "customer_id": customer,
        "group": group,
        "assignee": ident(dig(fields, "assignee", "accountId")),
    }


def map_payload(payload: Any, organizations_field: str = ORGANIZATIONS_FIELD) -> Mapped:
    """Contract events for one Jira webhook; Unmappable names what is missing."""
    if not isinstance(payload, dict):
        raise Unmappable("expected a JSON object")
    kind = payload.get("webhookEvent")
    issue = payload.get("issue")
    if not isinstance(issue, dict):
        raise Unmappable("field 'issue': missing")
    key = ident(issue.get("key"))
    issue_id = ident(issue.get("id"))
    if key is None or issue_id is None:
        raise Unmappable("field 'issue.key' or 'issue.id': missing")
    fields = obj_of(issue.get("fields"))
    labels = list_of(fields.get("labels"))
    at = rfc3339(payload.get("timestamp"), "timestamp")
    base_id = f"jsm:{issue_id}:{payload.get('timestamp')}:{kind}"
    out: list[dict[str, Any]] = []

    def add(contract_type: str, **extra: Any) -> None:
        suffix = f":{len(out)}" if out else ""
        out.append(contract_event(contract_type, base_id + suffix, key, at, SOURCE, **extra))

    routing = _routing(fields, organizations_field)
    if kind == "jira:issue_created":
        add(
            "ticket.opened",
            severity=severity_of(dig(fields, "priority", "name"), labels),
            **routing,
        )
        current = _category(
            dig(fields, "status", "name"), dig(fields, "status", "statusCategory", "key")
        )
        for follow in transition("open", current):
            add(follow)
    elif kind == "jira:issue_updated":
        items = dig(payload, "changelog", "items")
        if not isinstance(items, list):
            return Mapped(ignored="jira:issue_updated without a changelog")
        changed = {
            str(item.get("field", "")).lower(): item for item in items if isinstance(item, dict)
        }
        status = changed.get("status")
        if status is not None:
            previous = _category(status.get("fromString"))
            current = _category(
                status.get("toString"), dig(fields, "status", "statusCategory", "key")
            )
            for follow in transition(previous, current):
                add(follow)
        if "priority" in changed or "labels" in changed:
            add(
                "ticket.severity_changed",
                severity=severity_of(dig(fields, "priority", "name"), labels),
            )
        if "assignee" in changed or "component" in changed or "components" in changed:
            add("ticket.assigned", group=routing["group"], assignee=routing["assignee"])
    elif kind == "comment_created":
        comment = payload.get("comment")
        if not isinstance(comment, dict):
            raise Unmappable("field 'comment': missing")
        comment_id = ident(comment.get("id"))
        public = comment.get("jsdPublic") is True
        author = dig(comment, "author", "accountType")
        if not public or author is None:
            return Mapped(ignored="not a public comment by a known author")
        at = rfc3339(comment.get("created", payload.get("timestamp")), "comment.created")
        base_id = f"jsm:comment:{comment_id or payload.get('timestamp')}"
        add("ticket.customer_replied" if author == "customer" else "ticket.responded")
    elif kind == "jira:issue_deleted":
        add("ticket.closed")
    else:
        raise Unmappable(f"field 'webhookEvent': {str(kind)[:64]!r} has no mapping")
    if not out:
        return Mapped(ignored=f"{kind}: no change the SLA clocks depend on")
    return Mapped(out)
