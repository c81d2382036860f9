"""What the vendor adapters share: severity from priority, status categories, transitions.

Pure functions, no state: a vendor whose webhooks carry a snapshot of the ticket instead of
the change is given its memory by the caller (see `events.vendors.zammad`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from base.errors import EscalatorError
from events.instants import SUPPORTED_RANGE, parse_rfc3339
from events.text import MAX_TEXT, has_control

Category = Literal["open", "paused", "resolved", "closed"]
"""What a vendor status means for the SLA clocks: open, waiting on the customer (paused),
resolved (may reopen), closed (final)."""


class Unmappable(EscalatorError, ValueError):
    """A payload that cannot be mapped to the contract; the message says why (no free text)."""


@dataclass
class Mapped:
    """An adapter's result: contract events to produce, or why the payload means nothing."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: str | None = None
    """Set when a well-formed payload has no SLA meaning (e.g. a subject change)."""
    done: Callable[[], None] | None = None
    """To call once the events are on the broker (an adapter with memory commits it then)."""
    warnings: list[str] = field(default_factory=list)
    """Mapped, but with a documented fallback (e.g. `priority unknown`): short fixed reasons,
    counted by the ingest (`escalator_ingest_warnings_total`), never free text."""


DEFAULT_SEVERITY = 3
"""The severity of a ticket whose priority is absent or unknown (`severity_or_default`):
Sev3, what the vendors' own default priority maps to (Zendesk and Zammad "normal", Jira
"Medium" and, in its classic scheme, "Major")."""

_PRIORITY_WORDS: dict[str, int] = {
    # Zendesk (Support: urgent, high, normal, low)
    "urgent": 1,
    "high": 2,
    "normal": 3,
    "low": 4,
    # Jira's shipped schemes: Highest, High, Medium, Low, Lowest; Blocker, Critical, Major,
    # Minor, Trivial (Major is the classic scheme's default, as Medium is the current one's)
    "highest": 1,
    "blocker": 1,
    "critical": 1,
    "medium": 3,
    "major": 3,
    "lowest": 4,
    "minor": 4,
    "trivial": 4,
    # Zammad: "1 low", "2 normal", "3 high" (matched by the last word); and P1-P4
    "p1": 1,
    "p2": 2,
    "p3": 3,
    "p4": 4,
}
_SEVERITY_TAG = re.compile(r"^sev(?:erity)?[-_]?([1-4])$", re.IGNORECASE)


def severity_of(priority: object, tags: Iterable[object] = ()) -> int:
    """Severity 1-4 from a vendor priority name, unless a `sevN` tag overrides it.

    Priority names are matched by their last word, case-insensitively, so Zendesk's
    `URGENT`, Jira's `Highest` and Zammad's `3 high` all work. No priority: DEFAULT_SEVERITY.
    Raises Unmappable for a priority name we do not know (see `severity_or_default`).
    """
    for tag in tags:
        match = _SEVERITY_TAG.match(str(tag))
        if match:
            return int(match.group(1))
    if priority is None or priority == "":
        return DEFAULT_SEVERITY
    words = str(priority).strip().lower().split()
    severity = _PRIORITY_WORDS.get(words[-1]) if words else None
    if severity is None:
        raise Unmappable(f"priority {str(priority)[:40]!r} has no severity mapping")
    return severity


PRIORITY_ABSENT = "priority absent"
PRIORITY_UNKNOWN = "priority unknown"
"""The warnings of `severity_or_default` (fixed texts: they label a metric)."""


def severity_or_default(priority: object, tags: Iterable[object] = ()) -> tuple[int, str | None]:
    """(severity, warning) for opening a ticket: the one rule for every vendor (issue #20).

    As `severity_of`, but a ticket is never lost for its priority: an absent or unknown
    priority (without a `sevN` tag) opens at DEFAULT_SEVERITY with the warning
    PRIORITY_ABSENT or PRIORITY_UNKNOWN, which the caller puts in `Mapped.warnings` (the
    ingest counts it and logs the priority's first 40 characters). Warning None otherwise.
    """
    tags = list(tags)
    try:
        severity = severity_of(priority, tags)
    except Unmappable:
        return DEFAULT_SEVERITY, PRIORITY_UNKNOWN
    if (priority is None or priority == "") and not any(_SEVERITY_TAG.match(str(t)) for t in tags):
        return severity, PRIORITY_ABSENT
    return severity, None


def transition(previous: Category | None, current: Category) -> list[str]:
    """Contract event types for a status change between categories (the table in docs/ingest.md).

    `previous` None (not known): assert the current category, i.e. pause a waiting ticket,
    resolve a resolved one; an open ticket needs nothing.
    """
    if previous == current or previous == "closed":
        return []
    if current == "closed":
        return ["ticket.closed"]
    if current == "resolved":
        return ["ticket.resolved"]
    if previous == "resolved":
        return ["ticket.reopened"] + (["ticket.paused"] if current == "paused" else [])
    if current == "paused":
        return ["ticket.paused"]
    if previous == "paused":  # -> open
        return ["ticket.resumed"]
    return []


def rfc3339(value: object, field_name: str) -> str:
    """A vendor timestamp as RFC 3339 with at most microseconds (Zendesk sends nanoseconds).

    Accepts RFC 3339 / ISO 8601 text (Z or offset, also Jira's `+0000`) or epoch milliseconds.
    Raises Unmappable naming `field_name` for anything else, and for an instant outside
    `events.instants.SUPPORTED_RANGE` (a numeric `1e20`, `-1e16` or `10**18` included:
    issue #19 item 9; Python raised OverflowError or OSError for those, answered 500).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            parsed = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise Unmappable(
                f"field {field_name!r}: epoch milliseconds outside {SUPPORTED_RANGE}"
            ) from None
        return _in_range(parsed, field_name)
    if not isinstance(value, str) or not value:
        raise Unmappable(f"field {field_name!r}: missing or not a timestamp")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Unmappable(f"field {field_name!r}: not a timestamp") from None
    if parsed.tzinfo is None:
        raise Unmappable(f"field {field_name!r}: timestamp without a UTC offset")
    return _in_range(parsed, field_name)


def _in_range(moment: datetime, field_name: str) -> str:
    """`moment` as RFC 3339 text, if the core supports it (else Unmappable naming the field)."""
    text = moment.isoformat()
    try:
        parse_rfc3339(text)
    except ValueError as exc:
        raise Unmappable(f"field {field_name!r}: {exc}") from None
    return text


def ident(value: object) -> str | None:
    """A vendor id (number or text) as a contract id string; None/empty -> None."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return str(value)[:256]
    return None


def obj_of(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def list_of(value: object) -> list[Any]:
    """`value` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


MAX_TAGS = 64
"""Most tags an event carries (`events.inbound.Tags`)."""


TAGS_CLIPPED = "tags over 64: first 64 kept"
"""The warning (`Mapped.warnings`) when a ticket has more valid tags than the contract holds."""


def tags_of(value: object, warnings: list[str] | None = None) -> list[str]:
    """A vendor's tags or labels as the contract's `tags`: the strings of a JSON array that
    are valid contract tags (1-256 characters, no control character; `events.inbound.Tags`),
    each once, in order, at most 64 (TAGS_CLIPPED appended to `warnings` when more). Anything
    else in the array is left out, so one odd label never loses the ticket."""
    tags: list[str] = []
    for item in list_of(value):
        valid = isinstance(item, str) and 0 < len(item) <= MAX_TEXT and not has_control(item)
        if valid and item not in tags:
            tags.append(item)
    if len(tags) > MAX_TAGS and warnings is not None:
        warnings.append(TAGS_CLIPPED)
    return tags[:MAX_TAGS]


def dig(obj: object, *path: str) -> Any:
    """obj[path[0]][path[1]]...; None where a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


DROPPED = "[dropped]"
"""What a dead-lettered vendor payload keeps in place of a value it does not allow."""

KEPT_VALUES = frozenset(
    {
        # ids and keys (also every key ending in `_id`, `_ids` or `Id`)
        "id",
        "key",
        "number",
        "accountId",
        "accountType",
        # event kinds
        "type",
        "webhookEvent",
        "issue_event_type_name",
        "zendesk_event_version",
        # statuses, priorities, visibility, authorship
        "status",
        "state",
        "priority",
        "channel",
        "sender",
        "internal",
        "is_public",
        "jsdPublic",
        "public",
        "is_staff",
        "role",
        "article_count",
        "position",
        "total",
        "field",
        "fieldId",
        "fieldtype",
        # times (also every key ending in `_at` or `At`)
        "time",
        "timestamp",
        "created",
        "updated",
        "resolutiondate",
        # tags and labels
        "tags",
        "labels",
        "added",
        "removed",
    }
)
"""Keys whose scalar values (or lists of scalars) a dead letter keeps (issue #20 item 6)."""

CONTAINERS = frozenset(
    {
        # Zendesk: ticket events, comments, messaging
        "detail",
        "event",
        "comment",
        "author",
        "via",
        "meta",
        "sequence",
        "actor",
        "message",
        "current",
        "previous",
        "tags",
        "added",
        "removed",
        # Jira
        "issue",
        "fields",
        "changelog",
        "items",
        "status",
        "statusCategory",
        "priority",
        "issuetype",
        "resolution",
        "project",
        "components",
        "assignee",
        "reporter",
        "user",
        # Zammad
        "ticket",
        "article",
        "state",
        "group",
        "organization",
    }
)
"""Keys whose objects (or lists of objects) a dead letter descends into, keeping only
KEPT_VALUES inside; so are Jira's `customfield_*` (JSM organisations are a list of `{id}`)."""

NAMED = frozenset({"status", "statusCategory", "priority", "state", "issuetype", "resolution"})
"""Containers whose `name` is a status or priority name, kept (a person's or an
organisation's `name` never is)."""

CODE_CHANGES = frozenset(
    {
        "status",
        "priority",
        "resolution",
        "labels",
        "tags",
        "component",
        "components",
        "issuetype",
        "custom_status",
        "agent_assignment",
        "group_assignment",
        "organization",
        "brand",
        "form",
        "ticket_type",
        "assignee",
    }
)
"""Changes whose before/after values are codes or ids: a Zendesk event's `current` and
`previous` (by the event type's name) and a Jira changelog item's `from`, `to`,
`fromString`, `toString` (by its `field`; an assignee's `fromString` is a person's name, so
for `assignee` only `from` and `to`, account ids, are kept)."""

_ID_KEY = re.compile(r"(_ids?|Ids?|_at|At)$")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def scrub(payload: Any) -> Any:
    """What a dead letter keeps of a vendor payload: an allow-list (issue #20 item 6).

    Kept: what a fixed adapter needs to map the payload again: ids, event kinds, statuses,
    priorities, times, tags and labels, group and organisation ids, visibility and author
    kind of a comment (KEPT_VALUES and keys ending in `_id`, `_ids`, `Id`, `_at`, `At`),
    inside the vendors' documented containers (CONTAINERS). Every other value becomes
    DROPPED, so names, e-mail addresses, phone numbers, addresses, subjects, descriptions,
    comment bodies and custom free-text fields never reach the dead-letter topic, whatever
    new key a vendor adds. A kept string that holds an e-mail address is dropped too.
    """
    change = ""
    if isinstance(payload, dict):
        kind = payload.get("type")
        if isinstance(kind, str) and kind.endswith("_changed"):
            change = kind.rsplit(".", 1)[-1].removesuffix("_changed")
    return _keep(payload, "", change, 0)


def _keep(value: Any, parent: str, change: str, depth: int) -> Any:
    if depth > 12:
        return DROPPED
    if isinstance(value, list):
        return [_keep(item, parent, change, depth + 1) for item in value[:256]]
    if not isinstance(value, dict):  # an item of a list: kept if the list's key is allowed
        return _scalars(value) if parent in KEPT_VALUES else DROPPED
    kept: dict[str, Any] = {}
    item_field = str(value.get("field", "")).lower() if parent == "items" else ""
    for key, item in value.items():
        if isinstance(item, dict | list) and (key in CONTAINERS or key.startswith("customfield_")):
            kept[key] = _keep(item, key, change, depth + 1)
        elif _kept_value(key, parent, change, item_field):
            kept[key] = _scalars(item)
        else:
            kept[key] = DROPPED if item not in (None, "", [], {}) else item
    return kept


def _kept_value(key: str, parent: str, change: str, item_field: str) -> bool:
    if key in KEPT_VALUES or _ID_KEY.search(key):
        return True
    if key == "name":
        return parent in NAMED
    if key in ("current", "previous"):
        return change in CODE_CHANGES
    if key in ("from", "to"):
        return item_field in CODE_CHANGES
    if key in ("fromString", "toString"):
        return item_field in CODE_CHANGES and item_field != "assignee"
    return False


def _scalars(value: Any) -> Any:
    """A kept value: a scalar or a list of scalars, strings at most 256 characters, no
    e-mail addresses; anything else DROPPED."""
    if isinstance(value, list):
        return [_scalars(item) for item in value[:256]]
    if isinstance(value, str):
        return DROPPED if _EMAIL.search(value) else value[:256]
    if value is None or isinstance(value, bool | int | float):
        return value
    return DROPPED


def contract_event(
    kind: str, event_id: str, ticket_id: str, occurred_at: str, source: str, **fields: Any
) -> dict[str, Any]:
    """One inbound contract event as a dict (validated again by the codec before producing)."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "ticket_id": ticket_id,
        "occurred_at": occurred_at,
        "source": source,
    }
    event.update(fields)
    return event
