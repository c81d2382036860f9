"""PagerDuty webhooks (v3) -> `ticket.escalation_acknowledged` (pure).

Source: PagerDuty developer docs, "Webhooks v3 overview" (payload `{"event": {"id",
"event_type", "resource_type", "occurred_at", "agent", "data"}}`, `data` the incident with
its `incident_key`) and "Verifying signatures" (`X-PagerDuty-Signature: v1=<hex
HMAC-SHA256(secret, body)>`, several comma-separated while a secret is rotated).

Only `incident.acknowledged` has a meaning here: someone took an incident our PagerDuty
channel triggered. Its `incident_key` is our `dedup_key`, `<ticket id>:<metric>`
(`streams.notify.channels.dedup_key`), so the ticket is known; the incident is one ticket
and metric, not one escalation level, so the acknowledgement names no level: it
acknowledges every level that has fired (see docs/actions.md). The actor is the agent's
PagerDuty user id (`event.agent.id`), never its name (`agent.summary`). A hashed long
`dedup_key` (a ticket id of about 240 characters or more) cannot be mapped back: dead letter.
"""

from __future__ import annotations

from typing import Any, get_args

from events.outbound import Metric
from events.vendors.common import Mapped, Unmappable, contract_event, dig, ident, rfc3339

SOURCE = "pagerduty"
SIGNATURE_HEADER = "X-PagerDuty-Signature"
ACKNOWLEDGED = "incident.acknowledged"
_METRICS = frozenset(get_args(Metric))


def ticket_of(incident_key: str) -> str:
    """The ticket id of one of our dedup keys (`<ticket>:<metric>`); Unmappable otherwise."""
    ticket, _, metric = incident_key.rpartition(":")
    if not ticket or metric not in _METRICS:
        raise Unmappable(
            "field 'event.data.incident_key': not an Escalator dedup key (<ticket>:<metric>)"
        )
    return ticket


def map_payload(payload: Any) -> Mapped:
    """`ticket.escalation_acknowledged` for an acknowledged incident; other event types are
    ignored; Unmappable names the missing field."""
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict):
        raise Unmappable("field 'event': missing (not a PagerDuty v3 webhook)")
    kind = event.get("event_type")
    if not isinstance(kind, str):
        raise Unmappable("field 'event.event_type': missing")
    if kind != ACKNOWLEDGED:
        return Mapped(ignored=f"{kind[:64]} has no SLA meaning")
    uid = ident(event.get("id"))
    if uid is None:
        raise Unmappable("field 'event.id': missing")
    key = dig(event, "data", "incident_key")
    if not isinstance(key, str) or not key:
        raise Unmappable("field 'event.data.incident_key': missing")
    at = rfc3339(event.get("occurred_at"), "event.occurred_at")
    actor = ident(dig(event, "agent", "id"))
    fields: dict[str, Any] = {"actor": actor} if actor is not None else {}
    ack = contract_event(
        "ticket.escalation_acknowledged", f"pagerduty:{uid}", ticket_of(key), at, SOURCE, **fields
    )
    return Mapped([ack])
