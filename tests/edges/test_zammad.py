"""Issue #20 (items 1, 3, 5, 7) and #19 (items 8, 9) for Zammad: what Zammad really sends.

Payloads: `tests.edges.payloads.zammad`, the ticket of Zammad's documented example payload
(zammad-admin-documentation, manage/webhook/payload.rst: ticket 81, number 10081, priority
"2 normal", opening article 104 by the customer, `article_ids: [104]`), with its headers
(`X-Zammad-Delivery`, `X-Hub-Signature: sha1=...`) as that page lists them.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from events.codec import ticket_event_from_obj
from events.signatures import sign_hub
from events.vendors import Unmappable, zammad
from streams.ingest.app import build_app
from streams.ingest.settings import IngestSettings
from streams.ingest.zammad_store import ZammadStore
from streams.sla.policy import parse_policy
from streams.sla.replay import replay_lines
from tests.edges import payloads as p
from tests.edges.ingest_process import IngestProcess
from tests.engine.helpers import _read as read_records

SECRET = "zm-secret"
POLICY = parse_policy(
    """
name = "zammad"
version = "1"
[calendar]
timezone = "UTC"
hours = "24x7"
[severity.2]
resolution = { target = "1h", pausable = true }
[severity.3]
resolution = { target = "2h", pausable = true }
[severity.4]
resolution = { target = "4h", pausable = true }
""",
    "zammad.toml",
)

# Issue #20 item 3: the ticket opens 14:00 (created_at 14:00:00.282), waits on the customer
# 14:10-14:30; a second snapshot of 14:20 (pending reminder) arrives after the 14:30 one;
# then the genuine change to pending reminder at 15:00, and back to open at 15:30.
# Resolution 2h pausable: 9m59.718s + 30m used by 15:00, the rest from 15:30: due 16:50:00.282.
# Before the fix the late 14:20 snapshot left "paused" in memory: no pause at 15:00, and the
# breach came at 16:20:00.282 while the ticket was waiting on the customer.
SNAPSHOTS_BEFORE = [
    p.zammad("new"),
    p.zammad("pending reminder", "2026-11-30T14:10:00.000Z"),
    p.zammad("open", "2026-11-30T14:30:00.000Z"),
    p.zammad("pending reminder", "2026-11-30T14:20:00.000Z"),  # late
    p.zammad("pending reminder", "2026-11-30T15:00:00.000Z"),  # the genuine pause
]
SNAPSHOTS_AFTER = [p.zammad("open", "2026-11-30T15:30:00.000Z")]
DUE = "2026-11-30T16:50:00.282000Z"
UNTIL = "2026-11-30T18:00:00Z"


def sla_outcome(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(type, metric, due_at) of the resolution's decisions, the core run on `events`."""
    lines = [orjson.dumps(event) for event in events]
    out = replay_lines(lines, POLICY, until=parse(UNTIL), max_delay=0)
    return [
        (r["type"], r["metric"], r["due_at"])
        for r in out
        if r["type"] in ("sla.breached", "sla.met", "sla.retracted")
    ]


def parse(text: str) -> int:
    from events.instants import parse_rfc3339

    return parse_rfc3339(text)


def test_a_late_snapshot_does_not_lose_the_next_pause() -> None:
    memory = ZammadStore(":memory:")
    events: list[dict[str, Any]] = []
    for snapshot in SNAPSHOTS_BEFORE + SNAPSHOTS_AFTER:
        events += zammad.map_payload(snapshot, memory).events
    for event in events:
        ticket_event_from_obj(event)
    pauses = [e["occurred_at"] for e in events if e["type"] == "ticket.paused"]
    assert pauses[-1] == "2026-11-30T15:00:00+00:00"
    assert sla_outcome(events) == [("sla.breached", "resolution", DUE)]


def test_a_late_snapshot_between_two_known_places_its_own_pause() -> None:
    """open 14:00, open 14:30 known; a pending reminder of 14:10 arriving late is a pause at
    14:10 and a resume at 14:30 (the ticket waited 20 minutes, whatever the arrival order)."""
    memory = ZammadStore(":memory:")
    zammad.map_payload(p.zammad("new"), memory)
    zammad.map_payload(p.zammad("open", "2026-11-30T14:30:00.000Z"), memory)
    late = zammad.map_payload(p.zammad("pending reminder", "2026-11-30T14:10:00.000Z"), memory)
    assert [(e["type"], e["occurred_at"]) for e in late.events[2:]] == [
        ("ticket.paused", "2026-11-30T14:10:00+00:00"),
        ("ticket.resumed", "2026-11-30T14:30:00Z"),
    ]


def test_the_documented_opening_article_is_not_a_reply() -> None:
    """Issue #20 item 7: the documented payload's article 104 (sender Customer, the ticket's
    only one) opened the ticket; an agent-created ticket's opening article is no response."""
    memory = ZammadStore(":memory:")
    by_customer = p.zammad("new", article=p.zammad_article("Customer", False, 104))
    assert [e["type"] for e in zammad.map_payload(by_customer, memory).events] == [
        "ticket.opened", "ticket.severity_changed", "ticket.assigned",
    ]  # fmt: skip
    by_agent = p.zammad(
        "open",
        "2026-11-30T14:00:01Z",
        p.zammad_article("Agent", False, 104),
        create_article_sender="Agent",
    )
    kinds = [e["type"] for e in zammad.map_payload(by_agent, memory).events]
    assert "ticket.responded" not in kinds
    reply = zammad.map_payload(p.zammad_reply("open", "2026-11-30T14:05:00Z", "Customer"), memory)
    assert [e["type"] for e in reply.events][-1] == "ticket.customer_replied"


@pytest.mark.parametrize(
    ("priority", "severity", "warnings"),
    [
        ("1 low", 4, []),
        ("2 normal", 3, []),
        ("3 high", 2, []),
        ("4 whenever", 3, ["priority unknown"]),
    ],
)
def test_zammad_default_priorities_and_an_unknown_one(
    priority: str, severity: int, warnings: list[str]
) -> None:
    """Issue #20 item 5: Zammad ships "1 low", "2 normal", "3 high" (ids 1-3)."""
    mapped = zammad.map_payload(
        p.zammad("new", priority={"id": 4, "name": priority}), ZammadStore(":memory:")
    )
    assert (mapped.events[0]["type"], mapped.events[0]["severity"]) == ("ticket.opened", severity)
    assert mapped.warnings == warnings


def test_tags_are_mapped_when_the_payload_has_them() -> None:
    """Issue #20 item 1: the default payload has no `tags` (none fetched: opened without);
    a `ticket.tags` array (a custom payload) opens with them and restates them."""
    plain = zammad.map_payload(p.zammad("new"), ZammadStore(":memory:"))
    assert "tags" not in plain.events[0]
    tagged = zammad.map_payload(
        p.zammad("new", tags=["vip", "billing", "vip", ""]), ZammadStore(":memory:")
    )
    assert tagged.events[0]["tags"] == ["vip", "billing"]
    updated = [e for e in tagged.events if e["type"] == "ticket.updated"]
    assert [e["tags"] for e in updated] == [["vip", "billing"]]


@pytest.mark.parametrize("value", [1e20, -1e16, 10**18])
def test_a_numeric_updated_at_out_of_range_is_unmappable_naming_the_field(value: Any) -> None:
    with pytest.raises(Unmappable, match=r"'ticket\.updated_at'"):
        zammad.map_payload(p.zammad("open", updated_at=value), ZammadStore(":memory:"))


def test_the_memory_is_bounded_and_an_older_snapshot_than_all_kept_states_nothing() -> None:
    memory = ZammadStore(":memory:")
    zammad.map_payload(p.zammad("new"), memory)
    for minute in range(1, zammad.KEEP + 2):
        zammad.map_payload(p.zammad("open", f"2026-11-30T15:{minute:02d}:00Z"), memory)
    known = memory.known("zammad-10081")
    assert known is not None and len(known.seen) == zammad.KEEP
    old = zammad.map_payload(p.zammad("pending reminder", "2026-11-30T14:10:00Z"), memory)
    assert (old.events, old.ignored) == (
        [],
        "a snapshot older than the 16 kept for ticket zammad-10081",
    )
    assert memory.known("zammad-10081") == known


# -- over HTTP and Kafka


@pytest.fixture
async def service(
    kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path
) -> AsyncIterator[tuple[str, IngestSettings, aiohttp.ClientSession]]:
    settings = IngestSettings(
        broker=kafka_bootstrap,
        ticket_topic=await kafka_topics.create("tickets", 3),
        dlq_topic=await kafka_topics.create("dlq", 1),
        secrets={"zammad": SECRET},
        zammad_state=str(tmp_path / "zammad.sqlite3"),
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield str(server.make_url("/v1/webhooks/zammad")), settings, http
    await server.close()


def signed(body: bytes, delivery: str | None = None) -> dict[str, str]:
    """Zammad's headers (manage/webhook/payload.rst): a delivery id and the HMAC-SHA1."""
    return {
        "User-Agent": "Zammad User Agent",
        "X-Zammad-Trigger": "escalator",
        "X-Zammad-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature": sign_hub(SECRET, body, "sha1"),
        "Content-Type": "application/json",
    }


async def post(
    http: aiohttp.ClientSession, url: str, payload: dict[str, Any], delivery: str | None = None
) -> tuple[int, dict[str, Any]]:
    body = orjson.dumps(payload)
    async with http.post(url, data=body, headers=signed(body, delivery)) as response:
        return response.status, orjson.loads(await response.read())


@pytest.mark.kafka
async def test_a_replayed_old_webhook_injects_no_reopen(
    service: tuple[str, IngestSettings, aiohttp.ClientSession],
) -> None:
    """Issue #19 item 8: open 14:30, closed 15:00; the 14:30 webhook replayed, as captured
    (same X-Zammad-Delivery) and with a new delivery id (the header is not signed)."""
    url, settings, http = service
    opened = p.zammad("open", "2026-11-30T14:30:00.000Z")
    captured = str(uuid.uuid4())
    status, first = await post(http, url, opened, captured)
    assert status == 200
    status, _ = await post(http, url, p.zammad("closed", "2026-11-30T15:00:00.000Z"))
    assert status == 200
    status, again = await post(http, url, opened, captured)
    assert (status, again) == (200, {"duplicate_delivery": captured})
    status, fresh = await post(http, url, opened)
    assert status == 200
    assert not any(event_id.endswith("ticket.reopened") for event_id in fresh["taken"])
    assert set(fresh["taken"]) <= set(first["taken"]) | {
        "zammad:81:2026-11-30T15:00:00.000Z:ticket.resolved"
    }
    records = await read_records(settings.broker, settings.ticket_topic, None, 10, 1.0)
    kinds = [orjson.loads(r.value)["type"] for r in records]
    assert "ticket.reopened" not in kinds


@pytest.mark.kafka
async def test_a_retried_delivery_with_a_newer_body_is_taken(
    service: tuple[str, IngestSettings, aiohttp.ClientSession],
) -> None:
    """Zammad's delivery id is its job's id (app/jobs/trigger_webhook_job.rb, `X-Zammad-Delivery
    => job_id`, `retry_on ... attempts: 5`), and the job builds the payload when it runs: a
    retry whose first try reached us carries the ticket as it is then. Same id, new body:
    taken, not a replay."""
    url, _, http = service
    delivery = str(uuid.uuid4())
    status, _ = await post(http, url, p.zammad("open", "2026-11-30T14:30:00.000Z"), delivery)
    assert status == 200
    newer = p.zammad("pending reminder", "2026-11-30T14:31:00.000Z")
    status, body = await post(http, url, newer, delivery)
    assert status == 200
    assert "zammad:81:2026-11-30T14:31:00.000Z:ticket.paused" in body["taken"]


@pytest.mark.kafka
@pytest.mark.parametrize("value", [1e20, -1e16, 10**18])
async def test_a_numeric_updated_at_is_a_202_dead_letter_naming_the_field(
    service: tuple[str, IngestSettings, aiohttp.ClientSession], value: Any
) -> None:
    """Issue #19 item 9: `updated_at` of 1e20, -1e16, 10**18, signed: 202, never 500."""
    url, settings, http = service
    status, body = await post(http, url, p.zammad("open", updated_at=value))
    assert status == 202
    assert "'ticket.updated_at'" in body["dead_lettered"]
    (record,) = await read_records(settings.broker, settings.dlq_topic, 1, 30, 0.5)
    assert "'ticket.updated_at'" in dict(record.headers)["escalator.reason"].decode()


@pytest.mark.kafka
async def test_an_unknown_priority_opens_at_the_default_and_is_counted(
    service: tuple[str, IngestSettings, aiohttp.ClientSession],
) -> None:
    url, settings, http = service
    status, _ = await post(http, url, p.zammad("new", priority={"id": 9, "name": "9 someday"}))
    assert status == 200
    async with http.get(url.replace("/v1/webhooks/zammad", "/metrics")) as response:
        metrics = (await response.read()).decode()
    assert (
        'escalator_ingest_warnings_total{reason="priority unknown",source="zammad"} 1.0' in metrics
    )
    records = await read_records(settings.broker, settings.ticket_topic, 3, 30, 0.5)
    opened = [orjson.loads(r.value) for r in records if b"ticket.opened" in r.value]
    assert [e["severity"] for e in opened] == [3]


@pytest.mark.kafka
def test_a_late_snapshot_then_a_killed_ingest_still_pauses_and_resumes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Issue #20 item 3 with a restart: ingest is SIGKILLed after the late snapshot and the
    15:00 pause; the next process, on the same --zammad-state file, resumes at 15:30 (with
    the memory lost, 15:30 "open" is a first sight: no resume, and the ticket never breaches)."""
    ingest = IngestProcess(
        kafka_bootstrap,
        tmp_path / "ingest.log",
        env={"ESCALATOR_ZAMMAD_SECRET": SECRET, "ESCALATOR_ZAMMAD_STATE": str(tmp_path / "z.db")},
    )

    def deliver(payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        request = urllib.request.Request(
            ingest.url + "/v1/webhooks/zammad", body, signed(body), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(error.read()) from None

    try:
        ingest.start()
        for snapshot in SNAPSHOTS_BEFORE:
            deliver(snapshot)
        assert ingest.proc is not None
        ingest.proc.kill()
        ingest.proc.wait(10)
        ingest.start()
        for snapshot in SNAPSHOTS_AFTER:
            deliver(snapshot)
    finally:
        ingest.stop()
    import asyncio

    records = asyncio.run(read_records(kafka_bootstrap, ingest.topic, None, 10, 1.0))
    events = [orjson.loads(r.value) for r in records]
    assert any(
        (e["type"], e["occurred_at"]) == ("ticket.resumed", "2026-11-30T15:30:00+00:00")
        for e in events
    )
    assert sla_outcome(events) == [("sla.breached", "resolution", DUE)]


def test_the_same_instant_written_otherwise_restates_the_same_ids() -> None:
    """`2026-11-30T14:10:00Z` then `2026-11-30T14:10:00.000Z`: one snapshot, one set of ids
    (a second pause under a new id would be refused by the engine: a dead letter)."""
    memory = ZammadStore(":memory:")
    zammad.map_payload(p.zammad("new"), memory)
    first = zammad.map_payload(p.zammad("pending reminder", "2026-11-30T14:10:00Z"), memory)
    again = zammad.map_payload(p.zammad("pending reminder", "2026-11-30T14:10:00.000Z"), memory)
    assert [e["event_id"] for e in again.events] == [e["event_id"] for e in first.events]
