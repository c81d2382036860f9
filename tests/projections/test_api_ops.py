"""Operating the projections API: liveness, readiness, Prometheus metrics, bearer-token auth
(#10 §8), and the compose file's published ports."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from projections.api import make_app
from projections.db import Database
from projections.store import Counters
from streams.sla.rules import Policy
from tests.projections.helpers import api_client
from tests.projections.scenario import NOW, load_scenario

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def scenario_db(db_target: str, policy: Policy) -> str:
    db = Database(db_target)
    store = load_scenario(db, policy)
    db.close()
    assert store.counters.applied > 0
    return db_target


async def test_health_and_ready_follow_the_database_and_the_projector_lag(
    scenario_db: str, policy: Policy
) -> None:
    lag: dict[tuple[str, int], int] | None = None
    app = make_app(scenario_db, policy, clock=lambda: NOW, lag=lambda: lag, max_lag=10)
    async with api_client(app) as c:
        assert (await c.get("/health")).json() == {"status": "ok"}
        not_running = await c.get("/ready")
        assert not_running.status_code == 503
        assert not_running.json()["projector"] == "not_running"
        lag = {("ticket-events", 0): 3, ("sla-events", 1): 10}
        ready = await c.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "ready": True, "database": True, "projector": "caught_up",
            "lag": {"sla-events/1": 10, "ticket-events/0": 3}, "max_lag": 10,
            "missing_topics": [],
        }  # fmt: skip
        lag = {("ticket-events", 0): 11}
        behind = await c.get("/ready")
        assert (behind.status_code, behind.json()["projector"]) == (503, "behind")
        app.state.ctx.pool.close()  # the database goes away under the API
        gone = await c.get("/ready")
        assert gone.status_code == 503 and gone.json()["database"] is False
        assert (await c.get("/health")).status_code == 200


async def test_api_without_projector_is_ready_when_the_database_answers(
    scenario_db: str, policy: Policy
) -> None:
    async with api_client(make_app(scenario_db, policy, clock=lambda: NOW)) as c:
        body = (await c.get("/ready")).json()
        assert (body["ready"], body["projector"]) == (True, "disabled")


async def test_metrics_events_applied_lag_and_latency_per_route(
    scenario_db: str, policy: Policy
) -> None:
    counters = Counters(applied=7, duplicates=2, by_topic={"ticket-events": 15, "sla-events": 4})
    app = make_app(
        scenario_db, policy, clock=lambda: NOW, counters=counters,
        lag=lambda: {("ticket-events", 0): 5},
    )  # fmt: skip
    async with api_client(app) as c:
        for _ in range(3):
            assert (await c.get("/api/tickets/C")).status_code == 200
        assert (await c.get("/api/tickets/nope")).status_code == 404
        assert (await c.get("/no/such/path")).status_code == 404
        response = await c.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
    assert "\nescalator_projector_events_applied_total 7.0\n" in text
    assert 'escalator_projector_records_total{topic="ticket-events"} 15.0' in text
    assert 'escalator_projector_events_not_applied_total{reason="duplicate"} 2.0' in text
    assert 'escalator_projector_lag_records{partition="0",topic="ticket-events"} 5.0' in text
    route = 'route="/api/tickets/{ticket_id}"'
    assert re.search(
        r'escalator_http_request_duration_seconds_count\{method="GET",' + re.escape(route)
        + r',status="200"\} 3\.0', text
    ), text  # fmt: skip
    assert re.search(r'_count\{method="GET",route="unmatched",status="404"\} 1\.0', text)
    assert "/no/such/path" not in text  # unmatched paths don't become labels
    assert 'escalator_build_info{service="projections",version="' in text
    assert "_created" not in text


async def test_bearer_token_guards_api_dashboard_data_and_metrics(
    scenario_db: str, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(scenario_db, policy, clock=lambda: NOW, token=TOKEN)
    guarded = ["/api/tickets", "/api/tickets/C", "/api/dashboard", "/api/escalations",
               "/api/sla-events", "/api/compliance", "/api/stats", "/metrics"]  # fmt: skip
    async with api_client(app) as c:
        for path in guarded:
            for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"},
                            {"Authorization": f"Bearer {TOKEN[:-1]}"},
                            {"Authorization": f"Basic {TOKEN}"}):  # fmt: skip
                denied = await c.get(path, headers=headers)
                assert denied.status_code == 401, (path, headers)
                assert denied.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in denied.text
            ok = await c.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, (path, ok.text)
        # open: liveness/readiness probes and the page shell (it holds no data)
        for path in ("/health", "/ready", "/"):
            assert (await c.get(path)).status_code == 200, path
        spec = (await c.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert TOKEN not in caplog.text


def test_serve_refuses_a_short_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from projections.cli import api_token

    monkeypatch.setenv("ESCALATOR_API_TOKEN", "short")
    with pytest.raises(ValueError, match="too short") as info:
        api_token()
    assert "short'" not in str(info.value)
    monkeypatch.setenv("ESCALATOR_API_TOKEN", TOKEN)
    assert api_token() == TOKEN
    monkeypatch.setenv("ESCALATOR_API_TOKEN", "")
    assert api_token() is None


def test_compose_publishes_ports_on_loopback_only() -> None:
    compose = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
    published: list[str] = []
    in_ports = False
    for line in compose.read_text().splitlines():
        stripped = line.strip()
        if stripped == "ports:":
            in_ports = True
            continue
        if in_ports and stripped.startswith("- "):
            published.append(stripped[2:].strip("\"'"))
        elif stripped:
            in_ports = False
    assert published, "no published ports found"
    for port in published:
        assert port.startswith("127.0.0.1:"), port


def test_ready_lag_is_measured_by_a_running_projector_only() -> None:
    """Before it runs, a projector reports no lag (so /ready is not ready)."""
    from projections.projector import Projector

    projector = Projector(":memory:", _policy(), "127.0.0.1:1")
    try:
        assert projector.lag() is None
    finally:
        projector.close()


def _policy() -> Policy:
    from streams.sla.policy import load_policy

    return load_policy(None)
