"""The engine's output for the stored sample history, byte for byte against a stored copy.

Records of different tickets interleave differently run to run (two partitions), so the
comparison is on the sorted multiset of record values, each value compared as bytes; a ticket's
own order is checked against the stored replay. A renovation (issue #21) leaves
`tests/golden/engine-sample.jsonl` unchanged; `ESCALATOR_REGENERATE_GOLDEN=1` rewrites it for a
change that means to alter behaviour.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.engine.helpers import Worker, cli, new_topics, per_ticket, read_topic
from tests.golden.regenerate import HERE

pytestmark = pytest.mark.kafka

STORED = HERE / "engine-sample.jsonl"
UNTIL = "2027-01-31T00:00:00Z"  # past every deadline of the sample history


def test_engine_output_is_byte_identical_to_the_stored_copy(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = new_topics("golden", partitions=2)
    worker = Worker(kafka_bootstrap, topics, tmp_path / "worker.log", clock="event").start()
    regenerate = os.environ.get("ESCALATOR_REGENERATE_GOLDEN") == "1"
    expect = None if regenerate else len(STORED.read_bytes().splitlines())
    try:
        worker.wait_ready(partitions=2)
        done = cli(
            "publish", str(HERE / "sample.jsonl"), "--tick", UNTIL, *topics.flags(),
            broker=kafka_bootstrap,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        records = read_topic(kafka_bootstrap, topics.output, expect=expect, timeout=120)
    finally:
        worker.stop()
    got = sorted(bytes(r.value) for r in records)
    if regenerate:
        STORED.write_bytes(b"".join(v + b"\n" for v in got))
    stored = STORED.read_bytes().splitlines()
    assert len(got) == len(stored), worker.log_tail()
    changed = [(a, b) for a, b in zip(stored, got, strict=True) if a != b]
    assert not changed, f"{len(changed)} records changed, first: {changed[0]}"
    # within a ticket, the engine's order is the replay's (the stored replay runs to the last
    # event only, so its events are a per-ticket prefix of the engine's)
    replayed = per_ticket(orjson.loads(line) for line in
                          (HERE / "replay-default.jsonl").read_bytes().splitlines())  # fmt: skip
    engine = per_ticket(orjson.loads(r.value) for r in records)
    assert all(engine[t][: len(ids)] == ids for t, ids in replayed.items())
