"""Issue #20 item 6: a dead-lettered vendor payload keeps what a fixed adapter needs, no more.

`events.vendors.common.scrub` is an allow-list: ids, event kinds, statuses, priorities,
times, tags, group and organisation ids. Each vendor's payload below carries names, e-mail
addresses, a phone number and free text as the vendor documents them; none may survive, and
the scrubbed payload must still map to exactly the events the original maps to (so a fixed
adapter can replay the dead letters). Sources:
- Zendesk trigger body: the public Pipedream Zendesk source (tests/edges/test_zendesk.py,
  PIPEDREAM_TRIGGER_BODY); Zendesk event payloads: "Webhook event types: Ticket events".
- Zammad: admin documentation, "Webhook payload", default JSON payload (the example's
  customer Emily Adams, emily@example.com, phone 0061 2 1234 7777, address Bennelong Point,
  her note, the creator chris@chrispresso.com; the article's from/to/body).
- JSM: Atlassian, Jira Cloud webhooks (`user`, `issue.fields` with the assignee's
  displayName and emailAddress, `changelog.items`, `comment`).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from events.vendors import jsm, zammad, zendesk
from events.vendors.common import DROPPED, scrub
from streams.ingest.zammad_store import ZammadStore
from tests.edges import payloads as p
from tests.edges.test_zendesk import MESSAGE_ADDED, PIPEDREAM_TRIGGER_BODY

PERSONAL = (
    p.SECRET_TEXT,
    "emily@example.com",
    "chris@chrispresso.com",
    "emma@chrispresso.com",
    "mia@acme.example",
    "0061 2 1234 7777",
    "+1 416 555 0199",
    "Bennelong Point",
    "café au lait",
    "Emily",
    "Adams",
    "Christopher",
    "Mia Krystof",
    "Agent Smith",
    "Support Agent",
    "Awesome Customer Inc.",
    "Acme Corp",
    "Z3n Tests",
)


def no_personal_data(scrubbed: Any) -> bytes:
    text = orjson.dumps(scrubbed)
    for value in PERSONAL:
        assert value.encode() not in text, value
    return text


def zammad_documented() -> dict[str, Any]:
    """The documented default payload's personal parts, on our ticket 10081."""
    body = p.zammad("open", article=p.zammad_article("Customer", False), tags=["vip"])
    ticket = body["ticket"]
    ticket["customer"] = {
        "active": True,
        "address": "Bennelong Point\nSydney NSW 2000",
        "email": "emily@example.com",
        "firstname": "Emily",
        "id": 8,
        "lastname": "Adams",
        "login": "emily@example.com",
        "note": "did order café au lait, ask next time if the flavor was as expected",
        "organization": "Awesome Customer Inc.",
        "organization_id": 3,
        "phone": "0061 2 1234 7777",
        "roles": ["Customer"],
    }
    ticket["created_by"] = {
        "email": "chris@chrispresso.com",
        "firstname": "Christopher",
        "id": 3,
        "lastname": "Miller",
        "login": "chris@chrispresso.com",
    }
    ticket["created_by_id"] = 3
    body["article"]["to"] = "Emily Adams <emily@example.com>"
    body["article"]["subject"] = p.SECRET_TEXT
    return body


def jira_documented() -> dict[str, Any]:
    body = p.jira_status("Waiting for support", "Waiting for customer", "indeterminate")
    body["user"]["emailAddress"] = "mia@acme.example"
    fields = body["issue"]["fields"]
    fields["assignee"] = {
        "accountId": "5b10ac8d82e05b22cc7d4ef5",
        "displayName": "Mia Krystof",
        "emailAddress": "mia@acme.example",
    }
    fields["labels"] = ["vip"]
    fields["customfield_10050"] = "+1 416 555 0199"  # a free-text custom field
    body["changelog"]["items"] += [
        {"field": "summary", "fromString": p.SECRET_TEXT, "toString": p.SECRET_TEXT},
        {"field": "assignee", "from": None, "fromString": None, "to": "5b10ac8d82e05b22cc7d4ef5",
         "toString": "Mia Krystof"},
    ]  # fmt: skip
    return body


def test_zendesk_trigger_body_keeps_its_ids_status_and_times_only() -> None:
    scrubbed = scrub(PIPEDREAM_TRIGGER_BODY)
    no_personal_data(scrubbed)
    assert scrubbed["ticketId"] == "5158"
    assert scrubbed["status"] == "Open"
    assert scrubbed["updatedAt"] == "November 30, 2026 14:20"
    for key in ("requester", "assignee", "ticketRequesterPhone", "ticketLatestComment", "title"):
        assert scrubbed[key] == DROPPED


@pytest.mark.parametrize(
    "body",
    [
        p.zendesk("created", tags=["vip", "sev1"], external_id="emily@example.com"),  # kept key
        p.zendesk("status_changed", {"current": "PENDING", "previous": "OPEN"}, status="PENDING"),
        p.zendesk(
            "comment_added",
            {
                "comment": {
                    "id": "9",
                    "body": p.SECRET_TEXT,
                    "is_public": True,
                    "author": {"id": "1", "is_staff": True, "name": "Support Agent"},
                }
            },
            updated_at="2026-11-30T14:20:00Z",
        ),
        p.zendesk("subject_changed", {"current": p.SECRET_TEXT, "previous": p.SECRET_TEXT}),
        MESSAGE_ADDED,
    ],
    ids=["created", "status_changed", "comment_added", "subject_changed", "message_added"],
)
def test_scrubbed_zendesk_payload_maps_as_the_original(body: dict[str, Any]) -> None:
    scrubbed = scrub(body)
    no_personal_data(scrubbed)
    assert zendesk.map_payload(scrubbed) == zendesk.map_payload(body)


def test_scrubbed_zammad_payload_has_no_personal_data_and_maps_as_the_original() -> None:
    body = zammad_documented()
    scrubbed = scrub(body)
    text = no_personal_data(scrubbed)
    ticket = scrubbed["ticket"]
    assert (ticket["id"], ticket["number"], ticket["state"], ticket["tags"]) == (
        81, "10081", "open", ["vip"],
    )  # fmt: skip
    assert ticket["priority"] == {"id": 2, "name": "2 normal"}
    assert (ticket["customer_id"], ticket["organization_id"], ticket["owner_id"]) == (8, 3, 5)
    assert ticket["customer"] == ticket["created_by"] == ticket["owner"] == DROPPED
    assert scrubbed["article"]["sender"] == "Customer" and b'"internal":false' in text

    def mapped(payload: dict[str, Any]) -> list[dict[str, Any]]:
        return zammad.map_payload(payload, ZammadStore(":memory:")).events

    assert mapped(scrubbed) == mapped(copy.deepcopy(body))


def test_scrubbed_jsm_payload_has_no_personal_data_and_maps_as_the_original() -> None:
    for body in (
        jira_documented(),
        p.jira("jira:issue_created"),
        p.jira_comment(True, "customer"),
    ):
        scrubbed = scrub(body)
        no_personal_data(scrubbed)
        assert jsm.map_payload(scrubbed) == jsm.map_payload(body)
    scrubbed = scrub(jira_documented())
    fields = scrubbed["issue"]["fields"]
    assert fields["assignee"]["accountId"] == "5b10ac8d82e05b22cc7d4ef5"
    assert fields["customfield_10002"] == [{"id": "7", "name": DROPPED}]
    assert fields["customfield_10050"] == DROPPED
    status, summary, assignee = scrubbed["changelog"]["items"]
    assert (status["fromString"], status["toString"]) == (
        "Waiting for support", "Waiting for customer",
    )  # fmt: skip
    assert summary["fromString"] == summary["toString"] == DROPPED
    assert (assignee["to"], assignee["toString"]) == ("5b10ac8d82e05b22cc7d4ef5", DROPPED)
