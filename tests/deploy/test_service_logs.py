"""JSON logs of the real services, and no ticket free text in any of their log lines.

One worker (`escalator run`) and one projector (`escalator projections serve`) run with
`--log-format json` against the real broker; the input carries free text in the fields where
upstream systems put it (title, description, comment body), in valid records and in records
that are dead-lettered or rejected for other reasons.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from deploy.local_service import free_port
from tests.engine.helpers import REPO, Worker, cli, new_topics, read_topic, write_jsonl

pytestmark = pytest.mark.kafka

SECRET = "SECRET-free-text-4711"
AT = "2026-11-23T14:00:00Z"


def _inputs() -> list[bytes]:
    def event(kind: str, ticket: str, n: int, **fields: Any) -> bytes:
        return orjson.dumps(
            {"type": kind, "event_id": f"{ticket}-e{n}", "ticket_id": ticket, "occurred_at": AT,
             **fields}
        )  # fmt: skip

    free = {"title": f"{SECRET} title", "description": f"{SECRET} description"}
    return [
        event("ticket.opened", "T-L1", 1, severity=2, customer_id="c1", **free),
        event("ticket.commented", "T-L1", 2, body=f"{SECRET} comment"),  # unknown type
        event("ticket.opened", "T-L2", 1, severity=f"{SECRET} urgent", **free),  # bad severity
        f'{{"type": "ticket.opened", "title": "{SECRET}'.encode(),  # malformed JSON
        event("ticket.responded", "T-never", 1, comment=f"{SECRET} reply"),  # unknown ticket
        event("ticket.responded", "T-L1", 3, comment=f"{SECRET} reply"),
    ]


def _json_lines(text: str, source: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.strip():
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                pytest.fail(f"{source}: a log line that is not JSON: {line!r}")
    return lines


def test_worker_and_projector_log_json_without_free_text(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = new_topics("logs", partitions=2)
    inputs = _inputs()
    worker = Worker(
        kafka_bootstrap, topics, tmp_path / "worker.log", clock="event",
        extra=["--log-format", "json"],
    )  # fmt: skip
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "ESCALATOR_LOG_FORMAT": "json"}
    projector: subprocess.Popen[bytes] | None = None
    try:
        worker.start().wait_ready(partitions=2)  # it creates the topics
        projector = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "projections", "serve",
             "--db", str(tmp_path / "p.sqlite3"), "--broker", kafka_bootstrap,
             "--port", str(port), "--ticket-topic", topics.input, "--sla-topic", topics.output,
             "--consumer-group", topics.app_id + "-projections"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        done = cli(
            "publish", str(write_jsonl(tmp_path / "in.jsonl", inputs)), "--tick", AT,
            "--ticket-topic", topics.input, broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        dead = read_topic(kafka_bootstrap, topics.dlq, expect=4, timeout=60, settle=1.0)
        assert len(dead) == 4, worker.log_tail()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the projector has applied T-L1's reply
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/tickets/T-L1", timeout=2
                ) as reply:
                    if orjson.loads(reply.read()).get("first_response_at"):
                        break
            except (OSError, urllib.error.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the projector did not apply T-L1's events")
    finally:
        worker.stop()
        projector_log = ""
        if projector is not None:
            projector.send_signal(signal.SIGTERM)
            projector_log = projector.communicate(timeout=30)[1].decode(errors="replace")
    worker_log = worker.log_path.read_text(errors="replace")

    assert SECRET not in worker_log
    assert SECRET not in projector_log
    worker_lines = _json_lines(worker_log, "worker")
    projector_lines = _json_lines(projector_log, "projector")

    # Repeats of one kind of warning are logged once per 10 s (streams.engine.health), so
    # at least the first dead letter is there, with where it was and whose it was.
    dead_lettered = [line for line in worker_lines if line["event"].startswith("dead-lettered")]
    assert dead_lettered, worker_log
    for line in dead_lettered:
        assert line["level"] == "warning" and line["topic"] == topics.input
        assert isinstance(line["partition"], int) and isinstance(line["offset"], int)
    assert any(line.get("ticket_id", "").startswith("T-") for line in dead_lettered)
    assert any(line["event"].startswith("worker starting") for line in worker_lines)

    invalid = [line for line in projector_lines if "invalid ticket record" in line["event"]]
    # three of one kind (unknown type, bad severity, malformed JSON): logged once per 10 s
    # like the worker's (base.logs.RepeatFilter on every service's handler)
    assert len(invalid) == 1, projector_log
    assert all(isinstance(line["partition"], int) for line in invalid)
    rejected = [line for line in projector_lines if "rejected ticket event" in line["event"]]
    assert [(r["ticket_id"], r["event_id"]) for r in rejected] == [("T-never", "T-never-e1")]
