"""CloudEvents binary content mode for records on `sla-events` (CloudEvents Kafka binding).

The record value stays our JSON SLA event; the CloudEvents attributes go into headers,
written by the `cloudevents` SDK so that any CloudEvents consumer can read them:

    ce_specversion  1.0
    ce_id           the SLA event's event_id (deterministic, so also the dedup key)
    ce_type         escalator.<type>, e.g. escalator.ticket.escalated
    ce_source       /escalator/<app id>
    ce_time         when it fired on the SLA clock (`at`), RFC 3339 UTC
    ce_subject      the ticket id (`policy/<version>` for a `policy.activated` record)
    ce_dataschema   the $id of events/schemas/sla-event.schema.json (policy-activated...)
    content-type    application/json

A pure function: the engine calls it for every SLA event it produces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from cloudevents.core.bindings.kafka import from_binary, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

TYPE_PREFIX: Final = "escalator."
SCHEMA_BASE: Final = "urn:escalator:schema:"
SLA_EVENT_SCHEMA_ID: Final = SCHEMA_BASE + "sla-event"
DEFAULT_SOURCE: Final = "/escalator/escalator"
_SCHEMAS: Final = {"policy.activated": "policy-activated"}
"""Record types on the SLA topic that are not SLA events: the schema each follows."""
_FORMAT: Final = JSONFormat()


def source_of(app_id: str) -> str:
    """`ce_source` of a worker (a URI reference naming the producing application)."""
    return f"/escalator/{app_id}"


def sla_event_headers(
    record: dict[str, Any], source: str = DEFAULT_SOURCE
) -> list[tuple[str, bytes]]:
    """Kafka headers (binary content mode) for one outbound SLA event record, by the SDK.

    `record` is the outbound dict (`events.outbound`); only ids and times are read.
    Raises ValueError if `at` is not an RFC 3339 timestamp. The SDK (`CloudEvent` +
    `to_binary`) costs more than writing the eight headers by hand, but it is the reference
    every CloudEvents consumer reads, so we do not keep a second copy of its encoding.
    """
    event = CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": record["event_id"],
            "type": TYPE_PREFIX + record["type"],
            "source": source,
            "time": datetime.fromisoformat(record["at"].replace("Z", "+00:00")),
            "subject": record.get("ticket_id") or f"policy/{record.get('version')}",
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_BASE + _SCHEMAS.get(record["type"], "sla-event"),
        },
        data=None,
    )
    return list(to_binary(event, _FORMAT).headers.items())


def read_headers(headers: list[tuple[str, bytes]], value: bytes) -> CloudEvent:
    """A CloudEvent from a record's headers and value (what a CloudEvents consumer does)."""
    from cloudevents.core.bindings.kafka import KafkaMessage

    event = from_binary(KafkaMessage(headers=dict(headers), key=None, value=value), _FORMAT)
    assert isinstance(event, CloudEvent)
    return event
