"""Jira Service Management webhooks (Jira Cloud and Jira Data Center) -> contract.

Source: Atlassian's "Webhooks" docs (Jira Cloud platform; Jira Data Center): `webhookEvent`
(`jira:issue_created`, `jira:issue_updated` with a `changelog` of `{field, from, fromString,
to, toString}` items and an `issue_event_type_name`, `comment_created`), `timestamp` in epoch
milliseconds, `issue.key`, `issue.fields` (priority, status with its statusCategory, assignee,
reporter, labels, components); JSM Cloud comments carry `jsdPublic` (visible to the customer)
and customers' accounts have `accountType` "customer". Webhooks registered with a secret are
signed: `X-Hub-Signature: sha256=<hex HMAC-SHA256>`; each delivery is named by
`X-Atlassian-Webhook-Identifier`, the same on every retry of it (see `Deliveries`).

Jira Data Center sends the same events in an older shape (see the Mattermost Jira plugin's
fixtures, `server/testdata/webhook-server-*.json`): users have `name` and `key` but no
`accountId` or `accountType`, comments no `jsdPublic`, and `comment_created` carries no
`issue` at all; the comment also arrives as `jira:issue_updated` with
`issue_event_type_name` `issue_commented`, which carries the issue, and is mapped from there.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from events.vendors.common import (
    PRIORITY_UNKNOWN,
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
    severity_or_default,
    tags_of,
    transition,
)

SOURCE = "jsm"
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"
ORGANIZATIONS_FIELD = "customfield_10002"
"""JSM's "Organizations" field on Jira Cloud (configurable: ESCALATOR_JSM_ORGANIZATIONS_FIELD)."""

WAITING = frozenset({"waiting for customer", "waiting for reporter", "pending"})
DONE = frozenset({"resolved", "closed", "done", "canceled", "cancelled", "declined", "completed"})

COMMENT_CHANGES = frozenset({"issue_comment_edited", "issue_comment_deleted"})
"""`issue_event_type_name`s of a comment edited or deleted (Data Center)."""
COMMENT_CHANGE = "a reply counts once, when it is made; editing or deleting it changes no clock"
"""Why comment edits and deletions are ignored: JSM's own SLA conditions ("Comment: For
Customers", "Comment: By Customer") fire when a comment is added."""
IGNORED_EVENTS = {
    "comment_updated": f"comment_updated: {COMMENT_CHANGE}",
    "comment_deleted": f"comment_deleted: {COMMENT_CHANGE}",
}
NOT_A_REPLY = "not a public comment, or its author is not known as customer or agent"
DC_COMMENT = (
    "comment_created without an issue (Jira Data Center): the reply is taken from the "
    "jira:issue_updated (issue_commented) webhook, which carries the issue"
)
CLOUD_COMMENT = (
    "issue_commented on Jira Cloud: the reply is taken from comment_created, which says "
    "whether the comment is public (jsdPublic)"
)


def _category(status_name: object, category_key: object = None) -> Category:
    name = str(status_name or "").strip().lower()
    if name in WAITING:
        return "paused"
    if category_key == "done" or name in DONE:
        return "resolved"
    return "open"


def _user(user: object) -> str | None:
    """A Jira user's id: `accountId` (Cloud), else `key`, else `name` (Data Center)."""
    return ident(dig(user, "accountId")) or ident(dig(user, "key")) or ident(dig(user, "name"))


def _routing(fields: dict[str, Any], organizations_field: str) -> dict[str, Any]:
    components = fields.get("components")
    group = (
        ident(components[0].get("id")) if components and isinstance(components[0], dict) else None
    )
    orgs = fields.get(organizations_field)
    customer = ident(orgs[0].get("id")) if orgs and isinstance(orgs[0], dict) else None
    return {"customer_id": customer, "group": group, "assignee": _user(fields.get("assignee"))}


def _is_set(item: dict[str, Any], side: str) -> bool:
    """Whether a changelog item's `from` or `to` side holds a value (id or display string)."""
    return bool(item.get(side) or item.get(side + "String"))


def _comment_kind(comment: dict[str, Any], fields: dict[str, Any]) -> str | None:
    """`ticket.responded`, `ticket.customer_replied`, or None (internal, or cannot tell).

    Cloud: public when `jsdPublic` is true; a customer's when the author's `accountType` is
    "customer" (without it, by the reporter as below). Data Center (no `jsdPublic`):
    internal when the comment has a `visibility` restriction; a customer's when its author is
    the issue's reporter; otherwise an agent's public reply (JSM Data Center does not mark
    its internal comments in webhooks).
    """
    author = obj_of(comment.get("author"))
    if "jsdPublic" in comment:
        if comment.get("jsdPublic") is not True:
            return None
        account_type = author.get("accountType")
        if account_type is None:
            return _by_reporter(author, fields)
        return "ticket.customer_replied" if account_type == "customer" else "ticket.responded"
    if comment.get("visibility"):
        return None
    return _by_reporter(author, fields)


def _cloud_without_visibility(comment: dict[str, Any]) -> bool:
    """A Jira Cloud comment (its author has an `accountId`) that does not say whether it is
    public: Cloud's `jira:issue_updated` (issue_commented) carries no `jsdPublic`."""
    return "jsdPublic" not in comment and dig(comment, "author", "accountId") is not None


def _by_reporter(author: dict[str, Any], fields: dict[str, Any]) -> str | None:
    """The reporter's comment is the customer's, another's an agent's; None if the payload
    names no author or no reporter (Cloud's comment_created carries no reporter)."""
    who, reporter = _user(author), _user(fields.get("reporter"))
    if who is None or reporter is None:
        return None
    return "ticket.customer_replied" if who == reporter else "ticket.responded"


def map_payload(payload: Any, organizations_field: str = ORGANIZATIONS_FIELD) -> Mapped:
    """Contract events for one Jira webhook; Unmappable names what is missing."""
    if not isinstance(payload, dict):
        raise Unmappable("expected a JSON object")
    kind = payload.get("webhookEvent")
    if kind in IGNORED_EVENTS:
        return Mapped(ignored=IGNORED_EVENTS[str(kind)])
    issue = payload.get("issue")
    if kind == "comment_created" and issue is None and isinstance(payload.get("comment"), dict):
        return Mapped(ignored=DC_COMMENT)
    if not isinstance(issue, dict):
        raise Unmappable("field 'issue': missing")
    key = ident(issue.get("key"))
    issue_id = ident(issue.get("id"))
    if key is None or issue_id is None:
        raise Unmappable("field 'issue.key' or 'issue.id': missing")
    fields = obj_of(issue.get("fields"))
    warnings: list[str] = []
    labels = tags_of(fields.get("labels"), warnings)
    at = rfc3339(payload.get("timestamp"), "timestamp")
    base_id = f"jsm:{issue_id}:{payload.get('timestamp')}:{kind}"
    out: list[dict[str, Any]] = []

    def add(contract_type: str, **extra: Any) -> None:
        suffix = f":{len(out)}" if out else ""
        out.append(contract_event(contract_type, base_id + suffix, key, at, SOURCE, **extra))

    def reply(comment: object) -> str | None:
        """Add the comment's reply event (its own id and time), or say why there is none."""
        nonlocal at
        if not isinstance(comment, dict):
            raise Unmappable("field 'comment': missing")
        contract_type = _comment_kind(comment, fields)
        if contract_type is None:
            return NOT_A_REPLY
        at = rfc3339(comment.get("created", payload.get("timestamp")), "comment.created")
        comment_id = ident(comment.get("id")) or str(payload.get("timestamp"))
        # One id per comment, whichever webhook carries it, so a redelivery repeats it.
        out.append(contract_event(contract_type, f"jsm:comment:{comment_id}", key, at, SOURCE))
        return None

    routing = _routing(fields, organizations_field)
    status_name = dig(fields, "status", "name")
    status_key = dig(fields, "status", "statusCategory", "key")
    if kind == "jira:issue_created":
        severity, warning = severity_or_default(dig(fields, "priority", "name"), labels)
        warnings += [warning] if warning else []
        add("ticket.opened", severity=severity, tags=labels, **routing)
        for follow in transition("open", _category(status_name, status_key)):
            add(follow)
    elif kind == "jira:issue_updated":
        event_type = payload.get("issue_event_type_name")
        items = dig(payload, "changelog", "items")
        comment = payload.get("comment")
        if not isinstance(items, list) and comment is None:
            return Mapped(ignored="jira:issue_updated without a changelog")
        changed = {
            str(item.get("field", "")).lower(): item
            for item in list_of(items)
            if isinstance(item, dict)
        }
        status = changed.get("status")
        if status is not None:
            previous = _category(status.get("fromString"))
            for follow in transition(previous, _category(status.get("toString"), status_key)):
                add(follow)
        resolution = changed.get("resolution")
        if resolution is not None:
            # JSM's SLA conditions "Resolution: Set" and "Resolution: Cleared" (Atlassian,
            # "Understand SLA condition options in Jira Service Management Cloud"): the
            # default "Time to resolution" stops when a resolution is set.
            types = {event["type"] for event in out}
            was, now = _is_set(resolution, "from"), _is_set(resolution, "to")
            if now and not was and "ticket.resolved" not in types:
                add("ticket.resolved")
            elif was and not now and "ticket.reopened" not in types:
                current = _category(status_name, status_key)
                for follow in transition("resolved", "open" if current == "resolved" else current):
                    add(follow)
        if "priority" in changed or "labels" in changed:
            try:
                severity = severity_of(dig(fields, "priority", "name"), labels)
            except Unmappable:  # keep the severity: an unknown name is no reason to change it
                warnings.append(PRIORITY_UNKNOWN)
            else:
                add("ticket.severity_changed", severity=severity)
        if "labels" in changed:
            add("ticket.updated", tags=labels)
        assigned = event_type == "issue_assigned"  # also with an empty changelog
        if assigned or "assignee" in changed or "component" in changed or "components" in changed:
            add("ticket.assigned", group=routing["group"], assignee=routing["assignee"])
        if event_type in COMMENT_CHANGES and not out:
            return Mapped(ignored=f"{event_type}: {COMMENT_CHANGE}")
        if comment is not None and event_type not in COMMENT_CHANGES:
            cloud = isinstance(comment, dict) and _cloud_without_visibility(comment)
            why = CLOUD_COMMENT if cloud else reply(comment)
            if why is not None and not out:
                return Mapped(ignored=why, warnings=warnings)
    elif kind == "comment_created":
        why = reply(payload.get("comment"))
        if why is not None:
            return Mapped(ignored=why)
    elif kind == "jira:issue_deleted":
        add("ticket.closed")
    else:
        raise Unmappable(f"field 'webhookEvent': {str(kind)[:64]!r} has no mapping")
    if not out:
        return Mapped(ignored=f"{kind}: no change the SLA clocks depend on", warnings=warnings)
    return Mapped(out, warnings=warnings)


class Deliveries:
    """The `X-Atlassian-Webhook-Identifier`s of deliveries already taken: a bounded window.

    Atlassian sends one identifier per delivery and repeats it on each retry (Jira Cloud
    webhooks, "Retry policy": retries for up to 30 minutes). An identifier is remembered once
    its delivery was answered 2xx (never before: a retry after a 503 must be taken), for
    `window` seconds and at most `capacity` identifiers (the oldest forgotten first), so
    memory is bounded (about 200 bytes an identifier). Time is the caller's (`now`, seconds
    on a monotonic clock): this module reads no clock.

    In memory only: after a restart of ingest a retry is taken again, and that is safe, since
    the event ids are made from the signed body (issue id, `timestamp`, event kind, comment
    id), so the engine drops the repeated events as duplicates of what it already applied.
    """

    def __init__(self, window: float = 3600.0, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, identifier: str, now: float) -> bool:
        """Whether `identifier` was taken within the window before `now`."""
        self._expire(now)
        return identifier in self._seen

    def taken(self, identifier: str, now: float) -> None:
        """Remember `identifier` (call once its delivery was answered 2xx)."""
        self._seen.pop(identifier, None)
        self._seen[identifier] = now
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if len(self._seen) <= self.capacity and now - at < self.window:
                return
            del self._seen[oldest]

    def __len__(self) -> int:
        return len(self._seen)
