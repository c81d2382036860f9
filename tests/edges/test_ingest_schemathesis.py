"""Issue #27 item 10: schemathesis against a real `escalator ingest` on a real broker.

The ingest serves its OpenAPI document; every operation (contract events, the three vendor
webhooks, /health, /openapi.json) gets generated requests over HTTP, once with valid
credentials (a bearer token; each webhook body signed as its vendor signs it, per request)
and once without. Every answer must be documented (status, content type, headers, body
schema) and none may be a 5xx. Bounded for CI by a fixed number of examples per operation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis

from tests.contract_fuzz import labels, run_every_operation, statuses
from tests.edges.ingest_process import SECRETS, Credentials, IngestProcess, vendor_secrets

pytestmark = pytest.mark.kafka

EXAMPLES = int(os.environ.get("ESCALATOR_SCHEMATHESIS_EXAMPLES", "60"))
"""Per operation and credential mode: 5 operations x 2 x 60 requests, about 25 s."""
WEBHOOKS = [f"POST /v1/webhooks/{source}" for source in SECRETS]
OPERATIONS = {"POST /v1/events", "GET /health", *WEBHOOKS}
"""At least these (schemathesis leaves out /openapi.json itself)."""


@pytest.fixture(scope="module")
def ingest(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("ingest-schemathesis") / "ingest.log"
    process = IngestProcess(kafka_bootstrap, log, env=vendor_secrets()).start()
    try:
        yield process
    finally:
        process.stop()
        assert process.proc is not None and process.proc.returncode == 0, process.log_tail()


def _schema(ingest: IngestProcess) -> Any:
    return schemathesis.openapi.from_url(ingest.url + "/openapi.json")


def test_with_credentials_ingest_answers_as_documented(ingest: IngestProcess) -> None:
    schema = _schema(ingest)
    seen = run_every_operation(schema, EXAMPLES, auth=Credentials(), timeout=30)
    assert {label for label, _ in seen} == labels(schema) >= OPERATIONS
    # the credentials were right: events were taken (200) or refused for their content
    assert 200 in statuses(seen, "POST /v1/events"), seen
    for label in WEBHOOKS:
        assert 401 not in statuses(seen, label) and statuses(seen, label) & {200, 202}, seen
    assert ingest.proc is not None and ingest.proc.poll() is None, ingest.log_tail()


def test_without_credentials_ingest_answers_as_documented(ingest: IngestProcess) -> None:
    schema = _schema(ingest)
    seen = run_every_operation(schema, EXAMPLES, timeout=30)
    assert {label for label, _ in seen} == labels(schema) >= OPERATIONS
    for label in ("POST /v1/events", *WEBHOOKS):
        assert statuses(seen, label) == {401}, seen
    assert ingest.proc is not None and ingest.proc.poll() is None, ingest.log_tail()


def test_the_document_is_valid_openapi_3_1(ingest: IngestProcess) -> None:
    """What schemathesis and a client generator read is a valid OpenAPI 3.1 document, and each
    401 promises the `WWW-Authenticate` header (issue #27 item 10), which the runs above check."""
    from openapi_spec_validator import validate

    document = requests.get(ingest.url + "/openapi.json", timeout=10).json()
    validate(document)
    for path, item in document["paths"].items():
        for operation in item.values():
            if "401" in operation["responses"]:
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], path
