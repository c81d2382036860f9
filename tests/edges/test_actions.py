"""Issue #25 §1: ticket actions against local receivers shaped like each vendor's API
(deploy/ticket_apis.py): the right calls per action, a redelivery writing no second note,
401 and 4xx failures that no retry can fix, and no ticket free text going out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from deploy.ticket_apis import SECRET_TEXT, TicketApi
from events.signatures import verify_ack
from streams.notify import actions
from streams.notify.channels import DeliveryFailed
from streams.notify.rules import RulesError, TicketChannel, parse_rules

TOKEN = "api-token-1"
ENV = {"VENDOR_TOKEN": TOKEN, "ACK_SECRET": "ack-secret-1"}
EVENT_ID = "5f1d3a52-0000-5000-8000-000000000101"


def breach(ticket: str, event_id: str = EVENT_ID, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "sla.breached",
        "ticket_id": ticket,
        "severity": 1,
        "metric": "resolution",
        "due_at": "2026-11-30T16:00:00Z",
        "at": "2026-11-30T16:00:00Z",
        "cycle": 0,
        "policy": {"name": "clevr-helpdesk", "version": "2026-11"},
        "customer_id": "8447346622462",
        "group": "8447320466430",
        "assignee": "8447388090494",
        **extra,
    }


def channel(kind: str, url: str, extra: str) -> TicketChannel:
    email = 'email = "bot@example.com"\n' if kind in ("zendesk", "jsm") else ""
    text = f"""
[channels.act]
kind = "{kind}"
url = "{url}"
token_env = "VENDOR_TOKEN"
{email}{extra}
[[rules]]
name = "all"
channels = ["act"]
"""
    chosen = parse_rules(text).channels["act"]
    assert not isinstance(chosen, str)
    return chosen  # type: ignore[return-value]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def api(vendor: str) -> TicketApi:
    return await TicketApi(vendor, TOKEN).start()


def sent(server: TicketApi) -> bytes:
    """Every byte we sent the vendor, bodies and paths."""
    return b"\n".join(orjson.dumps([s.path, s.query, s.body]) for s in server.seen)


async def test_zendesk_one_put_with_a_private_note_tags_priority_group_and_field(
    session: aiohttp.ClientSession,
) -> None:
    server = await api("zendesk")
    try:
        server.seed("5158")
        act = channel("zendesk", server.url, """add_tags = ["sla_breached"]
remove_tags = ["sla_at_risk"]
priority = "urgent"
group = 360001
fields = { "360005" = "breached" }
""")  # fmt: skip
        server.tickets["5158"].tags = ["vip", "sla_at_risk"]
        assert await actions.perform(session, act, breach("zendesk-5158"), ENV,
                                     actions.ZammadIds()) == 1  # fmt: skip
        get, put = server.seen
        assert (get.method, get.path, get.query["sort_order"]) == (
            "GET", "/api/v2/tickets/5158/comments", "desc")  # fmt: skip
        assert (put.method, put.path, put.status) == ("PUT", "/api/v2/tickets/5158", 200)
        update = put.body["ticket"]
        assert update["comment"]["public"] is False
        assert update["additional_tags"] == ["sla_breached"]
        assert update["remove_tags"] == ["sla_at_risk"]
        assert (update["priority"], update["group_id"]) == ("urgent", 360001)
        assert update["custom_fields"] == [{"id": 360005, "value": "breached"}]
        assert put.headers["Authorization"] == "Basic Ym90QGV4YW1wbGUuY29tL3Rva2VuOmFwaS10b2tlbi0x"
        ticket = server.tickets["5158"]
        assert ticket.tags == ["vip", "sla_breached"] and ticket.priority == "urgent"
        (note,) = server.internal_notes("5158")
        assert note["body"] == (
            "Escalator: zendesk-5158 (Sev1) breached its resolution target\n\n"
            "due: 2026-11-30T16:00:00Z\nfired: 2026-11-30T16:00:00Z\n"
            "customer: 8447346622462\ngroup: 8447320466430\nassignee: 8447388090494\n"
            "policy: clevr-helpdesk 2026-11\nevent: 5f1d3a52-0000-5000-8000-000000000101\n\n"
            "[escalator-event:5f1d3a52-0000-5000-8000-000000000101]"
        )
        # a redelivery: the note is found, nothing is written
        assert await actions.perform(session, act, breach("zendesk-5158"), ENV,
                                     actions.ZammadIds()) == 0  # fmt: skip
        assert len(server.writes()) == 1 and len(server.internal_notes("5158")) == 1
        assert SECRET_TEXT.encode() not in sent(server)
    finally:
        await server.stop()


async def test_jsm_edit_issue_then_internal_comment_idempotent(
    session: aiohttp.ClientSession,
) -> None:
    server = await api("jsm")
    try:
        server.seed("SUP-42")
        act = channel("jsm", server.url, """add_tags = ["sla_breached"]
remove_tags = ["sla_at_risk"]
priority = "Highest"
fields = { customfield_10050 = "breached" }
""")  # fmt: skip
        server.tickets["SUP-42"].tags = ["sla_at_risk"]
        assert await actions.perform(session, act, breach("SUP-42"), ENV, actions.ZammadIds()) == 2
        get, edit, comment = server.seen
        assert (get.method, get.path) == ("GET", "/rest/servicedeskapi/request/SUP-42/comment")
        assert (get.query["public"], get.query["internal"]) == ("false", "true")
        assert (edit.method, edit.path, edit.status) == ("PUT", "/rest/api/3/issue/SUP-42", 204)
        assert edit.body == {
            "update": {"labels": [{"add": "sla_breached"}, {"remove": "sla_at_risk"}]},
            "fields": {"customfield_10050": "breached", "priority": {"name": "Highest"}},
        }
        assert (comment.method, comment.status) == ("POST", 201)
        assert comment.body["public"] is False
        assert comment.body["body"].endswith(f"[escalator-event:{EVENT_ID}]")
        assert server.tickets["SUP-42"].tags == ["sla_breached"]
        assert await actions.perform(session, act, breach("SUP-42"), ENV, actions.ZammadIds()) == 0
        assert len(server.internal_notes("SUP-42")) == 1 and len(server.writes()) == 2
        assert SECRET_TEXT.encode() not in sent(server)
    finally:
        await server.stop()


async def test_zammad_finds_the_id_by_number_then_update_tags_and_internal_note(
    session: aiohttp.ClientSession,
) -> None:
    server = await api("zammad")
    try:
        server.seed("77", number="31001")  # Zammad's internal id 77, number 31001
        act = channel("zammad", server.url, """add_tags = ["sla_breached"]
remove_tags = ["sla_at_risk"]
priority = "3 high"
group = "Tier 2"
""")  # fmt: skip
        server.tickets["77"].tags = ["sla_at_risk"]
        ids = actions.ZammadIds()
        assert await actions.perform(session, act, breach("zammad-31001"), ENV, ids) == 4
        calls = [(s.method, s.path) for s in server.seen]
        assert calls == [
            ("GET", "/api/v1/tickets/search"),
            ("GET", "/api/v1/ticket_articles/by_ticket/77"),
            ("PUT", "/api/v1/tickets/77"),
            ("POST", "/api/v1/tags/add"),
            ("DELETE", "/api/v1/tags/remove"),
            ("POST", "/api/v1/ticket_articles"),
        ]
        assert server.seen[0].query["query"] == "number:31001"
        assert server.seen[2].body == {"priority": "3 high", "group": "Tier 2"}
        assert server.seen[3].body == {"object": "Ticket", "o_id": 77, "item": "sla_breached"}
        article = server.seen[5].body
        assert (article["ticket_id"], article["internal"], article["type"]) == (77, True, "note")
        assert server.seen[5].headers["Authorization"] == f"Token token={TOKEN}"
        ticket = server.tickets["77"]
        assert (ticket.tags, ticket.priority, ticket.group) == (["sla_breached"], "3 high",
                                                                "Tier 2")  # fmt: skip
        # the id is remembered; a redelivery reads the articles and writes nothing
        assert await actions.perform(session, act, breach("zammad-31001"), ENV, ids) == 0
        assert [s.path for s in server.seen[6:]] == ["/api/v1/ticket_articles/by_ticket/77"]
        assert SECRET_TEXT.encode() not in sent(server)
    finally:
        await server.stop()


@pytest.mark.parametrize("vendor", ["zendesk", "jsm", "zammad"])
async def test_401_and_validation_errors_are_permanent_and_name_only_the_call(
    session: aiohttp.ClientSession, vendor: str
) -> None:
    server = await api(vendor)
    ticket = {"zendesk": "zendesk-5", "jsm": "SUP-5", "zammad": "zammad-5"}[vendor]
    try:
        server.seed("SUP-5" if vendor == "jsm" else "5", number="5")
        bad_priority = {"zendesk": "normal", "jsm": "Urgentest", "zammad": "9 panic"}[vendor]
        act = channel(vendor, server.url, f'priority = "{bad_priority}"\n')
        wrong = {**ENV, "VENDOR_TOKEN": "wrong"}
        with pytest.raises(DeliveryFailed) as failed:
            await actions.perform(session, act, breach(ticket), wrong, actions.ZammadIds())
        assert failed.value.retryable is False
        assert str(failed.value).endswith("HTTP 401")
        if vendor != "zendesk":  # Zendesk's priorities are checked in the rules file
            with pytest.raises(DeliveryFailed) as invalid:
                await actions.perform(session, act, breach(ticket), ENV, actions.ZammadIds())
            assert invalid.value.retryable is False
            assert str(invalid.value) in ("jsm edit issue: HTTP 400", "zammad update: HTTP 422")
        server.throttle = [7]
        with pytest.raises(DeliveryFailed) as throttled:
            await actions.perform(session, act, breach(ticket), ENV, actions.ZammadIds())
        assert throttled.value.retryable and throttled.value.retry_after == 7.0
    finally:
        await server.stop()


async def test_another_vendors_ticket_is_skipped(session: aiohttp.ClientSession) -> None:
    act = channel("zendesk", "http://127.0.0.1:9", "")
    for ticket in ("SUP-1", "zammad-3", "zendesk-x1"):
        with pytest.raises(actions.Skipped):
            await actions.perform(session, act, breach(ticket), ENV, actions.ZammadIds())
    jsm = channel("jsm", "http://127.0.0.1:9", "")
    with pytest.raises(actions.Skipped):
        await actions.perform(session, jsm, breach("zendesk-1"), ENV, actions.ZammadIds())


def test_an_escalation_note_carries_a_signed_acknowledge_link() -> None:
    act = channel("zendesk", "http://127.0.0.1:9", """ack_url = "http://127.0.0.1:8090/v1/ack"
ack_secret_env = "ACK_SECRET"
ack_valid = 3600
""")  # fmt: skip
    escalation = breach("zendesk-5158", type="ticket.escalated", metric="escalation", level=2,
                        to="duty-manager")  # fmt: skip
    link = actions.ack_link(act, escalation, "ack-secret-1")
    assert link is not None
    expires = 1_796_054_400 + 3600  # 2026-11-30T16:00:00Z + 1 h
    prefix = f"http://127.0.0.1:8090/v1/ack?ticket=zendesk-5158&level=2&expires={expires}&sig="
    assert link.startswith(prefix)
    sig = link[len(prefix) :]
    assert verify_ack("ack-secret-1", "zendesk-5158", 2, expires, sig, expires)
    assert not verify_ack("ack-secret-1", "zendesk-5158", 1, expires, sig, expires)
    assert not verify_ack("ack-secret-1", "zendesk-5158", 2, expires, sig, expires + 1)
    assert actions.ack_link(act, breach("zendesk-5158"), "ack-secret-1") is None
    assert link in actions.note_text(escalation, link)


def test_rules_refuse_an_action_channel_that_does_nothing_or_a_bad_tag() -> None:
    base = '[channels.z]\nkind="zendesk"\nurl="http://x"\ntoken_env="T"\nemail="a@b.c"\n'
    rule = '[[rules]]\nname="r"\nchannels=["z"]\n'
    with pytest.raises(RulesError, match="does nothing"):
        parse_rules(base + "note=false\n" + rule)
    with pytest.raises(RulesError, match=r"add_tags.*tag 'sla breached'"):
        parse_rules(base + 'add_tags=["sla breached"]\n' + rule)
    with pytest.raises(RulesError, match=r"channels\.z\.zendesk\.priority"):
        parse_rules(base + 'priority="Highest"\n' + rule)
    with pytest.raises(RulesError, match=r"token: Extra inputs"):
        parse_rules(base + 'token="x"\n' + rule)


@pytest.mark.parametrize("vendor", ["zendesk", "jsm"])
async def test_the_check_reads_every_page_of_notes(
    session: aiohttp.ClientSession, vendor: str
) -> None:
    """250 notes on the ticket, the event's on the third page of 100 in the vendor's order
    (Zendesk's newest first: among the oldest; JSM's oldest first: among the newest): found,
    nothing written."""
    server = await api(vendor)
    try:
        ref, ticket_id = ("SUP-9", "SUP-9") if vendor == "jsm" else ("9", "zendesk-9")
        ticket = server.seed(ref)
        act = channel(vendor, server.url, 'add_tags = ["sla_breached"]\n')
        mark = actions.MARKER.format(EVENT_ID)
        marked = 240 if vendor == "jsm" else 3
        ticket.notes += [{"id": n, "body": f"note {n}" + (f"\n{mark}" if n == marked else ""),
                          "public": False} for n in range(2, 252)]  # fmt: skip
        assert await actions.perform(session, act, breach(ticket_id), ENV,
                                     actions.ZammadIds()) == 0  # fmt: skip
        assert [s.method for s in server.seen] == ["GET", "GET", "GET"]
        assert not server.writes()
    finally:
        await server.stop()
