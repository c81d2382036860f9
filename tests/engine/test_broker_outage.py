"""Issue #10 section 4: a wall-clock worker whose first timer falls due during a broker outage.

Its own broker (stopped and started again on the same ports and data): the worker must not
exit, `/health` must say `degraded` while the broker is down, the log must not flood, and the
timer's SLA events must be emitted once the broker is back (exactly once).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from deploy.kafka_local import LocalKafka
from events.instants import format_instant
from tests.engine.helpers import Worker, cli, new_topics, read_topic, sla_events, write_jsonl

pytestmark = pytest.mark.kafka

POLICY = """
name = "outage"
[calendar]
timezone = "UTC"
open = "00:00"
close = "23:59"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[severity.1]
first_response = { target = "25s", clock = "elapsed" }
"""


def test_the_ticker_survives_a_broker_outage_and_health_says_degraded(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka").start()
    worker: Worker | None = None
    try:
        bootstrap = broker.bootstrap_servers
        topics = new_topics("outage", partitions=1)
        policy = tmp_path / "policy.toml"
        policy.write_text(POLICY)
        worker = Worker(bootstrap, topics, tmp_path / "worker.log", clock="wall", policy=policy)
        worker.start().wait_ready(partitions=1, timeout=90)
        opened_at = time.time()
        ticket = {
            "event_id": "o1",
            "ticket_id": "OUT",
            "type": "ticket.opened",
            "occurred_at": format_instant(int(opened_at * 1e6)),
            "severity": 1,
        }
        done = cli("publish", str(write_jsonl(tmp_path / "t.jsonl", [ticket])), *topics.flags(),
                   broker=bootstrap)  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        deadline = time.monotonic() + 20
        while (worker.health() or {}).get("open_tickets") != 1:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        broker.stop()
        lines_before = len(worker.log_path.read_text(errors="replace").splitlines())
        stopped = time.monotonic()
        # The breach falls due (opened + 25 s) while the broker is down; stay down past it.
        while time.time() < opened_at + 40:
            time.sleep(1)
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        health = worker.health()
        assert health is not None and health["status"] == "degraded", health
        assert health["broker"]["reachable"] is False
        logged = len(worker.log_path.read_text(errors="replace").splitlines()) - lines_before
        per_second = logged / (time.monotonic() - stopped)
        assert per_second < 5, f"{logged} log lines during the outage:\n{worker.log_tail()}"
        broker.start()
        records = read_topic(bootstrap, topics.output, expect=1, timeout=120, settle=3.0)
        events = sla_events(records)
        assert [e["type"] for e in events] == ["sla.breached"], worker.log_tail()
        assert Counter(e["event_id"] for e in events).most_common(1)[0][1] == 1
        worker.wait_ready(timeout=60)
        assert orjson.dumps(worker.health())  # ok again
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
