"""The wall-screen dashboard in real headless Chromium, served by uvicorn.

The page must show breached tickets first, then open tickets by time to breach with ticking
countdowns, the count tiles, the last day's escalations and the compliance charts; fit a
1920x1080 wall screen without scrolling and a 390x844 phone in one column; honour the filters
in its URL; and pick up new events from the real projector over Kafka without a reload.
Chromium is Debian's (/usr/bin/chromium); under CI a missing browser fails the test.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI

from events.instants import MINUTE, format_instant
from projections.api import make_app
from projections.db import Database
from projections.projector import Projector
from projections.schema import migrate
from streams.sla.rules import Policy
from tests.projections.helpers import (
    lines,
    make_topics,
    produce,
    serving,
    sla_records,
    wait_for,
)
from tests.projections.scenario import NOW, load_scenario, scenario_events

pytestmark = [pytest.mark.browser]

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


@pytest.mark.kafka
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
            await _check_ready_and_lag(base, topics.tickets, len(tickets) + len(slas))
            await _check_page(base, kafka_bootstrap, topics.tickets)
    finally:
        stop.set()
        await task
        projector.close()


async def _check_ready_and_lag(base: str, ticket_topic: str, applied: int) -> None:
    """A running projector that has caught up makes /ready 200, with its lag in /metrics."""
    import httpx

    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(100):
            ready = await http.get("/ready")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert ready.status_code == 200, ready.text
        assert ready.json()["projector"] == "caught_up"
        assert ready.json()["lag"] == {f"{ticket_topic}/0": 0, **ready.json()["lag"]}
        metrics = (await http.get("/metrics")).text
        lag = f'escalator_projector_lag_records{{partition="0",topic="{ticket_topic}"}} 0.0'
        assert lag in metrics
        assert f'escalator_projector_records_total{{topic="{ticket_topic}"}} 15.0' in metrics
        assert f"\nescalator_projector_events_applied_total {applied}.0\n" in metrics


async def _check_page(base: str, kafka_bootstrap: str, ticket_topic: str) -> None:
    from playwright.async_api import async_playwright

    if True:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            await page.goto(base + "/")
            rows = page.locator("#open-tickets tr.ticket-row:not([hidden])")
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
            assert "r-breached" in (await c_row.get_attribute("class") or "")
            esc = page.locator("#escalations tr.escalation-row")
            assert sorted(await esc.evaluate_all("rs => rs.map(r => r.dataset.ticket)")) == [
                "C", "E",
            ]  # fmt: skip
            # at 1400 px the "To" column gives way; the row's tooltip keeps it
            assert "senior-technical-staff" in (await esc.first.get_attribute("title") or "")
            assert "C-1" in await page.locator('#escalations tr[data-ticket="C"]').inner_text()
            assert await _clipped(page) == []  # a 1400x800 screen: nothing cut off either
            assert await page.locator("#compliance-chart rect.bar").count() >= 3
            # a new ticket arrives on Kafka: it appears without a reload
            new = {"event_id": "F-1", "ticket_id": "F", "type": "ticket.opened",
                   "occurred_at": format_instant(NOW + MINUTE), "severity": 1,
                   "customer_id": "C-9"}  # fmt: skip
            await produce(kafka_bootstrap, ticket_topic, [orjson.dumps(new)])
            await page.locator('#open-tickets tr[data-ticket="F"]').wait_for(timeout=15_000)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"))
            await browser.close()


async def test_wall_screen_and_phone_layouts(tmp_path: Path, policy: Policy) -> None:
    """Known events (the scenario) at 1920x1080 and 390x844: tiles, breached first, no scroll."""
    _need_chromium()
    db_target = str(tmp_path / "wall.sqlite3")
    db = Database(db_target)
    migrate(db)
    load_scenario(db, policy)
    db.close()
    started = time.time_ns() // 1000

    def clock() -> int:
        return NOW + (time.time_ns() // 1000 - started)

    app = make_app(db_target, policy, clock)
    async with _wall_screen(app) as (base, browser, wall):
        assert await _tiles(wall) == {
            "tile-open": "3", "tile-breached": "1", "tile-at-risk": "1",
            "tile-escalated": "2", "tile-compliance": "80%",
        }  # fmt: skip
        assert await _visible_ids(wall) == ["C", "A", "B"]
        first = wall.locator("#open-tickets tr.ticket-row").first
        assert "r-breached" in (await first.get_attribute("class") or "")
        countdown = await first.locator(".countdown").inner_text()
        assert countdown.startswith("-"), countdown  # time past the deadline, negative
        colour = await first.locator(".countdown").evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(255, 77, 77)"  # red
        a_row = wall.locator('#open-tickets tr[data-ticket="A"]')
        assert "r-critical" in (await a_row.get_attribute("class") or "")  # 30 min left
        assert await _fits(wall), "the wall screen scrolls"
        assert await _clipped(wall) == []
        for panel in ("#tiles", "#open-panel", "#esc-panel", "#chart-panel"):
            box = await wall.locator(panel).bounding_box()
            assert box is not None and box["y"] + box["height"] <= 1080, panel
        assert await wall.locator("#compliance-trend circle.point").count() >= 2
        assert await wall.locator("#compliance-chart rect.bar").count() >= 3
        font = await first.evaluate("e => parseFloat(getComputedStyle(e.cells[0]).fontSize)")
        assert font >= 20  # readable from across a room
        await wall.screenshot(path=str(ARTIFACTS / "dashboard-1920x1080.png"))

        # each team's screen: filters in the URL
        await wall.goto(base + "/?group=l1")
        await _loaded(wall)
        assert await _visible_ids(wall) == ["B"]
        assert (await _tiles(wall))["tile-open"] == "1"
        assert "group l1" in await wall.locator("#filters").inner_text()
        await wall.goto(base + "/?customer=C-1")
        await _loaded(wall)
        assert await _visible_ids(wall) == ["C", "A"]
        await wall.goto(base + "/?policy=" + policy.name)
        await _loaded(wall)
        assert await _visible_ids(wall) == ["C", "A", "B"]
        await wall.goto(base + "/?policy=some-other-policy")
        await _loaded(wall, rows=False)
        assert (await _tiles(wall))["tile-open"] == "0"

        # outside business hours (Tuesday 21:00 in Toronto): the clock-stopped marker
        await wall.goto(base + "/?now=2026-11-25T02:00:00Z")
        await _loaded(wall)
        marker = wall.locator('#open-tickets tr[data-ticket="B"] .stopped')
        assert await marker.get_attribute("data-stopped") == "outside_business_hours"
        await wall.screenshot(path=str(ARTIFACTS / "dashboard-1920x1080-after-hours.png"))

        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        await phone.goto(base + "/")
        await _loaded(phone)
        assert await _visible_ids(phone) == ["C", "A", "B"]
        assert (await _tiles(phone))["tile-breached"] == "1"
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"horizontal scroll on a phone: {width}px"
        assert await _clipped(phone) == []
        panels = [await phone.locator(p).bounding_box() for p in ("#open-panel", "#esc-panel")]
        assert all(b is not None and b["width"] >= 340 for b in panels)  # one column
        assert panels[0] is not None and panels[1] is not None
        assert panels[1]["y"] > panels[0]["y"]  # stacked
        await phone.screenshot(path=str(ARTIFACTS / "dashboard-390x844.png"), full_page=True)


@asynccontextmanager
async def _wall_screen(app: FastAPI) -> AsyncIterator[tuple[str, Any, Any]]:
    """The app on 127.0.0.1 and headless Chromium showing its `/` at 1920x1080, loaded:
    yields (base URL, browser, that page)."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    async with serving(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            wall = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await wall.goto(base + "/")
            await _loaded(wall)
            yield base, browser, wall
        finally:
            await browser.close()


async def _loaded(page: Any, rows: bool = True) -> None:
    await page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('updated')"
    )
    if rows:
        await page.locator("#open-tickets tr.ticket-row").first.wait_for()


async def _tiles(page: Any) -> dict[str, str]:
    tiles: dict[str, str] = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.tile')]"
        ".map(t => [t.id, t.querySelector('.value').textContent.trim()]))"
    )
    return tiles


async def _visible_ids(page: Any) -> list[str]:
    ids: list[str] = await page.locator("#open-tickets tr.ticket-row:not([hidden])").evaluate_all(
        "rs => rs.map(r => r.dataset.ticket)"
    )
    return ids


async def _clipped(page: Any) -> list[str]:
    """Panels cut off on the right: wider than their content box, or past the window's edge."""
    clipped: list[str] = await page.evaluate(
        "[...document.querySelectorAll('section, .tile, .scroll')]"
        ".filter(s => s.scrollWidth > s.clientWidth + 1"
        " || s.getBoundingClientRect().right > innerWidth + 1).map(s => s.id || s.className)"
    )
    return clipped


async def _fits(page: Any) -> bool:
    fits: bool = await page.evaluate(
        "document.documentElement.scrollHeight <= innerHeight && "
        "document.documentElement.scrollWidth <= innerWidth"
    )
    return fits


async def test_each_ticket_shows_its_policy_and_a_team_screen_filters_by_it(
    tmp_path: Path,
) -> None:
    """Three tickets under the vendor example's three policies (tests/projections/scenario.py):
    each row names its own policy and calendar, `/?policy=emea` shows only the EMEA team's
    ticket with its own counts, and compliance per policy is listed."""
    _need_chromium()
    from streams.sla.policy import load_policy
    from tests.projections.scenario import LATER, VENDOR_POLICY, load_policies_scenario

    vendor = load_policy(VENDOR_POLICY)
    db_target = str(tmp_path / "policies.sqlite3")
    db = Database(db_target)
    migrate(db)
    load_policies_scenario(db, vendor)
    db.close()
    app = make_app(db_target, vendor, lambda: LATER)
    async with _wall_screen(app) as (base, _browser, wall):
        assert await _visible_ids(wall) == ["P-2", "P-1", "S-1", "W-1"]
        rows = wall.locator("#open-tickets tr.ticket-row")
        assert await rows.evaluate_all("rs => rs.map(r => r.dataset.policy)") == [
            "premium", "premium", "standard", "emea",
        ]  # fmt: skip
        w_group = wall.locator('#open-tickets tr[data-ticket="W-1"] td.wide').first
        assert await w_group.inner_text() == "emea · emea"  # group · policy
        assert await w_group.get_attribute("title") == "policy emea, calendar warsaw"
        # 16:30 in Warsaw: W-1's clock is stopped although Toronto is open
        stopped = wall.locator("#open-tickets tr .stopped")
        marked = "ms => ms.map(m => m.closest('tr').dataset.ticket)"
        assert await stopped.evaluate_all(marked) == ["W-1"]
        shares = wall.locator("#policies .policy-compliance")
        assert await shares.evaluate_all("ss => ss.map(s => s.dataset.policy)") == [
            "emea", "premium", "standard",
        ]  # fmt: skip
        assert await wall.locator("#policies").is_visible()
        assert "premium: FR 0%" in await wall.locator("#policies").inner_text()
        await wall.screenshot(path=str(ARTIFACTS / "dashboard-policies-1920x1080.png"))

        await wall.goto(base + "/?policy=emea")
        await _loaded(wall)
        assert await _visible_ids(wall) == ["W-1"]
        tiles = await _tiles(wall)
        assert (tiles["tile-open"], tiles["tile-breached"], tiles["tile-compliance"]) == (
            "1", "0", "100%",
        )  # fmt: skip
        assert "policy emea" in await wall.locator("#filters").inner_text()
        assert await wall.locator("#escalations tr.escalation-row").count() == 0
        await wall.goto(base + "/?policy=premium")
        await _loaded(wall)
        assert await _visible_ids(wall) == ["P-2", "P-1"]
        assert (await _tiles(wall))["tile-breached"] == "2"
        escalated = wall.locator("#escalations tr.escalation-row")
        assert await escalated.evaluate_all("rs => rs.map(r => r.dataset.ticket)") == ["P-2"]


async def test_long_ids_are_cut_and_keep_every_column_on_the_wall(
    tmp_path: Path, policy: Policy
) -> None:
    """#19 item 13: a 256-character ticket id, customer and group (the contract's maximum)
    pushed the countdown, customer and group columns off the wall screen for every row. They
    are cut with an ellipsis (the whole value on hover) and every row's countdown stays on
    the 1920x1080 screen."""
    from projections.store import Record, Store

    _need_chromium()
    db_target = str(tmp_path / "long.sqlite3")
    db = Database(db_target)
    migrate(db)
    load_scenario(db, policy)
    long_id, customer, group = "T" + "x" * 255, "C" + "y" * 255, "G" + "z" * 255
    event = {
        "event_id": "long-1", "ticket_id": long_id, "type": "ticket.opened", "severity": 2,
        "occurred_at": format_instant(NOW - 10 * MINUTE), "customer_id": customer,
        "group": group,
    }  # fmt: skip
    Store(db, policy).apply_batch("ticket", [Record("ticket-events", 9, 0, orjson.dumps(event))])
    db.close()
    app = make_app(db_target, policy, lambda: NOW)
    async with _wall_screen(app) as (_, _browser, wall):
        assert long_id in await _visible_ids(wall)
        rights = await wall.locator("#open-tickets tr.ticket-row .countdown").evaluate_all(
            "cs => cs.map(c => c.getBoundingClientRect().right)"
        )
        assert rights and max(rights) <= 1920, rights
        row = wall.locator(f'#open-tickets tr[data-ticket="{long_id}"]')
        cut = await row.locator(".clip").evaluate_all(
            "cs => cs.map(c => [c.title, c.scrollWidth > c.clientWidth,"
            " getComputedStyle(c).textOverflow])"
        )
        assert [long_id, True, "ellipsis"] in cut and [customer, True, "ellipsis"] in cut
        assert await _fits(wall), "the wall screen scrolls"
        await wall.screenshot(path=str(ARTIFACTS / "dashboard-long-ids-1920x1080.png"))
        assert await _clipped(wall) == []


async def test_the_wall_shows_breach_time_per_group(tmp_path: Path) -> None:
    """The issue #23 tickets (tests/projections/test_agreement_views.py): l2 held both while
    its 4h ownership target ran out, so the breach-time panel lists l2 with 8h (2 x 4h); a
    third ticket, open in l1, is on the wall."""
    _need_chromium()
    from projections.store import Store
    from tests.core.helpers import payload
    from tests.core.test_agreements import issue_policy
    from tests.projections.helpers import SLA, TICKETS, as_records
    from tests.projections.test_agreement_views import NOW as LATE
    from tests.projections.test_agreement_views import _history

    policy = issue_policy()
    db_target = str(tmp_path / "agreements.sqlite3")
    db = Database(db_target)
    migrate(db)
    store = Store(db, policy)
    events = [*_history(), payload("opened", "2026-12-09 11:00", "T3", severity=2, group="l1")]
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    store.apply_batch("sla", as_records(SLA, sla_records(events, policy, until=LATE)))
    db.close()
    app = make_app(db_target, policy, lambda: LATE)
    async with _wall_screen(app) as (_base, _browser, wall):
        panel = wall.locator("#breach-time")
        assert await panel.is_visible()
        rows = wall.locator("#breach-groups tr.breach-group")
        assert await rows.evaluate_all("rs => rs.map(r => r.dataset.group)") == ["l2"]
        assert "08:00:00" in await rows.first.inner_text()
        await wall.screenshot(path=str(ARTIFACTS / "dashboard-breach-time-1920x1080.png"))
