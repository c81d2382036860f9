"""Webhook payloads shaped like the vendors' documented examples (ids and fields as theirs).

Zendesk: "Webhook event types: Ticket events" (zendesk_event_version 2022-11-06).
Jira: Jira Cloud webhook payloads (webhookEvent, timestamp, issue, changelog, comment).
Zammad: admin documentation, "Webhook payload" (trimmed to what matters; values as theirs).
Free text is present on purpose: tests check it never reaches Kafka.
"""

from __future__ import annotations

import copy
from typing import Any

SECRET_TEXT = "Customer says: my password is hunter2"


def zendesk(kind: str, event: dict[str, Any] | None = None, **detail: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account_id": 22129848,
        "detail": {
            "actor_id": "8447388090494",
            "assignee_id": "8447388090494",
            "brand_id": "8447346621310",
            "created_at": "2026-11-30T14:00:00Z",
            "custom_status": "8447320465790",
            "description": SECRET_TEXT,
            "external_id": None,
            "form_id": "8646151517822",
            "group_id": "8447320466430",
            "id": "5158",
            "is_public": True,
            "organization_id": "8447346622462",
            "priority": "HIGH",
            "requester_id": "8447388090494",
            "status": "NEW",
            "subject": SECRET_TEXT,
            "submitter_id": "8447388090494",
            "tags": ["vip"],
            "type": "INCIDENT",
            "updated_at": "2026-11-30T14:00:00Z",
            "via": {"channel": "web_service"},
        },
        "event": event or {},
        "id": "cbe4028c-7239-495d-b020-f22348516046",
        "subject": "zen:ticket:5158",
        "time": "2026-11-30T14:00:00.672717030Z",
        "type": f"zen:event-type:ticket.{kind}",
        "zendesk_event_version": "2022-11-06",
    }
    body["detail"].update(detail)
    return body


def jira(kind: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestamp": 1796047200000,  # 2026-11-30T14:00:00Z
        "webhookEvent": kind,
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Agent Smith"},
        "issue": {
            "id": "10042",
            "key": "SUP-42",
            "fields": {
                "summary": SECRET_TEXT,
                "description": SECRET_TEXT,
                "priority": {"id": "2", "name": "High"},
                "status": {
                    "name": "Waiting for support",
                    "statusCategory": {"key": "indeterminate", "name": "In Progress"},
                },
                "assignee": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Mia"},
                "labels": [],
                "components": [{"id": "10100", "name": "Payments"}],
                "customfield_10002": [{"id": "7", "name": "Acme Corp"}],
                "created": "2026-11-30T14:00:00.000+0000",
            },
        },
    }
    body.update(extra)
    return body


def jira_status(from_name: str, to_name: str, to_category: str) -> dict[str, Any]:
    body = jira(
        "jira:issue_updated",
        changelog={
            "id": "10130",
            "items": [
                {
                    "field": "status",
                    "fieldtype": "jira",
                    "fromString": from_name,
                    "toString": to_name,
                }
            ],
        },
    )
    body["issue"]["fields"]["status"] = {
        "name": to_name,
        "statusCategory": {"key": to_category},
    }
    return body


def jira_comment(public: bool, account_type: str) -> dict[str, Any]:
    return jira(
        "comment_created",
        comment={
            "id": "10500",
            "body": SECRET_TEXT,
            "author": {"accountId": "x", "accountType": account_type, "displayName": "Someone"},
            "jsdPublic": public,
            "created": "2026-11-30T14:20:00.000+0000",
        },
    )


ZAMMAD_TICKET: dict[str, Any] = {
    "article_count": 1,
    "article_ids": [104],
    "create_article_sender": "Customer",
    "created_at": "2026-11-30T14:00:00.282Z",
    "customer_id": 8,
    "group": {"id": 3, "name": "Service Desk"},
    "group_id": 3,
    "id": 81,
    "number": "10081",
    "organization": {"id": 3, "name": "Awesome Customer Inc.", "note": SECRET_TEXT},
    "organization_id": 3,
    "owner": {"id": 5, "login": "emma@chrispresso.com"},
    "owner_id": 5,
    "priority": {"id": 2, "name": "2 normal"},
    "priority_id": 2,
    "state": "open",
    "state_id": 2,
    "title": SECRET_TEXT,
    "updated_at": "2026-11-30T14:00:00.333Z",
}


def zammad(
    state: str = "open",
    updated_at: str = "2026-11-30T14:00:00.333Z",
    article: dict[str, Any] | None = None,
    **ticket: Any,
) -> dict[str, Any]:
    body = {"ticket": copy.deepcopy(ZAMMAD_TICKET)}
    body["ticket"].update(state=state, updated_at=updated_at, **ticket)
    if article is not None:
        body["article"] = article
    return body


def zammad_article(
    sender: str, internal: bool, article_id: int = 105, created_at: str = "2026-11-30T14:25:00.318Z"
) -> dict[str, Any]:
    """An article as in the documented payload; 104 is the documented ticket's opening one
    (`article_ids: [104]`), so a later article (a reply) defaults to 105."""
    return {
        "body": SECRET_TEXT,
        "content_type": "text/html",
        "created_at": created_at,
        "from": "Emma Taylor <emma@chrispresso.com>",
        "id": article_id,
        "internal": internal,
        "sender": sender,
        "ticket_id": 81,
        "type": "email",
    }


def zammad_reply(
    state: str, updated_at: str, sender: str, internal: bool = False, article_id: int = 105
) -> dict[str, Any]:
    """A snapshot caused by article `article_id`, the ticket's articles 104 up to it."""
    ids = list(range(104, article_id + 1))
    article = zammad_article(sender, internal, article_id, updated_at)
    return zammad(state, updated_at, article, article_count=len(ids), article_ids=ids)
