"""A seeded generator of hostile input records, shared by the fuzz test and the chaos script.

Every record it makes is invalid, or valid-looking but rejected (an event id reused with other
content, an event for a ticket never opened), so none of them may change what the valid
tickets of the same stream emit. Kinds follow issues #10 and #19: wrong JSON types, ids and
names with control characters, timestamps outside
the supported range or not strict RFC 3339, unknown types carrying free text, oversize and
binary values, control characters, a value near the input limit, reused ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

FREE_TEXT = "Customer says: my password is hunter2\r\nX-Injected: 1 \u202e\x00"


def _opened(rng: random.Random, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"h-{rng.randrange(10**9)}",
        "ticket_id": f"H-{rng.randrange(10**9)}",
        "type": "ticket.opened",
        "occurred_at": "2026-11-23T14:00:00Z",
        "severity": 2,
    }
    record.update(fields)
    return record


def _json(
    make: Callable[[random.Random], dict[str, Any] | list[Any]],
) -> Callable[[random.Random, list[dict[str, Any]]], bytes]:
    return lambda rng, valid: orjson.dumps(make(rng))


def _reused_id(rng: random.Random, valid: list[dict[str, Any]]) -> bytes:
    """A valid event's id and ticket with other content (rejected, never applied)."""
    original = rng.choice(valid)
    other = dict(original)
    later = original["occurred_at"] != "2026-11-23T14:00:00.5Z"
    other["occurred_at"] = "2026-11-23T14:00:00.5Z" if later else "2026-11-23T14:00:01Z"
    responded = original["type"] == "ticket.responded"
    other["type"] = "ticket.paused" if responded else "ticket.responded"
    other.pop("severity", None)
    return orjson.dumps(other)


KINDS: dict[str, Callable[[random.Random, list[dict[str, Any]]], bytes]] = {
    "malformed": lambda rng, valid: b'{"type": "ticket.opened", "event_id": ',
    "not-object": lambda rng, valid: b"[1, 2, 3]",
    "empty": lambda rng, valid: b"",
    "binary": lambda rng, valid: bytes(rng.randrange(256) for _ in range(64)),
    "severity-true": _json(lambda rng: _opened(rng, severity=True)),
    "severity-string": _json(lambda rng: _opened(rng, severity="1")),
    "severity-float": _json(lambda rng: _opened(rng, severity=2.0)),
    "severity-9": _json(lambda rng: _opened(rng, severity=9)),
    "year-9999": _json(lambda rng: _opened(rng, occurred_at="9999-12-31T23:59:59Z")),
    "year-1": _json(lambda rng: _opened(rng, occurred_at="0001-01-01T00:00:00+05:00")),
    "time-number": _json(lambda rng: _opened(rng, occurred_at=1_795_000_000)),
    "time-digits": _json(lambda rng: _opened(rng, occurred_at="1795000000")),
    "time-space": _json(lambda rng: _opened(rng, occurred_at="2026-11-23 14:00:00Z")),
    "id-nul": _json(lambda rng: _opened(rng, ticket_id=f"N\u0000{rng.randrange(10**9)}")),
    "id-escape": _json(lambda rng: _opened(rng, event_id="\u001b[2J\u001b]0;x\u0007")),
    "id-crlf": _json(lambda rng: _opened(rng, ticket_id="H\r\nX-Injected: 1")),
    "id-c1": _json(lambda rng: _opened(rng, customer_id="C\u0085\u009b31m")),
    "group-del": _json(lambda rng: _opened(rng, group="g\u007f")),
    "tag-nul": _json(lambda rng: _opened(rng, tags=["ok", "\u0000"])),
    "time-arabic-digits": _json(lambda rng: _opened(rng, occurred_at="\u0662026-11-23T14:00:00Z")),
    "unknown-type": _json(lambda rng: _opened(rng, type=f"ticket.{FREE_TEXT}")),
    "deep": lambda rng, valid: b"[" * 5000 + b"]" * 5000,
    "big-field": _json(lambda rng: _opened(rng, severity=9, description="x" * 200_000)),
    "near-limit": _json(lambda rng: _opened(rng, severity=9, description="x" * 990_000)),
    "control-chars": lambda rng, valid: (
        b'{"event_id": "h-\x01\x1b[2J", "ticket_id": "H-\x07", "type": "ticket.opened", '
        b'"occurred_at": "2026-11-23T14:00:00Z", "severity": 2, "title": "\x00\x08\x7f"}'
    ),
    "never-opened": _json(lambda rng: _opened(rng, type="ticket.responded")),
    "bad-tick": _json(lambda rng: {"type": "clock.tick", "occurred_at": "9999-12-31T23:59:59Z"}),
    "reused-id": _reused_id,
}


def hostile_records(rng: random.Random, valid: list[dict[str, Any]], count: int) -> list[bytes]:
    """`count` hostile records, every kind at least once when `count` allows, then at random."""
    names = sorted(KINDS)
    chosen = names[:count] + [rng.choice(names) for _ in range(max(0, count - len(names)))]
    return [KINDS[name](rng, valid) for name in chosen]


def mix(rng: random.Random, valid: list[bytes], hostile: list[bytes]) -> list[bytes]:
    """Hostile records spread at random positions through the valid stream (its order kept)."""
    mixed = list(valid)
    for record in hostile:
        mixed.insert(rng.randrange(len(mixed) + 1), record)
    return mixed
