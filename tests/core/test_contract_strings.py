"""Issue #19 items 2 and 10: every string of the contract is printable and bounded.

A control character (NUL stopped the PostgreSQL projector for ever; CR/LF split log lines and
e-mail headers; ESC drives a terminal) is rejected at decode with the field named, by the one
codec every shell uses (ingest, worker, replay, projector), and so is a string over its
documented maximum length.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from events.codec import InvalidEvent, decode_input_record, decode_ticket_event
from events.text import escape_controls, has_control

CONTROLS = ["\u0000", "\u001b", "\r\n", "\u007f", "\u0085", "\u009f"]
"""NUL (the issue's byte), ESC, CR LF, DEL and two C1 controls (NEL, APC)."""


def event(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "n1",
        "ticket_id": "T",
        "type": "ticket.opened",
        "occurred_at": "2026-12-07T09:00:00Z",
        "severity": 2,
        "customer_id": "C",
        "group": "g",
        "assignee": "a",
        "channel": "email",
        "tags": ["x"],
        "attributes": {"tier": "gold"},
        "source": "zendesk",
        "schema_version": "1",
    }
    record.update(fields)
    return record


def with_text(field: str, text: str) -> tuple[dict[str, Any], str]:
    """The event with `text` in `field` (dotted for tags and attributes), and the field name
    the reason must give."""
    if field == "tags":
        return event(tags=["ok", text]), "tags.1"
    if field == "attributes.key":
        return event(attributes={text: "v"}), "attributes"
    if field == "attributes.value":
        return event(attributes={"tier": text}), "attributes.tier"
    return event(**{field: text}), field


STRING_FIELDS = [
    "event_id", "ticket_id", "customer_id", "group", "assignee", "channel", "tags",
    "attributes.key", "attributes.value", "source", "schema_version",
]  # fmt: skip


def test_the_issues_nul_ticket_id_is_rejected_naming_the_field() -> None:
    raw = (
        b'{"event_id":"n1","ticket_id":"N\\u0000X","type":"ticket.opened",'
        b'"occurred_at":"2026-12-07T09:00:00Z","severity":2}'
    )
    with pytest.raises(InvalidEvent) as caught:
        decode_ticket_event(raw)
    assert str(caught.value) == (
        "field 'ticket_id': must not contain control characters (U+0000-U+001F, U+007F-U+009F)"
    )
    with pytest.raises(InvalidEvent, match="field 'ticket_id'"):
        decode_input_record(raw)  # the worker's entry point


@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(c[-1]):04X}" for c in CONTROLS])
@pytest.mark.parametrize("field", STRING_FIELDS)
def test_a_control_character_in_any_string_field_is_rejected(field: str, control: str) -> None:
    record, name = with_text(field, f"A{control}B")
    with pytest.raises(InvalidEvent) as caught:
        decode_ticket_event(orjson.dumps(record))
    assert f"field '{name}" in str(caught.value)
    assert "control characters" in str(caught.value)


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_printable_text_of_every_script_is_accepted(field: str) -> None:
    record, _ = with_text(field, "T/with?query=1#frag space \u00e9\u4e2d\u2028`<!channel>`")
    decode_ticket_event(orjson.dumps(record))


LIMITS = {field: 256 for field in STRING_FIELDS} | {"schema_version": 64}
"""The documented maximum lengths, in characters (code points), docs/contract.md."""


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_every_string_field_has_its_documented_maximum(field: str) -> None:
    limit = LIMITS[field]
    at_limit, _ = with_text(field, "\u00e9" * limit)  # 2 bytes each: counted in characters
    decode_ticket_event(orjson.dumps(at_limit))
    over, name = with_text(field, "x" * (limit + 1))
    with pytest.raises(InvalidEvent) as caught:
        decode_ticket_event(orjson.dumps(over))
    assert f"field '{name}" in str(caught.value) and f"at most {limit}" in str(caught.value)


def test_the_issues_megabyte_schema_version_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="field 'schema_version'"):
        decode_ticket_event(orjson.dumps(event(schema_version="1" * 1_200_000)))


def test_escape_controls_makes_every_control_visible() -> None:
    shown = escape_controls("a\u0000b\u001b[2Jc\r\n\u0085")
    assert shown == "a\\x00b\\x1b[2Jc\\x0d\\x0a\\x85"
    assert not has_control(shown) and has_control("\u009f") and not has_control("\u00a0")
