"""Shared-secret authentication of webhooks, both directions, compared in constant time.

Inbound (vendors sign, we verify): Zendesk `base64(HMAC-SHA256(secret, timestamp + body))`;
`X-Hub-Signature: <algorithm>=<hex HMAC(secret, body)>` (Jira Cloud with SHA-256, Zammad with
SHA-1); a bearer token where a sender cannot sign. A signed timestamp more than
`REPLAY_TOLERANCE` from our clock is refused, so a captured request cannot be replayed later
(Zendesk: "These signatures will also help prevent against replay attacks").
Outbound (we sign, receivers verify):
`X-Escalator-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>` with the
timestamp (Unix seconds) in `X-Escalator-Timestamp`, so a receiver can refuse old replays.
Secrets never appear in a message or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from events.instants import parse_instant

WEBHOOK_SIGNATURE_HEADER = "X-Escalator-Signature"
WEBHOOK_TIMESTAMP_HEADER = "X-Escalator-Timestamp"
REPLAY_TOLERANCE = 300
"""Seconds a signed timestamp may differ from the receiver's clock (the common 5 minutes)."""


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of two header values as UTF-8 bytes: `hmac.compare_digest`
    raises TypeError on a non-ASCII str (a header of `Bearer été` must be a plain mismatch)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _digest(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def _recent(timestamp: str, now: int, tolerance: int) -> bool:
    """Whether `timestamp` (Unix seconds, or RFC 3339 as Zendesk sends it) is within
    `tolerance` seconds of `now` (Unix seconds); an unreadable one is not."""
    text = timestamp.strip()
    try:
        seconds = int(text) if text.isdigit() else parse_instant(text) // 1_000_000
    except ValueError:
        return False
    return abs(now - seconds) <= tolerance


def verify_zendesk(
    secret: str, timestamp: str, body: bytes, signature: str, now: int,
    tolerance: int = REPLAY_TOLERANCE,
) -> bool:  # fmt: skip
    """Zendesk's scheme (docs: "Verifying webhook authenticity"), signed at most `tolerance`
    seconds from `now` (Unix seconds)."""
    expected = base64.b64encode(_digest(secret, timestamp.encode() + body)).decode()
    return _recent(timestamp, now, tolerance) and _same(expected, signature.strip())


def sign_zendesk(secret: str, timestamp: str, body: bytes) -> str:
    return base64.b64encode(_digest(secret, timestamp.encode() + body)).decode()


def verify_hub(secret: str, body: bytes, header: str, algorithm: str) -> bool:
    """`X-Hub-Signature: sha256=<hex>` (or sha1): HMAC of the raw body."""
    prefix, _, given = header.strip().partition("=")
    if prefix.lower() != algorithm:
        return False
    return _same(_digest(secret, body, algorithm).hex(), given.lower())


def sign_hub(secret: str, body: bytes, algorithm: str) -> str:
    return f"{algorithm}={_digest(secret, body, algorithm).hex()}"


def verify_bearer(token: str, authorization: str) -> bool:
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and _same(token, given.strip())


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """Our outbound webhook signature for `X-Escalator-Signature`."""
    return "v1=" + _digest(secret, f"{timestamp}.".encode() + body).hex()


def verify_webhook(
    secret: str, timestamp: str, body: bytes, signature: str, now: int,
    tolerance: int = REPLAY_TOLERANCE,
) -> bool:  # fmt: skip
    """What a receiver of our webhooks does: signature matches and timestamp is recent."""
    expected = "v1=" + _digest(secret, f"{timestamp}.".encode() + body).hex()
    return _recent(timestamp, now, tolerance) and _same(expected, signature.strip())


def _ack_message(ticket_id: str, level: int, expires: int) -> bytes:
    """What an acknowledge link signs: ticket, level and expiry, NUL-separated (a contract id
    holds no control character, so no two triples give the same message)."""
    return f"escalator-ack\x00{ticket_id}\x00{level}\x00{expires}".encode()


def sign_ack(secret: str, ticket_id: str, level: int, expires: int) -> str:
    """The signature of an acknowledge link: hex HMAC-SHA256 over the ticket id, the
    escalation level and the expiry (Unix seconds); see `streams.notify.actions.ack_link`."""
    return _digest(secret, _ack_message(ticket_id, level, expires)).hex()


def verify_ack(
    secret: str, ticket_id: str, level: int, expires: int, signature: str, now: int
) -> bool:
    """Whether an acknowledge link is authentic (constant-time compare) and not expired at
    `now` (Unix seconds)."""
    expected = sign_ack(secret, ticket_id, level, expires)
    return _same(expected, signature.strip().lower()) and now <= expires


def verify_pagerduty(secret: str, body: bytes, header: str) -> bool:
    """PagerDuty v3 webhooks ("Verifying signatures"): `X-PagerDuty-Signature` holds one or
    more comma-separated `v1=<hex HMAC-SHA256(secret, body)>` (several while a secret is
    rotated); authentic when one matches. Each is compared in constant time."""
    expected = "v1=" + _digest(secret, body).hex()
    found = False
    for given in header.split(","):
        found |= _same(expected, given.strip().lower())
    return found


def sign_pagerduty(secret: str, body: bytes) -> str:
    return "v1=" + _digest(secret, body).hex()
