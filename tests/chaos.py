"""Chaos run (on demand, not in CI): SIGKILLs, a broker stop/start and hostile records.

    python tests/chaos.py [--tickets 400] [--rounds 8] [--seed 1]

Starts its own Kafka broker (deploy/kafka_local.py, data kept across its restarts), an event
clock worker and a projector (`escalator projections serve`), then in rounds publishes part
of a seeded history with hostile records mixed in (tests/robust/hostile.py) and does one
harm (each at least once in 4 rounds or more): SIGKILL the worker, SIGKILL the projector,
stop the broker for a while, or nothing. At the end it ticks every partition to the history's
end and compares:

  lost        SLA events the replay gives for the valid lines but the committed output lacks
  duplicated  SLA events committed more than once
  stuck       input records not dead-lettered and not processed (consumer lag), plus table
              rows where the live projection differs from a rebuild of the same topics

Prints the counts; exit status 0 only if all three are zero.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from deploy.kafka_local import LocalKafka
from deploy.local_service import free_port
from events.instants import DAY, format_instant, parse_instant
from events.samples import generate_history
from projections.db import Database
from projections.projector import Projector, Topics
from projections.store import dump_tables
from streams.engine.cli import _key_of
from streams.engine.topics import ensure_topics, topic_limits
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from tests.engine.helpers import REPO, Worker, new_topics, read_topic, sla_events
from tests.robust.hostile import hostile_records, mix

PARTITIONS = 4


async def produce(broker: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for value in values:
            key = _key_of(value)
            await producer.send(topic, value, key=key, partition=None if key else 0)
        await producer.flush()
    finally:
        await producer.stop()


def publish(broker: str, topic: str, values: list[bytes]) -> None:
    """Produce, retrying through a broker outage (a record is never skipped)."""
    while True:
        try:
            asyncio.run(asyncio.wait_for(produce(broker, topic, values), 60))
            return
        except Exception as exc:  # the broker is restarting: try again
            print(f"  publish retry ({type(exc).__name__})", flush=True)
            time.sleep(2)


class Projection:
    """`escalator projections serve` as a process one can SIGKILL."""

    def __init__(self, broker: str, db: Path, topics: Topics, log: Path) -> None:
        self.args = [
            sys.executable, "-m", "deploy.cli", "projections", "serve", "--db", str(db),
            "--broker", broker, "--ticket-topic", topics.tickets, "--sla-topic", topics.sla,
            "--port", str(free_port()), "--group", f"chaos-{os.getpid()}",
        ]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    history = generate_history(args.tickets, seed=args.seed)
    valid = [orjson.dumps(item) for item in history]
    hostile = hostile_records(rng, history, max(20, args.tickets // 10))
    mixed = mix(rng, valid, hostile)
    until = parse_instant(history[-1]["occurred_at"]) + 30 * DAY
    policy = load_policy()
    reference = list(Replayer(policy).run(valid, until))
    work = Path(tempfile.mkdtemp(prefix="escalator-chaos-"))
    print(f"chaos: {len(valid)} valid + {len(hostile)} hostile records, {len(reference)} SLA "
          f"events expected; logs in {work}", flush=True)  # fmt: skip
    broker = LocalKafka(data_dir=work / "kafka").start()
    bootstrap = broker.bootstrap_servers
    topics = new_topics("chaos", PARTITIONS)
    names = [topics.input, topics.output, topics.dlq]
    asyncio.run(ensure_topics(bootstrap, names, PARTITIONS, configs=topic_limits(*names)))
    worker = Worker(bootstrap, topics, work / "worker.log", clock="event").start()
    projection_topics = Topics(tickets=topics.input, sla=topics.output)
    live_db = work / "live.sqlite3"
    projection = Projection(bootstrap, live_db, projection_topics, work / "projector.log")
    projection.start()
    try:
        size = -(-len(mixed) // args.rounds)  # contiguous chunks keep each ticket's order
        chunks = [mixed[i : i + size] for i in range(0, len(mixed), size)]
        harms = (["kill-worker", "kill-projector", "broker", "none"] * len(chunks))[: len(chunks)]
        rng.shuffle(harms)  # with 4 rounds or more, each harm at least once
        for number, chunk in enumerate(chunks, start=1):
            publish(bootstrap, topics.input, chunk)
            harm = harms[number - 1]
            time.sleep(rng.uniform(0.2, 3.0))
            print(f"round {number}: {len(chunk)} records, {harm}", flush=True)
            if harm == "kill-worker":
                worker.kill()
                worker.start()
            elif harm == "kill-projector":
                projection.kill()
                projection.start()
            elif harm == "broker":
                broker.stop()
                time.sleep(rng.uniform(5, 20))
                broker.start()
        tick = orjson.dumps({"type": "clock.tick", "occurred_at": format_instant(until)})
        for p in range(PARTITIONS):
            asyncio.run(_tick(bootstrap, topics.input, tick, p))
        records = read_topic(bootstrap, topics.output, expect=len(reference), timeout=300)
        output = sla_events(records)
        counts = Counter(e["event_id"] for e in output)
        lost = len({e["event_id"] for e in reference} - set(counts))
        duplicated = sum(n - 1 for n in counts.values() if n > 1)
        letters = read_topic(bootstrap, topics.dlq, expect=len(hostile), timeout=60, settle=3)
        stuck = max(0, len(hostile) - len(letters))
        time.sleep(10)  # let the projector catch up, then compare it with a rebuild
        projection.stop()
        live = dump_tables(Database(str(live_db)))
        rebuilt = Projector(str(work / "rebuilt.sqlite3"), policy, bootstrap, projection_topics)
        asyncio.run(rebuilt.rebuild())
        again = dump_tables(rebuilt.db)
        stuck += sum(len(set(live[t]) ^ set(again[t])) for t in live)
        print(f"lost {lost}, duplicated {duplicated}, stuck {stuck}", flush=True)
        return 0 if lost == duplicated == stuck == 0 else 1
    finally:
        worker.stop()
        projection.stop()
        broker.stop()


async def _tick(broker: str, topic: str, tick: bytes, partition: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(topic, tick, partition=partition)
    finally:
        await producer.stop()


if __name__ == "__main__":
    sys.exit(main())
