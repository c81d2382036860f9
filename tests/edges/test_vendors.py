"""Issue #11 §1: vendor webhook payloads -> contract events (docs/ingest.md's mapping tables)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from events.codec import ticket_event_from_obj
from events.vendors import Unmappable, jsm, zammad, zendesk
from events.vendors.common import scrub, severity_of, transition
from streams.ingest.zammad_store import ZammadStore
from tests.edges import payloads as p


def kinds(events: list[dict[str, Any]]) -> list[str]:
    for ev in events:
        ticket_event_from_obj(ev)  # every mapped event honours the contract
        assert p.SECRET_TEXT not in orjson.dumps(ev).decode()
    return [ev["type"] for ev in events]


@pytest.mark.parametrize(
    ("priority", "tags", "severity"),
    [
        ("URGENT", [], 1), ("HIGH", [], 2), ("NORMAL", [], 3), ("LOW", [], 4),  # Zendesk
        ("Highest", [], 1), ("High", [], 2), ("Medium", [], 3), ("Low", [], 4), ("Lowest", [], 4),
        ("3 high", [], 2), ("2 normal", [], 3), ("1 low", [], 4),  # Zammad
        (None, [], 3), ("LOW", ["vip", "sev1"], 1), ("HIGH", ["Severity-4"], 4),
    ],
)  # fmt: skip
def test_severity_from_priority_or_sev_tag(priority: Any, tags: list[str], severity: int) -> None:
    assert severity_of(priority, tags) == severity


def test_unknown_priority_is_unmappable() -> None:
    with pytest.raises(Unmappable, match="priority 'whenever'"):
        severity_of("whenever")


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        ("open", "paused", ["ticket.paused"]),
        ("paused", "open", ["ticket.resumed"]),
        ("open", "resolved", ["ticket.resolved"]),
        ("paused", "resolved", ["ticket.resolved"]),
        ("resolved", "open", ["ticket.reopened"]),
        ("resolved", "paused", ["ticket.reopened", "ticket.paused"]),
        ("resolved", "closed", ["ticket.closed"]),
        ("closed", "open", []),
        ("open", "open", []),
        (None, "paused", ["ticket.paused"]),
        (None, "open", []),
    ],
)
def test_status_transitions(previous: Any, current: Any, expected: list[str]) -> None:
    assert transition(previous, current) == expected


# -- Zendesk


def test_zendesk_ticket_created_maps_priority_org_group_assignee() -> None:
    mapped = zendesk.map_payload(p.zendesk("created"))
    assert kinds(mapped.events) == ["ticket.opened"]
    opened = mapped.events[0]
    assert opened["ticket_id"] == "zendesk-5158"
    assert opened["event_id"] == "zendesk:cbe4028c-7239-495d-b020-f22348516046"
    assert opened["severity"] == 2
    assert opened["customer_id"] == "8447346622462"
    assert opened["group"] == "8447320466430"
    assert opened["assignee"] == "8447388090494"
    assert opened["occurred_at"] == "2026-11-30T14:00:00.672717+00:00"


def test_zendesk_created_already_pending_is_opened_then_paused() -> None:
    mapped = zendesk.map_payload(p.zendesk("created", status="PENDING"))
    assert kinds(mapped.events) == ["ticket.opened", "ticket.paused"]
    assert len({ev["event_id"] for ev in mapped.events}) == 2


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        ("OPEN", "PENDING", ["ticket.paused"]),
        ("PENDING", "OPEN", ["ticket.resumed"]),
        ("OPEN", "HOLD", []),
        ("OPEN", "SOLVED", ["ticket.resolved"]),
        ("SOLVED", "OPEN", ["ticket.reopened"]),
        ("SOLVED", "CLOSED", ["ticket.closed"]),
    ],
)
def test_zendesk_status_changed(previous: str, current: str, expected: list[str]) -> None:
    body = p.zendesk("status_changed", {"current": current, "previous": previous}, status=current)
    mapped = zendesk.map_payload(body)
    assert kinds(mapped.events) == expected
    assert (mapped.ignored is not None) == (not expected)


def test_zendesk_public_comment_is_a_response_or_a_customer_reply_by_its_author() -> None:
    def comment(public: bool, staff: bool | None) -> dict[str, Any]:
        author = {"id": "1", "is_staff": staff, "name": "Someone"}
        event = {
            "comment": {"id": "9", "body": p.SECRET_TEXT, "is_public": public, "author": author}
        }
        # a comment after the ticket's creation (Zendesk's comment_added example: updated_at
        # later than created_at); the opening comment is tests/edges/test_zendesk.py's
        return p.zendesk("comment_added", event, updated_at="2026-11-30T14:20:00Z")

    ignored = "not a public comment by a known author"
    assert kinds(zendesk.map_payload(comment(True, True)).events) == ["ticket.responded"]
    customer = zendesk.map_payload(comment(True, False)).events
    assert kinds(customer) == ["ticket.customer_replied"]
    assert p.SECRET_TEXT not in str(customer)  # ids and time only, never the comment
    assert zendesk.map_payload(comment(False, True)).ignored == ignored
    assert zendesk.map_payload(comment(False, False)).ignored == ignored  # internal note
    assert zendesk.map_payload(comment(True, None)).ignored == ignored  # author unknown


def test_zendesk_priority_group_and_agent_changes() -> None:
    raised = zendesk.map_payload(
        p.zendesk("priority_changed", {"current": "URGENT", "previous": "HIGH"}, priority="URGENT")
    )
    assert kinds(raised.events) == ["ticket.severity_changed"]
    assert raised.events[0]["severity"] == 1
    moved = zendesk.map_payload(p.zendesk("group_assignment_changed", group_id="42"))
    assert kinds(moved.events) == ["ticket.assigned"]
    assert moved.events[0]["group"] == "42"


def test_zendesk_subject_change_is_ignored_and_unknown_type_unmappable() -> None:
    assert zendesk.map_payload(p.zendesk("subject_changed")).ignored
    with pytest.raises(Unmappable, match="has no mapping"):
        zendesk.map_payload(p.zendesk("teleported"))
    with pytest.raises(Unmappable, match="not a Zendesk ticket event"):
        zendesk.map_payload({"type": "zen:event-type:user.created", "detail": {}})
    with pytest.raises(Unmappable, match="status 'ON_FIRE'"):
        zendesk.map_payload(p.zendesk("status_changed", {"current": "ON_FIRE", "previous": "OPEN"}))


# -- Jira Service Management


def test_jsm_issue_created() -> None:
    mapped = jsm.map_payload(p.jira("jira:issue_created"))
    assert kinds(mapped.events) == ["ticket.opened"]
    opened = mapped.events[0]
    assert opened["ticket_id"] == "SUP-42"
    assert (opened["severity"], opened["customer_id"], opened["group"], opened["assignee"]) == (
        2, "7", "10100", "5b10ac8d82e05b22cc7d4ef5",
    )  # fmt: skip
    assert opened["occurred_at"] == "2026-11-30T14:00:00+00:00"


@pytest.mark.parametrize(
    ("from_name", "to_name", "category", "expected"),
    [
        ("Waiting for support", "Waiting for customer", "indeterminate", ["ticket.paused"]),
        ("Waiting for customer", "Waiting for support", "indeterminate", ["ticket.resumed"]),
        ("In progress", "Resolved", "done", ["ticket.resolved"]),
        ("Resolved", "Waiting for support", "indeterminate", ["ticket.reopened"]),
        ("Open", "In progress", "indeterminate", []),
    ],
)
def test_jsm_status_changes(
    from_name: str, to_name: str, category: str, expected: list[str]
) -> None:
    mapped = jsm.map_payload(p.jira_status(from_name, to_name, category))
    assert kinds(mapped.events) == expected


def test_jsm_public_agent_comment_is_a_response_a_customers_a_reply_internal_neither() -> None:
    agent = jsm.map_payload(p.jira_comment(True, "atlassian"))
    assert kinds(agent.events) == ["ticket.responded"]
    assert agent.events[0]["occurred_at"] == "2026-11-30T14:20:00+00:00"
    assert jsm.map_payload(p.jira_comment(False, "atlassian")).ignored
    customer = jsm.map_payload(p.jira_comment(True, "customer")).events
    assert kinds(customer) == ["ticket.customer_replied"]
    assert customer[0]["occurred_at"] == "2026-11-30T14:20:00+00:00"
    assert jsm.map_payload(p.jira_comment(False, "customer")).ignored


def test_jsm_priority_change_and_unknown_event() -> None:
    body = p.jira("jira:issue_updated", changelog={"items": [{"field": "priority"}]})
    body["issue"]["fields"]["priority"] = {"name": "Highest"}
    mapped = jsm.map_payload(body)
    assert kinds(mapped.events) == ["ticket.severity_changed"]
    assert mapped.events[0]["severity"] == 1
    with pytest.raises(Unmappable, match="'sprint_started' has no mapping"):
        jsm.map_payload(p.jira("sprint_started"))


# -- Zammad


def zammad_map(payload: dict[str, Any], memory: ZammadStore) -> Any:
    return zammad.map_payload(payload, memory)


def test_zammad_new_ticket_then_pending_then_agent_reply_then_closed_then_reopened() -> None:
    memory = ZammadStore(":memory:")
    first = zammad_map(p.zammad("new"), memory)
    assert kinds(first.events) == ["ticket.opened", "ticket.severity_changed", "ticket.assigned"]
    opened = first.events[0]
    assert (opened["ticket_id"], opened["severity"], opened["customer_id"], opened["group"]) == (
        "zammad-10081", 3, "3", "3",
    )  # fmt: skip
    assert opened["assignee"] == "5"
    pending = zammad_map(p.zammad("pending reminder", "2026-11-30T14:10:00Z"), memory)
    assert kinds(pending.events)[-1] == "ticket.paused"
    reply = zammad_map(p.zammad_reply("open", "2026-11-30T14:25:00Z", "Agent"), memory)
    assert kinds(reply.events)[-2:] == ["ticket.responded", "ticket.resumed"]
    closed = zammad_map(p.zammad("closed", "2026-11-30T15:00:00Z"), memory)
    assert kinds(closed.events)[-1] == "ticket.resolved"
    reopened = zammad_map(p.zammad("open", "2026-11-30T16:00:00Z"), memory)
    assert kinds(reopened.events)[-1] == "ticket.reopened"
    # the opening only on the first webhook seen; later ones restate severity and assignment
    assert [kinds(r.events).count("ticket.opened") for r in (first, pending, reply)] == [1, 0, 0]
    assert kinds(pending.events)[:2] == ["ticket.severity_changed", "ticket.assigned"]


def test_zammad_internal_note_or_customer_article_is_not_a_response() -> None:
    memory = ZammadStore(":memory:")
    for article in (("Agent", True), ("Customer", False)):
        mapped = zammad_map(p.zammad_reply("open", "2026-11-30T14:25:00Z", *article), memory)
        assert "ticket.responded" not in kinds(mapped.events)


def test_zammad_public_customer_article_is_a_customer_reply() -> None:
    memory = ZammadStore(":memory:")
    zammad_map(p.zammad("open"), memory)
    mapped = zammad_map(p.zammad_reply("open", "2026-11-30T14:25:00Z", "Customer"), memory)
    assert kinds(mapped.events)[-1] == "ticket.customer_replied"
    assert mapped.events[-1]["event_id"] == "zammad:article:105"
    note = zammad_map(p.zammad_reply("open", "2026-11-30T14:26:00Z", "Customer", True, 106), memory)
    assert "ticket.customer_replied" not in kinds(note.events)


def test_zammad_retried_snapshot_restates_its_transition() -> None:
    """Kept before producing: a retry after a failed produce states the same pause again."""
    memory = ZammadStore(":memory:")
    zammad_map(p.zammad("open"), memory)
    lost = zammad.map_payload(p.zammad("pending reminder", "2026-11-30T14:10:00Z"), memory)
    assert kinds(lost.events)[-1] == "ticket.paused"  # ... but never produced (broker down)
    retried = zammad_map(p.zammad("pending reminder", "2026-11-30T14:10:00Z"), memory)
    assert retried.events == lost.events  # the redelivery pauses, with the same ids


def test_zammad_unknown_state_is_unmappable() -> None:
    with pytest.raises(Unmappable, match=r"'ticket\.state': 'exploded'"):
        zammad.map_payload(p.zammad("exploded"), ZammadStore(":memory:"))


def test_scrub_drops_free_text_keeps_ids() -> None:
    scrubbed = orjson.dumps(scrub(p.zammad("open", article=p.zammad_article("Agent", False))))
    assert p.SECRET_TEXT.encode() not in scrubbed
    assert b"emma@chrispresso.com" not in scrubbed
    assert b'"number":"10081"' in scrubbed


@pytest.mark.parametrize("header", ["Bearer été", "sha256=été", "été"])
def test_non_ascii_credentials_are_a_mismatch_not_an_error(header: str) -> None:
    """Issue #19 item 7: `Bearer été` raised TypeError in hmac.compare_digest (500)."""
    from events.signatures import verify_bearer, verify_hub, verify_zendesk

    assert not verify_bearer("token", header)
    assert not verify_hub("secret", b"{}", header, "sha256")
    assert not verify_zendesk("secret", "2026-11-30T14:00:00Z", b"{}", header, 1796047200)
