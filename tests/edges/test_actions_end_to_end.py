"""Issue #25, "Done when": the example of docs/actions.md, run. A Zendesk-shaped webhook into
`escalator ingest`, the engine (`escalator run --clock wall`, the demo policy: a Sev1's first
response breaches after 8 s), `escalator notify` with deploy/examples/zendesk-actions.toml,
and a local Zendesk-shaped API (deploy/ticket_apis.py) that receives an internal note and the
tag `sla_breached` on ticket 5158, once each, and none of the ticket's own text."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from deploy.ticket_apis import SECRET_TEXT, TicketApi
from events.signatures import sign_zendesk
from streams.ingest.app import build_app
from streams.ingest.settings import IngestSettings
from tests.edges.test_notify import Harness, until
from tests.engine.helpers import REPO, Worker, new_topics

pytestmark = pytest.mark.kafka

EXAMPLES = REPO / "deploy" / "examples"


@pytest.fixture
async def zendesk() -> AsyncIterator[TicketApi]:
    api = await TicketApi("zendesk", "zd-demo-token").start()
    api.seed("5158").tags = ["printers", "sla_at_risk"]
    yield api
    await api.stop()


async def test_zendesk_webhook_breach_internal_note_and_tag(
    kafka_bootstrap: str, tmp_path: Path, zendesk: TicketApi
) -> None:
    topics = new_topics("actions-e2e", 1)
    worker = Worker(kafka_bootstrap, topics, tmp_path / "worker.log", clock="wall",
                    policy=EXAMPLES / "demo-policy.toml").start()  # fmt: skip
    try:
        worker.wait_ready(90)
        settings = IngestSettings(
            broker=kafka_bootstrap,
            ticket_topic=topics.input,
            dlq_topic=topics.dlq,
            secrets={"zendesk": "zd-demo-secret", "ack": "ack-demo-secret"},
            zammad_state=str(tmp_path / "zammad.sqlite3"),
        )
        ingest = TestServer(build_app(settings), host="127.0.0.1")
        await ingest.start_server()
        rules = (EXAMPLES / "zendesk-actions.toml").read_text()
        rules = rules.replace("http://127.0.0.1:9100", zendesk.url)
        env = {"ZENDESK_TOKEN": "zd-demo-token", "ESCALATOR_ACK_SECRET": "ack-demo-secret"}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = (EXAMPLES / "zendesk-ticket-created.json").read_text().replace("NOW", now).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature": sign_zendesk("zd-demo-secret", stamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        }
        async with Harness(kafka_bootstrap, topics.output, topics.input, rules, env,
                           topics.output + "-dlq.") as notifier:  # fmt: skip
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    ingest.make_url("/v1/webhooks/zendesk"), data=body, headers=headers
                ) as answer,  # fmt: skip
            ):
                assert answer.status == 200, await answer.text()
                assert await answer.json() == {
                    "taken": ["zendesk:cbe4028c-7239-495d-b020-f22348516046"]
                }
            # the first-response breach (8 s), the level-1 escalation (12 s)
            await until(lambda: len(zendesk.internal_notes("5158")) >= 2, timeout=60)
            await until(lambda: notifier.stats["delivered"] >= 2, timeout=10)
        await ingest.close()
    finally:
        worker.stop()
    ticket = zendesk.tickets["5158"]
    assert ticket.tags == ["printers", "sla_breached"]
    breach, escalation = zendesk.internal_notes("5158")[:2]
    assert breach["body"].startswith(
        "Escalator: zendesk-5158 (Sev1) breached its first response target\n"
    )
    assert escalation["body"].startswith(
        "Escalator: zendesk-5158 (Sev1) escalated to on-call-engineer (level 1)\n"
    )
    assert (
        "Acknowledge (stops this level's repeats): http://127.0.0.1:8090/v1/ack?"
        in (escalation["body"])
    )
    put = [s for s in zendesk.seen if s.method == "PUT"]
    assert put[0].body["ticket"]["additional_tags"] == ["sla_breached"]
    assert put[0].body["ticket"]["comment"]["public"] is False
    sent = b"".join(orjson.dumps(s.body) for s in zendesk.seen)
    for text in (SECRET_TEXT, "Printer on fire", "The printer is on fire"):
        assert text.encode() not in sent
    assert {s.status for s in zendesk.seen} == {200}


def test_the_docs_show_this_example() -> None:
    page = (REPO / "docs" / "actions.md").read_text()
    assert "deploy/examples/zendesk-actions.toml" in page
    assert "tests/edges/test_actions_end_to_end.py" in page
