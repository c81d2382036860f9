"""The wall-screen dashboard in real headless Chromium, fed by the real projector over Kafka.

The page must show open tickets by time to breach with ticking countdowns, the last day's
escalations and the compliance chart, and pick up new events without a reload.
Chromium is Debian's (/usr/bin/chromium); under CI a missing browser fails the test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.instants import MINUTE, format_instant
from projections.api import make_app
from projections.projector import Projector
from streams.sla.rules import Policy
from tests.projections.helpers import (
    lines,
    make_topics,
    produce,
    serving,
    sla_records,
    wait_for,
)
from tests.projections.scenario import NOW, scenario_events

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _need_chromium() -> None:
    if shutil.which(CHROMIUM) is None or not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")


async def test_dashboard_shows_live_sla_state(
    tmp_path: Path, kafka_bootstrap: str, kafka_topics: Any, policy: Policy
) -> None:
    _need_chromium()

    # The server clock starts at the scenario's instant and then runs in real time.
    started = time.time_ns() // 1000

    def clock() -> int:
        return NOW + (time.time_ns() // 1000 - started)

    events = scenario_events()
    topics = await make_topics(kafka_topics, partitions=1)
    tickets, slas = lines(events), sla_records(events, policy, until=NOW)
    await produce(kafka_bootstrap, topics.tickets, tickets)
    await produce(kafka_bootstrap, topics.sla, slas)
    target = str(tmp_path / "dashboard.sqlite3")
    projector = Projector(target, policy, kafka_bootstrap, topics, group_id=uuid.uuid4().hex)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    app = make_app(target, policy, clock, projector.store.counters, lag=projector.lag)
    try:
        await wait_for(projector, len(tickets) + len(slas))
        async with serving(app) as base:
            await _check_page(base, kafka_bootstrap, topics.tickets)
    finally:
        stop.set()
        await task
        projector.close()


async def _check_page(base: str, kafka_bootstrap: str, ticket_topic: str) -> None:
    from playwright.async_api import async_playwright

    if True:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            await page.goto(base + "/")
            rows = page.locator("#open-tickets tr.ticket-row")
            await rows.first.wait_for()
            assert await rows.evaluate_all("rs => rs.map(r => r.dataset.ticket)") == ["C", "A", "B"]
            first = rows.nth(1)
            assert "C-1" in await first.inner_text()
            countdown = first.locator(".countdown")
            before = await countdown.inner_text()
            assert before.startswith("00:29:") or before.startswith("00:30:")
            await page.wait_for_function(
                "([el, t]) => el.textContent !== t", arg=[await countdown.element_handle(), before]
            )
            assert await countdown.inner_text() != before  # ticking without a reload
            c_row = page.locator('#open-tickets tr[data-ticket="C"]')
            assert "breached" in await c_row.inner_text()
            esc = page.locator("#escalations tr.escalation-row")
            assert sorted(await esc.evaluate_all("rs => rs.map(r => r.dataset.ticket)")) == [
                "C", "E",
            ]  # fmt: skip
            assert "senior-technical-staff" in await esc.first.inner_text()
            assert await page.locator("#compliance-chart rect.bar").count() >= 3
            # a new ticket arrives on Kafka: it appears without a reload
            new = {"event_id": "F-1", "ticket_id": "F", "type": "ticket.opened",
                   "occurred_at": format_instant(NOW + MINUTE), "severity": 1,
                   "customer_id": "C-9"}  # fmt: skip
            await produce(kafka_bootstrap, ticket_topic, [orjson.dumps(new)])
            await page.locator('#open-tickets tr[data-ticket="F"]').wait_for(timeout=15_000)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            await browser.close()
