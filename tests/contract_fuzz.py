"""schemathesis over every operation of a served OpenAPI document (issue #27).

Shared by the projections API and the ingest tests: each operation's strategy (positive and
negative cases) is run by Hypothesis with a fixed number of examples (schemathesis' pytest
plugin does not load under pytest 9), every answer sent over real HTTP and validated against
the document with these checks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
"""No 5xx; every status, content type, documented header and body as the document says."""


def run_every_operation(schema: Any, examples: int, **call: Any) -> Counter[tuple[str, int]]:
    """Run `examples` generated cases per operation of `schema` (a loaded schemathesis schema),
    each sent with `call` (headers=, auth=, timeout=, ...) and checked with CHECKS. Raises the
    first failing case (Hypothesis shrinks it first); returns how often each operation
    (`GET /health`) answered each status, so a test can tell its requests got through."""
    seen: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=_cases(operation))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(checks=CHECKS, **call)
            seen[case.operation.label, response.status_code] += 1

        check()
    return seen


def _cases(operation: Any) -> Any:
    """Valid requests, and invalid ones where the operation has something to get wrong."""
    valid = operation.as_strategy(GenerationMode.POSITIVE)
    if not (operation.path_parameters or operation.query or operation.body):
        return valid
    return st.one_of(valid, operation.as_strategy(GenerationMode.NEGATIVE))


def labels(schema: Any) -> set[str]:
    """Every operation of `schema` as schemathesis names it (`GET /health`)."""
    return {result.ok().label for result in schema.get_all_operations()}


def statuses(seen: Counter[tuple[str, int]], label: str) -> set[int]:
    """The statuses `label` (an operation, `POST /v1/events`) answered in a run."""
    return {status for (operation, status) in seen if operation == label}
