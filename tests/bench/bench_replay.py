"""Replay throughput: input events per second through `escalator replay`'s code path, one core.

Generates a realistic history (events/samples.py: assignments, replies, pauses, severity
changes, reopenings, closes) and times decode -> fold -> encode for every line, reporting
the best of several runs, and the peak memory of the ticket states.

    python tests/bench/bench_replay.py [--tickets 50000] [--runs 8] [--breakdown]
    python tests/bench/bench_replay.py --policy deploy/examples/vendor-policy.toml
    python tests/bench/bench_replay.py --max-delay 15m

--policy runs a policy file with several policies and calendars instead of the default, on the
same history with routing attributes added (a fifth of the tickets `tier = "gold"`, a quarter
in group `emea`, one in ten moved by a `ticket.updated`), and also times the default policy on
that history in the same run, as the reference. A file with OLAs (`[[olas]]`, e.g.
deploy/examples/vendor-olas.toml) runs on the history routed through the support tiers
instead (`samples.with_tiers`: two thirds first assigned to L1, half of those moved to L2, some
on to L3 or back), so each ticket has its tier's OLA and the hand-off OLA at once.

--max-delay replays with that bounded out-of-orderness (`escalator replay`'s default is 15m:
output is held in a buffer until the watermark passes it) and also times the time-ordered
replay (0, the default here) in the same run, as the reference.

--against DIR times another checkout of Escalator (its own `DIR/.venv`, built) on the same
history, alternating with this code round by round (--runs rounds, in ABBA order; a round is
3 runs in a fresh process of each tree): the machine's speed drifts by 10-20% within minutes
here, which two benches run one after the other cannot tell from a difference between the
codes. Prints each round's rates and ratio, each side's best, the ratio of the bests and the
median ratio (how issue #8 compares with 6c9b478).

--breakdown also times the stages on their own (best of the runs, microseconds per input
event): decode (JSON + pydantic + event.at), fold (Replayer.feed on decoded events, timers
included) and encode (orjson.dumps of the output). The garbage collector is off for these:
with every decoded event held at once it would cost far more than in the streaming replay.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import orjson

from base.durations import parse_delay
from events.codec import decode_ticket_event
from events.samples import generate_history, with_routing, with_tiers
from events.sla_records import wire
from streams.sla.cli import quiet_gc
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy

_ROUND = """
import gc, sys, time
import orjson
from streams.sla.cli import quiet_gc
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
with open(sys.argv[1], "rb") as source:
    lines = source.read().splitlines()
policy = load_policy(None)
quiet_gc()
best = 0.0
for _ in range(int(sys.argv[2])):
    gc.collect()
    replayer = Replayer(policy)
    start = time.process_time()
    out = [orjson.dumps(record) for record in replayer.run(lines)]
    best = max(best, len(lines) / (time.process_time() - start))
print(best, len(out))
"""
"""One round of `--against`, run by each tree's own Python in its own directory: the default
policy, time-ordered, best of argv[2] runs (as `_rate`), with APIs both trees have."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--breakdown", action="store_true", help="also time each stage")
    parser.add_argument("--policy", help="a policy file with several policies (see above)")
    parser.add_argument("--max-delay", default="0", help="bounded out-of-orderness, e.g. 15m")
    parser.add_argument("--against", help="another checkout to alternate with (see above)")
    args = parser.parse_args()
    max_delay = parse_delay(args.max_delay)
    policy = load_policy(args.policy)
    history = generate_history(args.tickets, seed=11)
    if args.policy:
        routed = with_tiers if policy.olas else with_routing
        history = routed(history, seed=11)
    lines = [orjson.dumps(event) for event in history]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"history: {args.tickets:,} tickets, {len(lines):,} events")
    if args.against:
        _against(lines, args.against, args.runs)
        return
    quiet_gc()  # as `escalator replay` does
    best, emitted = _rate(lines, policy, args.runs, max_delay)
    shape = f" ({len(policy.policies)} policies, {len(policy.calendars)} calendars"
    shape += f", {len(policy.olas)} OLAs)" if policy.olas else ")"
    print(
        f"replay: {best:,.0f} input events/s per CPU-second (best of {args.runs}), "
        f"{emitted:,} SLA events out{shape if args.policy else ''}"
    )
    floor = _floor(lines, args.runs)
    print(
        f"reference: the JSON floor (orjson parse + encode of each line) in the same run "
        f"{floor:,.0f} lines/s; replay at {best / floor:.2f} of it"
    )
    if max_delay:
        reference, _ = _rate(lines, policy, args.runs)
        print(
            f"reference: time-ordered (max delay 0) in the same run {reference:,.0f} events/s; "
            f"ratio {best / reference:.2f} with max delay {args.max_delay}"
        )
    if args.policy:
        reference, _ = _rate(lines, load_policy(), args.runs, max_delay)
        print(
            f"reference: the default policy on the same history {reference:,.0f} events/s; "
            f"ratio {best / reference:.2f}"
        )

    if args.breakdown:
        _breakdown(lines, policy, args.runs, max_delay)

    # Memory: states held while tickets are open, measured on the same history.
    tracemalloc.start()
    replayer = Replayer(policy, max_delay)
    peak_open = 0
    for index, _record in enumerate(replayer.run(lines)):
        if index % 1000 == 0:
            peak_open = max(peak_open, len(replayer.tickets))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"memory: peak {peak / 1e6:,.1f} MB traced with up to {peak_open:,} tickets in state "
        f"(~{peak / max(peak_open, 1):,.0f} bytes per ticket, incl. the timer index)"
    )


def _rate(lines: list[bytes], policy: Policy, runs: int, max_delay: int = 0) -> tuple[float, int]:
    """Best input events per CPU-second over `runs` replays, and the SLA events out."""
    best = 0.0
    emitted = 0
    for _ in range(runs):
        gc.collect()
        replayer = Replayer(policy, max_delay)
        start = time.process_time()  # CPU time of this process: robust to other load
        out = [orjson.dumps(record) for record in replayer.run(lines)]
        elapsed = time.process_time() - start
        emitted = len(out)
        best = max(best, len(lines) / elapsed)
    return best, emitted


def _floor(lines: list[bytes], runs: int) -> float:
    """Best lines per CPU-second over `runs` passes of orjson parsing each line and encoding
    it again: what any replay must at least do, the reference of issue #26."""
    best = 0.0
    for _ in range(runs):
        gc.collect()
        start = time.process_time()
        for line in lines:
            orjson.dumps(orjson.loads(line))
        best = max(best, len(lines) / (time.process_time() - start))
    return best


def _against(lines: list[bytes], other: str, rounds: int) -> None:
    """Alternate this tree and `other` round by round (ABBA order), 3 runs a round each."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trees = {"this": (sys.executable, here), "against": (f"{other}/.venv/bin/python", other)}
    if not os.path.exists(trees["against"][0]):
        raise SystemExit(f"--against {other}: no {other}/.venv/bin/python (build it there first)")
    best = {"this": 0.0, "against": 0.0}
    ratios = []
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as history:
        history.write(b"\n".join(lines))
        history.flush()
        for number in range(rounds):
            order = ["this", "against"] if number % 2 == 0 else ["against", "this"]
            rates, out = {}, {}
            for side in order:
                python, tree = trees[side]
                done = subprocess.run(
                    [python, "-c", _ROUND, history.name, "3"],
                    cwd=tree,
                    capture_output=True,
                    text=True,
                )
                if done.returncode:
                    raise SystemExit(f"--against: {side} ({tree}) failed:\n{done.stderr}")
                rate, out[side] = done.stdout.split()
                rates[side] = float(rate)
                best[side] = max(best[side], rates[side])
            ratios.append(rates["this"] / rates["against"])
            print(
                f"round {number + 1}: this {rates['this']:,.0f}, against {rates['against']:,.0f} "
                f"events/s, ratio {ratios[-1]:.2f} (SLA events out: {out['this']}, "
                f"{out['against']})"
            )
    print(
        f"replay: this {best['this']:,.0f}, against {other} {best['against']:,.0f} input "
        f"events/s per CPU-second (best of {rounds} rounds of 3 runs); ratio of bests "
        f"{best['this'] / best['against']:.2f}, median of rounds {statistics.median(ratios):.2f}"
    )


def _breakdown(lines: list[bytes], policy: Policy, runs: int, max_delay: int) -> None:
    decode = fold = encode = float("inf")
    gc.disable()
    for _ in range(runs):
        gc.collect()
        start = time.process_time()
        events = [decode_ticket_event(line) for line in lines]
        for event in events:
            event.at  # noqa: B018 (part of decoding: computed once per event)
        decode = min(decode, time.process_time() - start)
        replayer = Replayer(policy, max_delay)
        out = []
        start = time.process_time()
        for event in events:
            out.extend(replayer.feed(event)[0])
        out.extend(replayer.finish(max(event.at for event in events)))
        fold = min(fold, time.process_time() - start)
        start = time.process_time()
        for record in out:
            orjson.dumps(wire(record))
        encode = min(encode, time.process_time() - start)
    gc.enable()
    per_event = 1e6 / len(lines)
    print(
        f"stages: decode {decode * per_event:.2f} us, fold {fold * per_event:.2f} us, "
        f"encode {encode * per_event:.2f} us per input event (best of {runs}, gc off)"
    )


if __name__ == "__main__":
    main()
