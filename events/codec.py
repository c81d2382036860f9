"""Bytes <-> events, with errors that name the offending field.

Every shell (replay, Kafka agent, projector) decodes through here, so an invalid record gets
the same reason everywhere: on stderr with its line number in a replay, in the dead-letter
topic's headers in the stream processor.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from base.errors import EscalatorError
from events.inbound import TICKET_EVENT_TYPES, ClockTick, ticket_event_adapter
from events.instants import parse_rfc3339
from events.records import TicketEvent, from_payload
from events.text import CONTROL_RULE

_KNOWN_TYPES = frozenset(TICKET_EVENT_TYPES)
_validate_ticket_event = ticket_event_adapter.validator.validate_python
"""`ticket_event_adapter.validate_python` without the adapter's Python-level wrapper (~0.4 us)."""


class InvalidEvent(EscalatorError, ValueError):
    """A record that is not a valid inbound event; the message says which field and why."""


def _describe(error: ValidationError) -> str:
    reasons: dict[str, list[str]] = {}
    for item in error.errors(include_url=False, include_input=False):
        # Drop the union tags pydantic adds: the event type first (a discriminated union),
        # a member's type after a field that takes several (`schema_version`: int or str).
        location = [str(p) for p in item["loc"] if p not in _UNION_TAGS]
        if location and location[0] in TICKET_EVENT_TYPES:
            location = location[1:]
        field = ".".join(location) or "(record)"
        # The only pattern of the contract is events.text's: say what it means.
        message = CONTROL_RULE if item["type"] == "string_pattern_mismatch" else item["msg"]
        reasons.setdefault(field, []).append(message)
    return "; ".join(f"field '{field}': {' or '.join(why)}" for field, why in reasons.items())


_UNION_TAGS = frozenset(("int", "str", "constrained-str", "none"))


def decode_json(raw: bytes | str) -> Any:
    """Parse JSON, raising InvalidEvent with the parser's reason."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None


def decode_ticket_event(raw: bytes | str) -> TicketEvent:
    """Decode one inbound ticket event from JSON."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    return ticket_event_from_obj(obj)


def ticket_event_from_obj(obj: Any) -> TicketEvent:
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind is None:
        raise InvalidEvent("field 'type': missing")
    if not isinstance(kind, str) or kind not in _KNOWN_TYPES:
        raise InvalidEvent(f"field 'type': unknown event type {sanitise(kind)}")
    try:
        payload = _validate_ticket_event(obj)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None
    try:
        at = parse_rfc3339(payload["occurred_at"])
    except ValueError as exc:
        raise InvalidEvent(f"field 'occurred_at': {exc}") from None
    return from_payload(payload, at)


SANITISED_LENGTH = 24
"""Most characters of an input value a reason or a log line quotes (see `sanitise`)."""


def sanitise(value: object) -> str:
    """A short, harmless form of an input value for reasons and logs: never the value itself.

    Only a JSON string is quoted, and only its first SANITISED_LENGTH characters from
    `a-z A-Z 0-9 . _ -` (others become `?`), so free text, control characters or megabytes
    riding in a field cannot reach a log line or a dead-letter header.
    """
    if not isinstance(value, str):
        return f"(a JSON {_json_kind(value)})"
    head = "".join(c if c in _SAFE else "?" for c in value[:SANITISED_LENGTH])
    if len(value) > SANITISED_LENGTH:
        return f"'{head}...' ({len(value)} characters)"
    return f"'{head}'"


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def decode_input_record(raw: bytes | str) -> TicketEvent | ClockTick:
    """Decode a record of the input topic: a ticket event or a `clock.tick`."""
    obj = decode_json(raw)
    if isinstance(obj, dict) and obj.get("type") == "clock.tick":
        try:
            return ClockTick.model_validate(obj)
        except ValidationError as exc:
            raise InvalidEvent(_describe(exc)) from None
    return ticket_event_from_obj(obj)


def encode(record: dict[str, Any]) -> bytes:
    """One outbound record as compact JSON bytes."""
    return orjson.dumps(record)
