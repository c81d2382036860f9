"""Issue #25 §2 at the edge: PagerDuty's v3 `incident.acknowledged` webhook and the signed
acknowledge link, through `escalator ingest` to `ticket.escalation_acknowledged` on the broker.

PagerDuty's payload as its developer docs show it ("Webhooks v3 overview": `event.id`,
`event_type`, `resource_type`, `occurred_at`, `agent`, `data` the incident with
`incident_key`), signed as "Verifying signatures" says (`X-PagerDuty-Signature: v1=<hex
HMAC-SHA256 of the body>`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from events.signatures import sign_ack, sign_pagerduty
from events.vendors import pagerduty
from events.vendors.common import Unmappable
from streams.ingest.settings import IngestSettings
from tests.edges.test_ingest_http import Service, serving
from tests.engine.helpers import _read as read_records

pytestmark = pytest.mark.kafka

PD_SECRET = "pd-webhook-secret"
ACK_SECRET = "ack-link-secret"


def acknowledged(incident_key: str, kind: str = "incident.acknowledged") -> dict[str, Any]:
    return {
        "event": {
            "id": "01DEN4HPBQAAAG05V5QQYBRZMF",
            "event_type": kind,
            "resource_type": "incident",
            "occurred_at": "2026-11-30T16:40:00.000Z",
            "agent": {
                "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
                "id": "PLH1HKV",
                "self": "https://api.pagerduty.com/users/PLH1HKV",
                "summary": "Ana Example (a person's name: never kept)",
                "type": "user_reference",
            },
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "number": 2,
                "status": "acknowledged",
                "incident_key": incident_key,
                "title": "CUSTOMER-SECRET title",
                "urgency": "high",
            },
        }
    }


def test_pagerduty_adapter_maps_only_acknowledgements_of_our_incidents() -> None:
    (event,) = pagerduty.map_payload(acknowledged("zendesk-5158:escalation")).events
    assert event == {
        "event_id": "pagerduty:01DEN4HPBQAAAG05V5QQYBRZMF",
        "type": "ticket.escalation_acknowledged",
        "ticket_id": "zendesk-5158",
        "occurred_at": "2026-11-30T16:40:00+00:00",
        "source": "pagerduty",
        "actor": "PLH1HKV",
    }
    # a ticket id with colons: the metric is the last part
    (colons,) = pagerduty.map_payload(acknowledged("a:b:resolution")).events
    assert colons["ticket_id"] == "a:b"
    ignored = pagerduty.map_payload(acknowledged("zendesk-5158:escalation", "incident.resolved"))
    assert ignored.ignored == "incident.resolved has no SLA meaning" and not ignored.events
    with pytest.raises(Unmappable, match="incident_key': not an Escalator dedup key"):
        pagerduty.map_payload(acknowledged("d3640fbd41094207a1c11e58e46b1662"))


@pytest.fixture
async def service(
    kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path
) -> AsyncIterator[Service]:
    settings = IngestSettings(
        broker=kafka_bootstrap,
        ticket_topic=await kafka_topics.create("tickets", 1),
        dlq_topic=await kafka_topics.create("dlq", 1),
        secrets={"pagerduty": PD_SECRET, "ack": ACK_SECRET},
        zammad_state=str(tmp_path / "zammad.sqlite3"),
    )
    async with serving(settings) as service:
        yield service


async def test_pagerduty_webhook_signed_to_the_broker_and_unsigned_refused(
    service: Service,
) -> None:
    body = orjson.dumps(acknowledged("SUP-42:escalation"))
    status, _ = await service.post("/v1/webhooks/pagerduty", body,
                                   **{"X-PagerDuty-Signature": "v1=" + "0" * 64})  # fmt: skip
    assert status == 401
    rotated = f"v1={'1' * 64}, {sign_pagerduty(PD_SECRET, body)}"  # a secret being rotated
    status, answer = await service.post("/v1/webhooks/pagerduty", body,
                                        **{"X-PagerDuty-Signature": rotated})  # fmt: skip
    assert (status, answer) == (200, {"taken": ["pagerduty:01DEN4HPBQAAAG05V5QQYBRZMF"]})
    (record,) = await service.records(1)
    assert record.key == b"SUP-42"
    produced = orjson.loads(record.value)
    assert (produced["type"], produced["actor"]) == ("ticket.escalation_acknowledged", "PLH1HKV")
    assert b"CUSTOMER-SECRET" not in record.value and b"Ana" not in record.value


def link(ticket: str, level: int, expires: int, secret: str = ACK_SECRET) -> dict[str, str]:
    return {"ticket": ticket, "level": str(level), "expires": str(expires),
            "sig": sign_ack(secret, ticket, level, expires)}  # fmt: skip


async def test_signed_link_page_then_post_acknowledges_and_forgeries_are_403(
    service: Service,
) -> None:
    now = int(time.time())
    good = link("zendesk-5158", 1, now + 600)
    async with service.http.get(service.url + "/v1/ack", params=good) as page:
        assert page.status == 200
        text = await page.text()
    assert 'method="post"' in text and "level 1 of zendesk-5158" in text
    assert not await read_records(service.settings.broker, service.settings.ticket_topic, None,
                                  1.0, 0.5)  # a GET acknowledges nothing  # fmt: skip
    forged = [
        {**good, "level": "2"},  # another level, same signature
        {**good, "ticket": "zendesk-5159"},
        {**good, "expires": str(now + 6000)},  # a longer life
        link("zendesk-5158", 1, now - 1),  # expired
        link("zendesk-5158", 1, now + 600, secret="another-secret"),
        {k: v for k, v in good.items() if k != "sig"},
    ]
    for fields in forged:
        async with service.http.post(service.url + "/v1/ack", data=fields) as refused:
            assert refused.status == 403, fields
            assert await refused.json() == {"error": "acknowledge link not valid, or expired"}
    async with service.http.post(service.url + "/v1/ack", data=good) as taken:
        assert taken.status == 200
        (event_id,) = (await taken.json())["taken"]
    (record,) = await service.records(1)
    produced = orjson.loads(record.value)
    assert produced["event_id"] == event_id and record.key == b"zendesk-5158"
    assert (produced["type"], produced["level"], produced["actor"]) == (
        "ticket.escalation_acknowledged", 1, "ack-link")  # fmt: skip


def test_the_link_in_a_note_is_one_the_ingest_takes() -> None:
    from events.signatures import verify_ack
    from streams.notify import actions
    from streams.notify.rules import ZendeskChannel, parse_rules

    rules = parse_rules("""
[channels.z]
kind = "zendesk"
url = "http://127.0.0.1:9"
email = "a@b.c"
token_env = "T"
ack_url = "http://127.0.0.1:8090/v1/ack"
ack_secret_env = "ACK"
[[rules]]
name = "r"
channels = ["z"]
""")  # fmt: skip
    channel = rules.channels["z"]
    assert isinstance(channel, ZendeskChannel)
    event = {"type": "ticket.escalated", "ticket_id": "T 1/é", "level": 3,
             "at": "2026-11-30T16:00:00Z"}  # fmt: skip
    url = actions.ack_link(channel, event, ACK_SECRET)
    assert url is not None
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["ticket"] == "T 1/é"
    assert verify_ack(ACK_SECRET, query["ticket"], int(query["level"]), int(query["expires"]),
                      query["sig"], int(query["expires"]))  # fmt: skip
