"""The one module that uses faust-streaming's internals: pinned version, quiet logging."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterator
from importlib.metadata import version

import faust
import pytest

from streams.engine import faust_batch
from tests.engine.helpers import REPO


def test_installed_faust_is_the_version_the_internals_were_checked_against() -> None:
    # Fails with the module's own message (both versions, what to do) on any other release.
    faust_batch.check_faust_version()
    assert version("faust-streaming") == faust_batch.FAUST_VERSION


def test_pyproject_pins_exactly_that_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.startswith("faust-streaming")]
    assert pins == [f"faust-streaming=={faust_batch.FAUST_VERSION}"]


def test_another_version_is_refused_with_a_clear_message() -> None:
    with pytest.raises(RuntimeError) as caught:
        faust_batch.check_faust_version("0.11.3")
    message = str(caught.value)
    assert "faust-streaming 0.11.3 is installed" in message
    assert f"faust-streaming=={faust_batch.FAUST_VERSION}" in message
    assert "streams/engine/faust_batch.py" in message


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_worker_at_warn_keeps_aiokafka_debug_off(restore_logging: None) -> None:
    """Faust's worker at `warn` turns the root logger to DEBUG for its spinner; aiokafka then
    formats a debug line per record sent. `quiet_worker` keeps the level asked for."""
    app = faust.App("quiet-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    stock = faust.Worker(app, loglevel="warn", redirect_stdouts=False, quiet=True)
    stock._setup_logging()
    assert logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)  # the trap, as shipped
    quiet = faust_batch.quiet_worker(app, "warn")
    quiet._setup_logging()
    assert logging.getLogger().level == logging.WARNING
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.INFO)
