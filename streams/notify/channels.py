"""Delivery of one SLA event to one channel: message formats (pure) and senders.

Every delivery carries the SLA event's `event_id` as its idempotency key: header
`Idempotency-Key` on webhooks, `Message-ID: <event_id.channel@escalator>` on e-mail; PagerDuty
deduplicates by `dedup_key` (ticket + metric). Slack has no such key: a redelivery after a
crash can repeat a Slack message. Messages carry ids and metadata only (SLA events have no
free text).

Ids come from ticket systems and may hold anything the contract allows, so each format escapes
them its own way: control characters are shown as `\\xNN` escapes in every human-readable line
(an e-mail header cannot carry CR/LF), Slack gets `&`, `<`, `>` as entities and data only in
`plain_text` objects (never mrkdwn), PagerDuty gets a bounded `dedup_key`. A message that
cannot be built is a permanent failure (`DeliveryFailed(retryable=False)`): no retry can fix it.
"""

from __future__ import annotations

import hashlib
import re
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import aiosmtplib
import orjson

from base.errors import EscalatorError
from events.signatures import WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, sign_webhook
from streams.notify.rules import (
    EmailChannel,
    MessageChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)


class DeliveryFailed(EscalatorError):
    """A try failed; `retryable` False means trying again cannot help (e.g. a 400).

    `retry_after`: seconds the receiver asked us to wait (its `Retry-After`), if it did.
    """

    def __init__(self, reason: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(reason)
        self.retryable = retryable
        self.retry_after = retry_after


# -- formats (pure)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    """`value` as one line: each C0/C1 control character (CR, LF, NUL, ...) as `\\xNN`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def headline(event: dict[str, Any]) -> str:
    """One readable line: what happened to which ticket (ids made printable)."""
    kind = printable(event.get("type", ""))
    ticket = printable(event.get("ticket_id", "?"))
    metric = printable(event.get("metric", "")).replace("_", " ")
    sev = f"Sev{printable(event.get('severity'))}"
    if kind == "ticket.escalated":
        to = printable(event.get("to"))
        return f"{ticket} ({sev}) escalated to {to} (level {printable(event.get('level'))})"
    if kind == "sla.breached":
        return f"{ticket} ({sev}) breached its {metric} target"
    if kind == "sla.warning":
        share = round(float(event.get("threshold", 0)) * 100)
        return f"{ticket} ({sev}) has used {share}% of its {metric} target"
    if kind == "customer.notification_required":
        eta = printable(event.get("eta"))
        return f"{ticket} ({sev}): tell the customer; estimated completion {eta}"
    if kind == "sla.met":
        return f"{ticket} ({sev}) met its {metric} target"
    return f"{ticket} ({sev}) {kind}"


def details(event: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of the fields present, values made printable."""
    policy = event.get("policy") or {}
    pairs = [
        ("due", event.get("due_at")),
        ("fired", event.get("at")),
        ("customer", event.get("customer_id")),
        ("group", event.get("group")),
        ("assignee", event.get("assignee")),
        ("policy", f"{policy.get('name')} {policy.get('version')}" if policy else None),
        ("event", event.get("event_id")),
    ]
    return [(k, printable(v)) for k, v in pairs if v is not None]


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities Slack requires (`&amp;`, `&lt;`,
    `&gt;`; Slack, "Formatting text for app surfaces", escaping), nothing else encoded."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_plain(text: str, limit: int) -> dict[str, Any]:
    """A Block Kit `plain_text` object: no mrkdwn, links or mentions are parsed in it, so `*`,
    `_` and backticks in ids show as themselves; at most `limit` characters once escaped."""
    escaped = slack_escape(text)
    if len(escaped) > limit:
        cut = text[: limit - 1]
        while len(slack_escape(cut)) > limit - 1:
            cut = cut[:-1]
        escaped = slack_escape(cut) + "…"
    return {"type": "plain_text", "text": escaped, "emoji": False}


_SLACK_LABEL = {
    "ticket.escalated": ":rotating_light: *Escalated*",
    "sla.breached": ":red_circle: *SLA breached*",
    "sla.warning": ":warning: *SLA warning*",
    "customer.notification_required": ":warning: *Tell the customer*",
    "sla.met": ":white_check_mark: *SLA met*",
}


def slack_message(event: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body (Block Kit): our own label in mrkdwn (no data in it), the
    headline and one field per detail as `plain_text`; `text` is the notification fallback,
    the headline with `&`, `<`, `>` escaped."""
    label = _SLACK_LABEL.get(str(event.get("type")), ":warning: *SLA event*")
    line = headline(event)
    fields = [_slack_plain(f"{k}: {v}", 2000) for k, v in details(event)][:10]
    return {
        "text": _slack_plain(line, 3000)["text"],
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": label}},
            {"type": "section", "text": _slack_plain(line, 3000), "fields": fields},
        ],
    }


_MSG_ID = re.compile(r"^[A-Za-z0-9.-]{1,200}$")


def email_message(event: dict[str, Any], channel: EmailChannel, name: str) -> EmailMessage:
    """The mail for one event; ids in headers and body made printable (no CR/LF can split a
    header), Message-ID `<event_id.channel@escalator>` (the event id hashed if it is not a
    plain UUID-like atom, RFC 5322 msg-id)."""
    event_id = str(event.get("event_id"))
    if not _MSG_ID.match(event_id):
        event_id = "sha256-" + hashlib.sha256(event_id.encode()).hexdigest()
    message = EmailMessage()  # email.policy.default: a header value with CR/LF is refused
    message["Subject"] = f"[Escalator] {headline(event)}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["Message-ID"] = f"<{event_id}.{name}@escalator>"
    message["X-Escalator-Event-Id"] = printable(event.get("event_id"))
    body = headline(event) + "\n\n" + "\n".join(f"{k}: {v}" for k, v in details(event))
    message.set_content(body + "\n")
    return message


PAGERDUTY_SEVERITY = {1: "critical", 2: "error", 3: "warning", 4: "info"}
DEDUP_KEY_MAX = 255
"""PagerDuty Events API v2: `dedup_key` is at most 255 characters."""


def dedup_key(ticket_id: str, metric: str) -> str:
    """The incident of one ticket and metric: `<ticket>:<metric>`, or, when that is longer than
    255 characters, `<first 160 characters of the ticket id>:<metric>:sha256=<hex of
    SHA-256(ticket id, NUL, metric)>` (at most 248). Stable: the same ticket and metric always
    give the same key; the long form cannot equal a short one (it ends in the digest, a short
    one in a metric)."""
    key = f"{ticket_id}:{metric}"
    if len(key) <= DEDUP_KEY_MAX:
        return key
    digest = hashlib.sha256(f"{ticket_id}\x00{metric}".encode()).hexdigest()
    return f"{ticket_id[:160]}:{metric}:sha256={digest}"


def pagerduty_trigger(event: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """PagerDuty Events API v2 `trigger` (one incident per ticket and metric).

    `summary` (at most 1024 characters), `source` and `severity` are required; `timestamp`,
    `component`, `group`, `class` are optional strings and omitted when absent (PagerDuty
    refuses a null)."""
    payload: dict[str, Any] = {
        "summary": headline(event)[:1024],
        "source": "escalator",
        "severity": PAGERDUTY_SEVERITY.get(int(event.get("severity", 3)), "warning"),
    }
    optional = {
        "timestamp": event.get("at"),
        "component": event.get("metric"),
        "group": event.get("group"),
        "class": event.get("type"),
    }
    payload.update({k: str(v) for k, v in optional.items() if v is not None})
    payload["custom_details"] = {"ticket": str(event["ticket_id"]), **dict(details(event))}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(str(event["ticket_id"]), str(event["metric"])),
        "payload": payload,
    }


def pagerduty_resolve(ticket_id: str, metric: str, routing_key: str) -> dict[str, Any]:
    return {
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(ticket_id, metric),
    }


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks to wait (RFC 9110 §10.2.3: delay-seconds or an
    HTTP-date, both accepted); None when absent or unreadable. `now`: Unix seconds."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


# -- senders


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        status = response.status
        wait = retry_after(response.headers.get("Retry-After"), time.time())
    if 200 <= status < 300:
        return
    retryable = status >= 500 or status in (408, 409, 425, 429)
    raise DeliveryFailed(f"HTTP {status}", retryable=retryable, retry_after=wait)


def build(
    name: str, channel: MessageChannel, event: dict[str, Any], raw: bytes, environ: dict[str, str]
) -> tuple[str, bytes, dict[str, str]] | EmailMessage:
    """The request for one delivery: (url, body, headers), or the mail. Pure but for the
    webhook's signing time; an id no format can carry raises (a permanent failure)."""
    if isinstance(channel, WebhookChannel):
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": printable(event.get("event_id")),
            WEBHOOK_TIMESTAMP_HEADER: str(now),
            WEBHOOK_SIGNATURE_HEADER: sign_webhook(environ[channel.secret_env], now, raw),
        }
        return channel.url, raw, headers
    json = {"Content-Type": "application/json"}
    if isinstance(channel, SlackChannel):
        return environ[channel.url_env], orjson.dumps(slack_message(event)), json
    if isinstance(channel, PagerDutyChannel):
        routing_key = environ[channel.routing_key_env]
        if event.get("type") == "pagerduty.resolve":
            body = pagerduty_resolve(str(event["ticket_id"]), str(event["metric"]), routing_key)
        else:
            body = pagerduty_trigger(event, routing_key)
        return channel.url, orjson.dumps(body), json
    message = email_message(event, channel, name)
    message.as_bytes(policy=SMTP)  # raises here, not half-way into the SMTP session
    return message


async def send(
    session: aiohttp.ClientSession,
    name: str,
    channel: MessageChannel,
    event: dict[str, Any],
    raw: bytes,
    environ: dict[str, str],
) -> None:
    """One try of one delivery; raises DeliveryFailed, aiohttp/SMTP errors or a timeout."""
    try:
        request = build(name, channel, event, raw, environ)
    except Exception as exc:  # pure code on this event: the same every try
        raise DeliveryFailed(f"cannot build the message: {type(exc).__name__}", False) from None
    if not isinstance(request, EmailMessage):
        url, body, headers = request
        await _post(session, url, body, headers)
        return
    assert isinstance(channel, EmailChannel)
    password = environ.get(channel.password_env) if channel.password_env else None
    try:
        await aiosmtplib.send(
            request,
            hostname=channel.host,
            port=channel.port,
            username=channel.username,
            password=password,
            start_tls=channel.starttls,
            timeout=channel.timeout,
        )
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryFailed(f"SMTP {exc.code}", retryable=400 <= exc.code < 500) from None
