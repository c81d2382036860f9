"""Scale-out benchmark: 1, 2 and 4 workers of one app on an 8-partition input; prints figures.

    python tests/bench/bench_engine_scaleout.py [--broker HOST:PORT] [--history 5000]

For each worker count: the workers start on an empty input topic (event clock,
exactly-once) and are left to settle until each owns its share of the 8 partitions; then a
generated history is published and the rate is ticket events / (publish start -> every offset
committed). CPU per event sums the workers' CPU time (/proc) over the same span. The
machine has 2 cores shared with other work: beyond 2 workers the rate is bounded by cores,
not by the engine (compare the CPU per event, which should stay flat).
Without --broker a local Kafka is started with `deploy.kafka_local`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deploy.kafka_local import LocalKafka, unique_name  # noqa: E402
from events.samples import generate_history  # noqa: E402
from streams.engine.cli import publish_lines  # noqa: E402
from streams.engine.topics import ensure_topics  # noqa: E402
from tests.bench import bench_engine  # noqa: E402
from tests.bench.bench_engine import Worker  # noqa: E402

PARTITIONS = 8


def settle(workers: list[Worker], timeout: float = 180) -> None:
    """Until every worker is ready and owns PARTITIONS / len(workers) partitions."""
    share = PARTITIONS // len(workers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [(w.health() or {}).get("partitions", []) for w in workers]
        if all(len(o) == share for o in owned) and len({p for o in owned for p in o}) == 8:
            return
        time.sleep(0.2)
    raise SystemExit("workers did not settle on an even assignment")


def run(broker: str, count: int, lines: list[bytes], tmp: Path) -> tuple[float, float]:
    base = unique_name(f"scale-{count}")
    topics = [f"{base}-in", f"{base}-out", f"{base}-dlq"]
    asyncio.run(ensure_topics(broker, topics, PARTITIONS))
    workers = [
        Worker(broker, base, "event", None, tmp / f"{base}-{n}.log", partitions=PARTITIONS)
        for n in range(count)
    ]
    try:
        for worker in workers:
            worker.ready()
        settle(workers)
        cpu0 = sum(w.cpu_seconds() for w in workers)
        started = time.monotonic()
        asyncio.run(publish_lines(broker, topics[0], lines))
        done = bench_engine.wait_drained(broker, f"{base}-app", topics[0])
        cpu1 = sum(w.cpu_seconds() for w in workers)
    finally:
        for worker in workers:
            worker.kill()
    return len(lines) / (done - started), (cpu1 - cpu0) / len(lines) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--history", type=int, default=5000, help="tickets per run")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    args = parser.parse_args()
    bench_engine.PARTITIONS = PARTITIONS  # the drain check reads every input partition
    local = None
    if not args.broker:
        local = LocalKafka().start()
        args.broker = local.bootstrap_servers
    try:
        lines = [orjson.dumps(e) for e in generate_history(args.history, seed=5)]
        print(
            f"{len(lines):,} ticket events ({args.history:,} tickets), 8 partitions, "
            f"exactly-once, {os.cpu_count()} cores (shared):"
        )
        with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
            first = None
            for count in args.workers:
                rate, cpu = run(args.broker, count, lines, Path(tmp))
                first = first or rate
                print(
                    f"{count} worker(s): {rate:,.0f} events/s ({rate / first:.2f}x of 1 worker), "
                    f"{cpu:.0f} us CPU/event summed over workers"
                )
    finally:
        if local is not None:
            local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
