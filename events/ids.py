"""Deterministic SLA event ids: a UUIDv5 of what the event is about.

Same ticket, metric, rule and cycle -> same id, whether the event comes from a replay, a
retry or a restarted worker, so consumers can deduplicate on it. Compiled with the core.
"""

from __future__ import annotations

import hashlib
import uuid

ID_NAMESPACE = uuid.UUID("5d1f8b0e-3c1a-4f7e-9a57-6b2f0c1e4d21")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""The RFC 4122 variant bits set into the 17th hex digit of the hash."""


def sla_event_id(ticket_id: str, reported_at: int, metric: str, rule: str, cycle: int) -> str:
    """The deterministic id of an SLA event: a UUIDv5 of what the event is about.

    The ticket is named by its id and report instant (microseconds), so a ticket id that an
    upstream system reuses long after closing gets fresh ids. `rule` names the timer within
    the metric (`warning:0.5`, `breached`, `met:0`, `level:1`, ...).
    """
    name = f"{ticket_id}\x1f{reported_at}\x1f{metric}\x1f{rule}\x1f{cycle}".encode()
    # uuid.uuid5 by hand (same result, see tests): no UUID object on the hot path.
    return _uuid5(name)


_NAMESPACE_HASH = hashlib.sha1(_NAMESPACE_BYTES, usedforsecurity=False)
"""SHA-1 fed with the namespace: each id copies it and adds its name (cheaper than hashing
the namespace again)."""


def _uuid5(name: bytes) -> str:
    sha = _NAMESPACE_HASH.copy()
    sha.update(name)
    h = sha.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def revised_id(event_id: str, revision: int) -> str:
    """The id of an SLA event issued again after `revision` retractions of its slot.

    Revision 0 is the event's own id; later ones are UUIDv5s of (id, revision), so consumers
    that deduplicate on ids never mistake a corrected event for the one it replaces.
    """
    return event_id if revision == 0 else _uuid5(f"{event_id}\x1frevision\x1f{revision}".encode())


def retraction_id(event_id: str) -> str:
    """The id of the `sla.retracted` that withdraws the SLA event `event_id` (UUIDv5)."""
    return _uuid5(f"{event_id}\x1fretracted".encode())
