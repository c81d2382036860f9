"""Fixtures of the engine tests; the helpers themselves are in `helpers.py`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.helpers import Worker


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts; any still running at its end are killed."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()
