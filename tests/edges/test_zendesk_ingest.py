"""Issue #20 (Zendesk) and #19 item 9 through `escalator ingest` and the real broker.

Signed as Zendesk documents ("Verifying webhook authenticity": base64 HMAC-SHA256 of the
timestamp header and the body). Payloads: tests/edges/test_zendesk.py and payloads.py.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from events.signatures import sign_zendesk
from tests.edges import payloads as p
from tests.edges import test_ingest_http
from tests.edges.test_ingest_http import Service
from tests.edges.test_zendesk import PIPEDREAM_TRIGGER_BODY

pytestmark = pytest.mark.kafka
service = test_ingest_http.service  # the ingest on the broker, as there


async def post_zendesk(service: Service, payload: Any) -> tuple[int, dict[str, Any]]:
    body = orjson.dumps(payload)
    stamp = str(int(time.time()))
    return await service.post(
        "/v1/webhooks/zendesk",
        body,
        **{
            "X-Zendesk-Webhook-Signature": sign_zendesk("zd-secret", stamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        },
    )


async def metrics(service: Service) -> str:
    async with service.http.get(service.url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


@pytest.mark.parametrize("value", [1e20, -1e16, 10**18])
async def test_signed_time_out_of_range_is_a_202_dead_letter_naming_the_field(
    service: Service, value: Any
) -> None:
    """Issue #19 item 9: `time` 1e20 gave 500 (OSError), which Zendesk retries for ever."""
    body = p.zendesk("created")
    body["time"] = value
    status, answer = await post_zendesk(service, body)
    assert status == 202
    assert answer["dead_lettered"].startswith("field 'time': ")
    (record,) = await service.records(1, service.settings.dlq_topic)
    assert dict(record.headers)["escalator.reason"].startswith(b"field 'time': ")
    assert orjson.loads(record.value)["time"] == value  # kept: it is why the payload failed


async def test_trigger_body_is_dead_lettered_as_unsupported_without_personal_data(
    service: Service,
) -> None:
    status, answer = await post_zendesk(service, PIPEDREAM_TRIGGER_BODY)
    assert status == 202
    assert "trigger and automation webhooks" in answer["dead_lettered"]
    (record,) = await service.records(1, service.settings.dlq_topic)
    for personal in (p.SECRET_TEXT, "emily@example.com", "mia@acme.example", "+1 416 555 0199"):
        assert personal.encode() not in record.value
    assert orjson.loads(record.value)["ticketId"] == "5158"
    assert 'escalator_ingest_dead_letters_total{source="zendesk"} 1.0' in await metrics(service)


async def test_unknown_priority_opens_the_ticket_and_counts_a_warning(service: Service) -> None:
    status, answer = await post_zendesk(service, p.zendesk("created", priority="ASAP", tags=[]))
    assert status == 200
    (record,) = await service.records(1)
    opened = orjson.loads(record.value)
    assert (opened["type"], opened["severity"], opened["tags"]) == ("ticket.opened", 3, [])
    assert opened["channel"] == "web_service"
    text = await metrics(service)
    warned = 'escalator_ingest_warnings_total{reason="priority unknown",source="zendesk"} 1.0'
    assert warned in text
    status, answer = await post_zendesk(service, p.zendesk("subject_changed"))
    reason = "zen:event-type:ticket.subject_changed has no SLA meaning"
    assert (status, answer) == (200, {"ignored": reason})
    ignored = f'escalator_ingest_ignored_total{{reason="{reason}",source="zendesk"}} 1.0'
    assert ignored in await metrics(service)
