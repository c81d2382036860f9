"""The ticket view's clock timeline (issue 24 §4) in real headless Chromium, served by uvicorn
over a projected SQLite database: each metric's intervals as a bar, coloured by cause, in
proportion to their length, with the manual stop's reason and actor, the calendars, target and
deadline; reached from the wall by clicking a ticket. Screenshots go to test-artifacts/.
Hand-computed from the history of tests/projections/test_explain_api.py (T1: emea -> amer,
resolution stopped 16:00-17:00Z for third_party by agent-7, answered 17:30Z)."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.instants import parse_rfc3339
from projections.api import make_app
from projections.db import Database
from projections.schema import migrate
from tests.projections.helpers import serving
from tests.projections.test_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    _need_chromium,
)
from tests.projections.test_explain_api import NOW, POLICY, project

pytestmark = [pytest.mark.browser]


async def test_ticket_view_draws_each_interval_with_its_cause(tmp_path: Path) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright

    target = str(tmp_path / "timeline.sqlite3")
    db = Database(target)
    migrate(db)
    project(db)
    db.close()
    app = make_app(target, POLICY, clock=lambda: parse_rfc3339(NOW))
    ARTIFACTS.mkdir(exist_ok=True)
    async with serving(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(base + "/ticket?id=T1")
            await page.wait_for_selector("section.metric[data-metric=resolution] .bar > div")
            assert await page.locator("#ticket").text_content() == "T1"
            summary = await page.locator("#summary").text_content()
            assert "policy follow-the-sun version 24" in (summary or "")
            first = page.locator("section.metric[data-metric=first_response]")
            assert "business on warsaw → toronto" in (
                await first.locator("h2").text_content() or ""
            )
            how = await first.locator(".how").text_content()
            assert how == (
                "target: 4h from 2026-12-07T14:00:00Z · due 2026-12-07T18:00:00Z"
                " · counted 3h30m of 4h"
            )
            resolution = page.locator("section.metric[data-metric=resolution]")
            parts = resolution.locator(".bar > div")
            causes = await parts.evaluate_all("ps => ps.map(p => p.dataset.cause)")
            assert causes == ["counted", "counted", "stopped", "counted", "closed hours"]
            widths = await parts.evaluate_all("ps => ps.map(p => p.getBoundingClientRect().width)")
            # 14:00Z-12:00Z next day is 22h: the stop's hour is 1/22 of the bar, the night 14/22
            total = sum(widths)
            assert abs(widths[2] / total - 1 / 22) < 0.01
            assert abs(widths[4] / total - 14 / 22) < 0.01
            colour = await parts.nth(2).evaluate("p => getComputedStyle(p).backgroundColor")
            assert colour == "rgb(240, 136, 62)"  # --stopped
            title = await parts.nth(2).get_attribute("title")
            assert title == (
                "2026-12-07T16:00:00Z to 2026-12-07T17:00:00Z: stopped (third_party by agent-7)"
            )
            rows = await resolution.locator("tr.interval").evaluate_all(
                "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
            )
            assert rows[2] == [
                "2026-12-07T16:00:00Z", "2026-12-07T17:00:00Z", "1h",
                "stopped (third_party by agent-7)", "",
            ]  # fmt: skip
            assert rows[1][4] == "toronto" and rows[0][4] == "warsaw"
            overflow = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
            assert not overflow
            await page.screenshot(path=str(ARTIFACTS / "ticket-timeline.png"), full_page=True)

            # From the wall: clicking a ticket opens its clocks; an exempt breach reason shows.
            await page.goto(base + "/")
            row = page.locator('#open-tickets tr[data-ticket="T/2"]')
            await row.wait_for()
            await row.click()
            await page.wait_for_url("**/ticket?id=T%2F2")
            await page.wait_for_selector("#reasons li")
            assert await page.locator("#reasons li").all_text_contents() == [
                "breach reason: first_response: outage by m1 at 2026-12-08T11:00:00Z"
            ]
            breached = page.locator("section.metric[data-metric=first_response] h2 .state")
            assert await breached.text_content() == "breached"
            phone = await browser.new_page(viewport={"width": 390, "height": 844})
            await phone.goto(base + "/ticket?id=T1")
            await phone.wait_for_selector("section.metric .bar > div")
            await phone.screenshot(
                path=str(ARTIFACTS / "ticket-timeline-phone.png"), full_page=True
            )
        finally:
            await browser.close()
