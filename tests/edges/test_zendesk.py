"""Issue #20 (Zendesk): tags and channel, first reply, priorities, messaging, triggers.

Payloads are shaped as Zendesk documents them. Sources, cited per test:
- [ticket-events] Zendesk developer docs, "Webhook event types: Ticket events"
  (developer.zendesk.com/api-reference/webhooks/event-types/ticket-events): `detail` holds
  `tags` and `via.channel`; the `ticket.created` and `ticket.comment_added` examples
  (ticket 5158, event id cbe4028c-..., `created_at` equal to `updated_at` on creation) are as
  reproduced in dust-tt/dust front/lib/triggers/built-in-webhooks/zendesk/schemas/
  ticket_created.ts and ticket_comment_added.ts; `tests.edges.payloads.zendesk` is that shape.
- [messaging] Zendesk developer docs, "Webhook event types: Messaging events":
  `zen:event-type:messaging_ticket.message_added`, `event.actor.type` end_user, agent,
  trigger or system (the example below is the documented one, ticket 141).
- [first-reply] Zendesk help, "Calculating first reply time"
  (support.zendesk.com/hc/en-us/articles/4408821871642): "An agent creates a ticket. Timing
  starts when the ticket is created and ends at the agent's next public comment."; "About
  native Support time duration metrics" (article 4408834848154), first reply time,
  exceptions: "If the ticket is created by an agent and the first comment is public the
  second timestamp shifts to the second public agent comment."
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.codec import ticket_event_from_obj
from events.instants import parse_instant
from events.vendors import Unmappable, jsm, zammad, zendesk
from events.vendors.common import (
    DEFAULT_SEVERITY,
    PRIORITY_ABSENT,
    PRIORITY_UNKNOWN,
    TAGS_CLIPPED,
    severity_or_default,
)
from streams.ingest.zammad_store import ZammadStore
from streams.sla.policy import load_policy, parse_policy
from streams.sla.replay import Replayer
from tests.edges import payloads as p

AGENT = "8447388090494"  # the documented example's assignee, submitter and requester


def contract(events: list[dict[str, Any]]) -> list[str]:
    for ev in events:
        ticket_event_from_obj(ev)  # every mapped event honours the contract
        assert p.SECRET_TEXT not in orjson.dumps(ev).decode()
    return [ev["type"] for ev in events]


def comment(
    public: bool, staff: bool, updated_at: str, uid: str, at: str, **detail: Any
) -> dict[str, Any]:
    """A `ticket.comment_added` as [ticket-events] documents it (author id, is_staff, name)."""
    body = p.zendesk(
        "comment_added",
        {
            "comment": {
                "id": "9876543210",
                "body": p.SECRET_TEXT,
                "is_public": public,
                "author": {"id": AGENT, "is_staff": staff, "name": "Support Agent"},
            }
        },
        updated_at=updated_at,
        **detail,
    )
    body.update(id=uid, time=at)
    return body


# -- item 1: tags and channel


def test_created_carries_tags_and_via_channel_and_a_policy_selects_on_them() -> None:
    """[ticket-events] `ticket.created` with the documented tags ["mobile", "login"] and
    `via.channel` "web_service"; a policy matching tag "login" and channel "web_service"
    must time the ticket (before the fix neither field reached ticket.opened)."""
    body = p.zendesk("created", tags=["mobile", "login"], via={"channel": "web_service"})
    (opened,) = zendesk.map_payload(body).events
    contract([opened])
    assert opened["tags"] == ["mobile", "login"]
    assert opened["channel"] == "web_service"
    policy = parse_policy(
        """
name = "tagged"
version = "1"
[calendars.always]
timezone = "UTC"
hours = "24x7"
[[policies]]
name = "login-web"
calendar = "always"
match = { tags = ["login"], channel = ["web_service"] }
[policies.severity.2]
first_response = { target = "30m" }
[[policies]]
name = "fallback"
calendar = "always"
[policies.severity.2]
first_response = { target = "8h" }
""",
        "tagged.toml",
    )
    out = list(Replayer(policy).run([orjson.dumps(opened)], parse_instant("2026-12-01T00:00:00Z")))
    breached = [r for r in out if r["type"] == "sla.breached" and r["metric"] == "first_response"]
    # 30 min after the event's `time` (14:00:00.672717030Z), under the policy the tags chose
    assert [(r["policy"]["name"], r["at"]) for r in breached] == [
        ("login-web", "2026-11-30T14:30:00.672717Z")
    ]


def test_tags_changed_sends_ticket_updated_with_the_tags_and_the_severity() -> None:
    """[ticket-events] `ticket.tags_changed`: `detail.tags` is the ticket's tags after the
    change; a `sev1` tag overrides the priority HIGH."""
    mapped = zendesk.map_payload(p.zendesk("tags_changed", tags=["vip", "sev1"]))
    assert contract(mapped.events) == ["ticket.updated", "ticket.severity_changed"]
    updated, severity = mapped.events
    assert updated["tags"] == ["vip", "sev1"]
    assert severity["severity"] == 1
    assert len({ev["event_id"] for ev in mapped.events}) == 2
    cleared = zendesk.map_payload(p.zendesk("tags_changed", tags=[]))
    assert cleared.events[0]["tags"] == []  # all tags removed: the policy sees none
    assert cleared.events[1]["severity"] == 2  # back to HIGH's


def test_more_than_64_tags_keep_the_first_64_with_a_warning() -> None:
    tags = [f"t{n}" for n in range(70)]
    mapped = zendesk.map_payload(p.zendesk("created", tags=tags))
    contract(mapped.events)
    assert mapped.events[0]["tags"] == tags[:64]
    assert mapped.warnings == [TAGS_CLIPPED]


# -- item 2: first reply of a ticket an agent creates


def test_agent_created_ticket_meets_first_response_at_the_agents_next_public_comment() -> None:
    """[first-reply] An agent creates ticket 5158 at 14:00 with a public description: Zendesk
    sends `ticket.created` and a `ticket.comment_added` by the agent (is_staff true) in the
    same action (`updated_at` = `created_at`). The agent's next public comment at 14:20 is
    the first reply: Sev2 first response met after 1,200 s, not 0 s."""
    created = p.zendesk("created", submitter_id=AGENT, requester_id="8447388090999")
    description = comment(
        True, True, "2026-11-30T14:00:00Z", "d1", "2026-11-30T14:00:00.900000000Z"
    )
    reply = comment(True, True, "2026-11-30T14:20:00Z", "r1", "2026-11-30T14:20:00Z")
    assert zendesk.map_payload(description).ignored == zendesk.OPENING_COMMENT
    events = [
        ev for body in (created, description, reply) for ev in zendesk.map_payload(body).events
    ]
    assert contract(events) == ["ticket.opened", "ticket.responded"]
    out = list(
        Replayer(load_policy()).run(
            [orjson.dumps(ev) for ev in events], parse_instant("2026-12-01T00:00:00Z")
        )
    )
    met = [r for r in out if r["type"] == "sla.met" and r["metric"] == "first_response"]
    assert [(r["at"], round(r["took_seconds"])) for r in met] == [("2026-11-30T14:20:00Z", 1199)]


def test_a_customers_opening_comment_is_not_a_customer_reply() -> None:
    """[first-reply] A customer e-mail creates the ticket: its first comment is the
    description, not a reply (before the fix it was sent as ticket.customer_replied)."""
    opening = comment(True, False, "2026-11-30T14:00:00Z", "c0", "2026-11-30T14:00:00Z")
    assert zendesk.map_payload(opening).ignored == zendesk.OPENING_COMMENT
    later = comment(True, False, "2026-11-30T15:00:00Z", "c1", "2026-11-30T15:00:00Z")
    assert contract(zendesk.map_payload(later).events) == ["ticket.customer_replied"]


# -- item 5: Zendesk's four priorities, and the shared default


@pytest.mark.parametrize(
    ("priority", "severity"), [("URGENT", 1), ("HIGH", 2), ("NORMAL", 3), ("LOW", 4)]
)
def test_zendesks_four_priorities(priority: str, severity: int) -> None:
    """[ticket-events] `detail.priority` is one of URGENT, HIGH, NORMAL, LOW."""
    mapped = zendesk.map_payload(p.zendesk("created", priority=priority, tags=[]))
    assert mapped.events[0]["severity"] == severity
    assert mapped.warnings == []


@pytest.mark.parametrize(
    ("priority", "warning"),
    [(None, PRIORITY_ABSENT), ("", PRIORITY_ABSENT), ("ASAP", PRIORITY_UNKNOWN)],
)
def test_absent_or_unknown_priority_opens_at_the_default_severity_with_a_warning(
    priority: Any, warning: str
) -> None:
    """Zendesk's priority is optional (null when unset); an unknown one must not lose the
    ticket (it was dead-lettered before): Sev3 and a counted warning."""
    mapped = zendesk.map_payload(p.zendesk("created", priority=priority, tags=[]))
    assert contract(mapped.events) == ["ticket.opened"]
    assert mapped.events[0]["severity"] == DEFAULT_SEVERITY == 3
    assert mapped.warnings == [warning]
    changed = zendesk.map_payload(p.zendesk("priority_changed", priority=priority, tags=[]))
    assert changed.events[0]["severity"] == 3
    assert changed.warnings == [warning]


@pytest.mark.parametrize(
    ("priority", "severity"),
    [
        ("Highest", 1), ("High", 2), ("Medium", 3), ("Low", 4), ("Lowest", 4),  # Jira
        ("Blocker", 1), ("Critical", 1), ("Major", 3), ("Minor", 4), ("Trivial", 4),  # classic
        ("1 low", 4), ("2 normal", 3), ("3 high", 2),  # Zammad
    ],
)  # fmt: skip
def test_every_shipped_priority_of_the_three_vendors_is_mapped(
    priority: str, severity: int
) -> None:
    """Issue #20 item 5: Jira's shipped schemes and Zammad's three map without a warning."""
    assert severity_or_default(priority) == (severity, None)
    assert severity_or_default("sev-2", ["sev1"]) == (1, None)  # a tag needs no priority


# -- item 7: messaging, trigger webhooks


MESSAGE_ADDED: dict[str, Any] = {
    "account_id": 21825834,
    "detail": {"id": "141"},
    "event": {
        "actor": {"id": "zd:answerBot", "name": "Z3n Tests", "type": "system"},
        "conversation_id": "67ab5f53a96f98663935c3f2",
        "message": {"body": p.SECRET_TEXT, "id": "67ab5f55155becd183e284cb"},
    },
    "id": "01JQMQH83YNAKWSWJ8B1QH2NSC",
    "subject": "zen:ticket:141",
    "time": "2025-02-11T14:32:05.254571515Z",
    "type": "zen:event-type:messaging_ticket.message_added",
    "zendesk_event_version": "2022-11-06",
}
"""[messaging] the documented `message_added` example (its actor is the answer bot)."""


@pytest.mark.parametrize(
    ("actor", "expected"),
    [("agent", ["ticket.responded"]), ("end_user", ["ticket.customer_replied"])],
)
def test_messaging_replies_map_by_actor_type(actor: str, expected: list[str]) -> None:
    body = orjson.loads(orjson.dumps(MESSAGE_ADDED))
    body["event"]["actor"]["type"] = actor
    mapped = zendesk.map_payload(body)
    assert contract(mapped.events) == expected
    event = mapped.events[0]
    assert (event["ticket_id"], event["event_id"], event["occurred_at"]) == (
        "zendesk-141", "zendesk:01JQMQH83YNAKWSWJ8B1QH2NSC", "2025-02-11T14:32:05.254571+00:00",
    )  # fmt: skip


@pytest.mark.parametrize("actor", ["system", "trigger"])
def test_messaging_bot_and_trigger_messages_are_ignored_with_the_reason(actor: str) -> None:
    """[first-reply] "automated or bot-related actions in conversations aren't considered"."""
    body = orjson.loads(orjson.dumps(MESSAGE_ADDED))
    body["event"]["actor"]["type"] = actor
    assert zendesk.map_payload(body).ignored == zendesk.BOT_MESSAGE


PIPEDREAM_TRIGGER_BODY: dict[str, Any] = {
    "ticketId": "5158",
    "title": p.SECRET_TEXT,
    "description": p.SECRET_TEXT,
    "url": "acme.zendesk.com/agent/tickets/5158",
    "requester": "Emily Adams <emily@example.com>",
    "assignee": "Mia Krystof <mia@acme.example>",
    "status": "Open",
    "createdAt": "November 30, 2026 14:00",
    "updatedAt": "November 30, 2026 14:20",
    "ticketRequesterPhone": "+1 416 555 0199",
    "ticketLatestComment": p.SECRET_TEXT,
}
"""A Zendesk trigger webhook's body as rendered from the public Pipedream Zendesk source
(PipedreamHQ/pipedream components/zendesk/sources/common/ticket.mjs, getTriggerPayload: its
default keys, plus two `fields` placeholders, {{ticket.requester.phone}} and
{{ticket.latest_comment}}, named as it names them)."""


def test_a_trigger_webhook_body_is_refused_saying_triggers_are_unsupported() -> None:
    with pytest.raises(Unmappable) as refused:
        zendesk.map_payload(PIPEDREAM_TRIGGER_BODY)
    assert "trigger and automation webhooks" in str(refused.value)
    assert "not supported" in str(refused.value)
    with pytest.raises(Unmappable, match="is not a Zendesk ticket event"):
        zendesk.map_payload({"type": "zen:event-type:user.created", "detail": {}})


# -- issue #19 item 9: numbers out of range


@pytest.mark.parametrize(
    "time", [1e20, -1e16, 10**18, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
)
def test_time_out_of_range_is_unmappable_naming_the_field(time: Any) -> None:
    body = p.zendesk("created")
    body["time"] = time
    with pytest.raises(Unmappable, match="field 'time'"):
        zendesk.map_payload(body)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from([1e20, -1e16, 10**18, 253402300800000, -1, "1e20", "9999-12-31T23:59:59Z"]),
)


@given(JSON_SCALARS)
def test_any_json_time_of_any_vendor_maps_or_is_unmappable_never_an_error(value: Any) -> None:
    """Issue #19 item 9, as a property: whatever JSON scalar a signed payload puts in a
    vendor's time field (Zendesk `time`, JSM `timestamp`, Zammad `updated_at`), the adapter
    maps it or raises Unmappable naming that field; any other exception is a 500."""
    body = p.zendesk("created")
    body["time"] = value
    jira = p.jira("jira:issue_created", timestamp=value)
    snapshot = p.zammad("open", updated_at=value)
    for mapper, payload, name in (
        (zendesk.map_payload, body, "'time'"),
        (jsm.map_payload, jira, "'timestamp'"),
        (lambda b: zammad.map_payload(b, ZammadStore(":memory:")), snapshot, "'ticket.updated_at'"),
    ):
        try:
            events = mapper(payload).events
        except Unmappable as refused:
            assert name in str(refused)
        else:
            for ev in events:
                ticket_event_from_obj(ev)  # in the contract's range


def test_tags_the_contract_cannot_hold_are_left_out_not_the_ticket() -> None:
    """One rule for every vendor's tags (`common.tags_of`): an empty, over-long, repeated or
    control-character tag is left out; the ticket still opens (it was refused as a whole)."""
    tags = ["vip", "", "x" * 257, "bad\u0000", "vip", "sev2"]
    mapped = zendesk.map_payload(p.zendesk("created", tags=tags))
    contract(mapped.events)
    assert mapped.events[0]["tags"] == ["vip", "sev2"]
    assert mapped.events[0]["severity"] == 2
