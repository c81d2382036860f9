"""Delivery of one SLA event to one channel: message formats (pure) and senders.

Every delivery carries the SLA event's `event_id` as its idempotency key: header
`Idempotency-Key` on webhooks, `Message-ID: <event_id.channel@escalator>` on e-mail; PagerDuty
deduplicates by `dedup_key` (ticket + metric). Slack has no such key: a redelivery after a
crash can repeat a Slack message. Messages carry ids and metadata only (SLA events have no
free text).
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import orjson

from base.errors import EscalatorError
from events.signatures import WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, sign_webhook
from streams.notify.rules import (
    Channel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)


class DeliveryFailed(EscalatorError):
    """A try failed; `retryable` False means trying again cannot help (e.g. a 400)."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.retryable = retryable


# -- formats (pure)


def headline(event: dict[str, Any]) -> str:
    """One readable line: what happened to which ticket."""
    kind = event.get("type", "")
    ticket = event.get("ticket_id", "?")
    metric = str(event.get("metric", "")).replace("_", " ")
    sev = f"Sev{event.get('severity')}"
    if kind == "ticket.escalated":
        return f"{ticket} ({sev}) escalated to {event.get('to')} (level {event.get('level')})"
    if kind == "sla.breached":
        return f"{ticket} ({sev}) breached its {metric} target"
    if kind == "sla.warning":
        share = round(float(event.get("threshold", 0)) * 100)
        return f"{ticket} ({sev}) has used {share}% of its {metric} target"
    if kind == "customer.notification_required":
        return f"{ticket} ({sev}): tell the customer; estimated completion {event.get('eta')}"
    if kind == "sla.met":
        return f"{ticket} ({sev}) met its {metric} target"
    return f"{ticket} ({sev}) {kind}"


def details(event: dict[str, Any]) -> list[tuple[str, str]]:
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
    return [(k, str(v)) for k, v in pairs if v is not None]


def slack_message(event: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: a headline and a fields line (mrkdwn)."""
    icon = {"ticket.escalated": ":rotating_light:", "sla.breached": ":red_circle:"}.get(
        str(event.get("type")), ":warning:"
    )
    text = f"{icon} *{headline(event)}*\n" + " · ".join(f"{k}: `{v}`" for k, v in details(event))
    return {"text": text}


def email_message(event: dict[str, Any], channel: EmailChannel, name: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[Escalator] {headline(event)}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["Message-ID"] = f"<{event.get('event_id')}.{name}@escalator>"
    message["X-Escalator-Event-Id"] = str(event.get("event_id"))
    body = headline(event) + "\n\n" + "\n".join(f"{k}: {v}" for k, v in details(event))
    message.set_content(body + "\n")
    return message


PAGERDUTY_SEVERITY = {1: "critical", 2: "error", 3: "warning", 4: "info"}


def dedup_key(ticket_id: str, metric: str) -> str:
    return f"{ticket_id}:{metric}"


def pagerduty_trigger(event: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """PagerDuty Events API v2 `trigger` (one incident per ticket and metric)."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(str(event["ticket_id"]), str(event["metric"])),
        "payload": {
            "summary": headline(event)[:1024],
            "source": "escalator",
            "severity": PAGERDUTY_SEVERITY.get(int(event.get("severity", 3)), "warning"),
            "timestamp": event.get("at"),
            "component": str(event.get("metric")),
            "group": event.get("group"),
            "class": event.get("type"),
            "custom_details": {k: v for k, v in details(event)},
        },
    }


def pagerduty_resolve(ticket_id: str, metric: str, routing_key: str) -> dict[str, Any]:
    return {
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(ticket_id, metric),
    }


# -- senders


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        status = response.status
    if 200 <= status < 300:
        return
    retryable = status >= 500 or status in (408, 409, 425, 429)
    raise DeliveryFailed(f"HTTP {status}", retryable=retryable)


async def send(
    session: aiohttp.ClientSession,
    name: str,
    channel: Channel,
    event: dict[str, Any],
    raw: bytes,
    environ: dict[str, str],
) -> None:
    """One try of one delivery; raises DeliveryFailed, aiohttp/SMTP errors or a timeout."""
    key = str(event.get("event_id"))
    if isinstance(channel, WebhookChannel):
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            WEBHOOK_TIMESTAMP_HEADER: str(now),
            WEBHOOK_SIGNATURE_HEADER: sign_webhook(environ[channel.secret_env], now, raw),
        }
        await _post(session, channel.url, raw, headers)
    elif isinstance(channel, SlackChannel):
        body = orjson.dumps(slack_message(event))
        await _post(session, environ[channel.url_env], body, {"Content-Type": "application/json"})
    elif isinstance(channel, PagerDutyChannel):
        if event.get("type") == "pagerduty.resolve":
            body = orjson.dumps(
                pagerduty_resolve(
                    event["ticket_id"], event["metric"], environ[channel.routing_key_env]
                )
            )
        else:
            body = orjson.dumps(pagerduty_trigger(event, environ[channel.routing_key_env]))
        await _post(session, channel.url, body, {"Content-Type": "application/json"})
    else:
        password = environ.get(channel.password_env) if channel.password_env else None
        try:
            await aiosmtplib.send(
                email_message(event, channel, name),
                hostname=channel.host,
                port=channel.port,
                username=channel.username,
                password=password,
                start_tls=channel.starttls,
                timeout=channel.timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"SMTP {exc.code}", retryable=exc.code >= 400 and exc.code < 500
            ) from None
