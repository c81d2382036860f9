"""Issue #27 items 7-9: the projections API's OpenAPI document says what the code accepts.

Each value here was a schema-valid request the API refused, or a header or label the issue
found missing or unbounded.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

from projections.api import make_app
from projections.queries import WHEN_PATTERN
from streams.sla.rules import Policy
from tests.projections.helpers import api_client


def parameter(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == name
    )
    return found


def accepts(schema: dict[str, Any], value: Any) -> bool:
    return Draft202012Validator(schema).is_valid(value)


async def test_documented_constraints_match_what_is_refused(db_target: str, policy: Policy) -> None:
    async with api_client(make_app(db_target, policy)) as client:
        doc = (await client.get("/openapi.json")).json()
        severity = parameter(doc, "/api/tickets", "severity")["schema"]
        assert not accepts(severity, [0]) and not accepts(severity, [5]) and accepts(severity, [1])
        assert (await client.get("/api/tickets?severity=0")).status_code == 400
        for path, name in (("/api/tickets", "now"), ("/api/sla-events", "since"),
                           ("/api/sla-events", "until"), ("/api/compliance", "from"),
                           ("/api/compliance", "to")):  # fmt: skip
            schema = parameter(doc, path, name)["schema"]
            for refused in ("later", "yesterday", "2026-11-24", "0001-01-01T00:00:00Z", "1.5h"):
                assert not accepts(schema, refused), (path, name, refused)
                answer = await client.get(path, params={name: refused})
                assert answer.status_code == 400, (path, name, refused)
            for taken in ("24h", "2026-11-24T15:00:00Z", "2026-11-24t15:00:00+01:00"):
                assert accepts(schema, taken), (path, name, taken)
        assert re.fullmatch(WHEN_PATTERN, "30D") and not re.fullmatch(WHEN_PATTERN, "30")
        start = parameter(doc, "/api/compliance", "from")
        assert "empty period" in start["description"]
        same = "2026-11-24T15:00:00Z"
        equal = await client.get("/api/compliance", params={"from": same, "to": same})
        assert equal.status_code == 200 and equal.json()["groups"] == [], equal.text


async def test_no_422_is_documented_and_metrics_names_its_media_type(
    db_target: str, policy: Policy
) -> None:
    async with api_client(make_app(db_target, policy)) as client:
        doc = (await client.get("/openapi.json")).json()
        for path, item in doc["paths"].items():
            for operation in item.values():
                assert "422" not in operation["responses"], path
        content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        (media,) = content
        assert media.startswith("text/plain")
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"] == media


async def test_405_carries_allow_on_every_operation(db_target: str, policy: Policy) -> None:
    async with api_client(make_app(db_target, policy)) as client:
        doc = (await client.get("/openapi.json")).json()
        for path in doc["paths"]:
            concrete = path.replace("{ticket_id}", "T-1")
            for method in ("TRACE", "POST", "DELETE"):
                answer = await client.request(method, concrete)
                assert answer.status_code == 405, (method, path)
                assert "GET" in answer.headers.get("allow", ""), (method, path)  # RFC 9110


async def test_unknown_methods_share_one_label(db_target: str, policy: Policy) -> None:
    """`curl -X FOO1 .../x` without a token made a `method="FOO1"` series per method."""
    async with api_client(make_app(db_target, policy)) as client:
        for method in ("FOO1", "FOO2", "FOO3", "FOO4"):
            await client.request(method, "/x")
            await client.request(method, "/api/tickets")
        text = (await client.get("/metrics")).text
        methods = set(re.findall(r'method="([^"]*)"', text))
        assert methods <= {"GET", "TRACE", "other"}, methods
        assert 'method="other"' in text and "FOO" not in text


async def test_invented_methods_over_http_add_no_series(db_target: str, policy: Policy) -> None:
    """Item 9's input: `curl -X FOO1 .../x` with no token, on a server that requires one, over
    a real socket. The first invented method may add the `other` series; FOO2..FOO17 on /x
    and on real routes add none (it was 17 new series per method, 68 from 4 requests)."""
    import httpx

    from tests.projections.helpers import serving

    token = "metrics-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        serving(make_app(db_target, policy, token=token)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):

        async def series() -> set[str]:
            text = (await client.get("/metrics", headers=auth)).text
            return {line.rsplit(" ", 1)[0] for line in text.splitlines() if "method=" in line}

        await client.request("FOO1", "/x")
        await client.request("FOO1", "/api/tickets")
        before = await series()
        for n in range(2, 18):
            assert (await client.request(f"FOO{n}", "/x")).status_code in (404, 405)
            await client.request(f"FOO{n}", "/api/tickets")
        after = await series()
        assert after - before <= {s for s in after if 'route="/metrics"' in s}, after - before
        assert not any("FOO" in s for s in after)
