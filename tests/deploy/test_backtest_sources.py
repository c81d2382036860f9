"""`escalator backtest --from-db / --from-topic` (issue #22): the last N days of real tickets
give the same comparison as the same history read from a JSONL file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from deploy.kafka_local import unique_name
from projections.db import Database
from projections.schema import migrate
from projections.store import Store
from streams.engine.cli import publish_lines
from streams.sla.policy import load_policy
from tests.core.test_backtest import PROPOSED, SAMPLE, UNTIL
from tests.projections.helpers import TICKETS, as_records

COMPARED = ("summary", "changed", "escalations_gained", "escalations_lost")


def _backtest(*source: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "backtest", *source, "--against", str(PROPOSED),
         "--until", UNTIL, "--format", "json"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    report: dict[str, Any] = orjson.loads(done.stdout)
    return {key: report[key] for key in COMPARED}


def test_from_the_projections_database(tmp_path: Path) -> None:
    target = str(tmp_path / "projections.sqlite3")
    db = Database(target)
    migrate(db)
    store = Store(db, load_policy())
    store.apply_batch("ticket", as_records(TICKETS, SAMPLE.read_bytes().splitlines()))
    db.close()
    expected = _backtest("--input", str(SAMPLE))
    assert expected["changed"], "the sample's proposal changes outcomes"
    assert _backtest("--from-db", target, "--days", "30") == expected
    # a window that starts after every ticket was reported: nothing to compare
    empty = _backtest("--from-db", target, "--days", "0.01")
    assert empty["summary"] == [] and empty["changed"] == []


@pytest.mark.kafka
def test_from_the_ticket_topic(kafka_bootstrap: str) -> None:
    import asyncio

    topic = unique_name("backtest-tickets")
    asyncio.run(publish_lines(kafka_bootstrap, topic, SAMPLE.read_bytes().splitlines()))
    expected = _backtest("--input", str(SAMPLE))
    got = _backtest("--from-topic", topic, "--broker", kafka_bootstrap, "--days", "7")
    assert got == expected
