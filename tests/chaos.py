"""Jepsen-style fault run: workers come and go, get SIGKILLed and lose their broker while a
seeded history with hostile records streams in; the committed result must be what `escalator
replay` gives for the valid input, event by event.

    python tests/chaos.py [--rounds 9] [--tickets 4000] [--seed 1] [--work DIR] [--json]
                          [--worker-tree DIR] [--schedule killmid,kill,...]

--worker-tree (or ESCALATOR_WORKER_TREE) runs the workers and the reference replay from
another checkout with its own .venv (`git worktree add /tmp/old-engine 8b65012`, then its
venv), to show that the run finds the fault of the code before a fix.

The run drives the system only from outside, as an operator would: `escalator sample`,
`escalator run` processes (3 slots on one app id, event clock, 4 partitions, each its own
--port and --data-dir), their /health and /metrics, `escalator replay`, `escalator publish
--tick`, and plain Kafka clients (a producer keyed by ticket id as `escalator publish` keys,
an admin client, read_committed consumers). It starts its own broker so it can stop it.

Input: the valid history and hostile records (tests/robust/hostile.py) spread through it,
produced at a steady rate across the rounds, so that at each harm some worker is consuming.

Harms, one per round (`SCHEDULE`, repeated for more rounds):
  kill            SIGKILL a worker seen consuming (its escalator_events_in_total rising
                  between two scrapes; the longest-running one first, which has kept its
                  partitions through the last rebalances), then restart it (a join)
  scale-out-kill  as the issue's reproduction: the input pauses, the workers leave
                  (SIGTERM), a new one (empty --data-dir) starts and owns every partition,
                  idle; 1-3 s later a second joins (the first keeps two partitions), a
                  backlog of FLOOD records arrives at full speed, and 1-1.5 s into it the
                  first worker, seen consuming its kept partitions, is SIGKILLed; as in
                  the reproduction it is restarted 1 s later, SIGKILLed again 1.5 s after
                  that (restart-kill, while it joins) and restarted 1 s later
  killmid         as `worker_recovery.sh killmid`: the workers leave, two new ones start
                  (empty --data-dir; in round 1 the run's own two on new topics), the second
                  joins, half the records left arrive at full speed; as soon as the first
                  (which kept two partitions) is seen consuming it is SIGKILLed,
                  restarted 1 s later and SIGKILLed again 1.5 s after each restart (a
                  join-kill, while it starts or joins), 3 kills in all, then restarted
  rebalance-kill  a worker joins; SIGKILL a worker seen consuming just before, while the
                  group rebalances
  scale-in        a worker joins, then a consuming older worker is stopped (SIGTERM)
  broker          the broker is stopped for a few seconds and started again
Every harm is logged with its target's pid, whether it was alive and consuming before and
dead after: only such a harm counts as landed. A worker that exits by itself is logged and
restarted (as a supervisor would).

At the end a tick moves every partition to the history's end plus 30 days, the run waits until
the group's committed input offsets reach the end offsets, then reads the output and
dead-letter topics (read_committed) and compares (tests/robust/verdict.py): lost, duplicated,
extra, changed, reordered SLA events; valid records dead-lettered; hostile records not
dead-lettered exactly once with their original bytes. Prints a summary; exit status 0 only if
every count is zero and the group caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from deploy.kafka_local import LocalKafka
from deploy.local_service import pid_alive
from events.instants import DAY, format_instant, parse_instant
from tests.engine.helpers import HERE, Topics, Tree, Worker, cli, new_topics
from tests.robust.hostile import hostile_records, mix
from tests.robust.verdict import EventCounts, LetterCounts, compare_events, compare_letters

PARTITIONS = 4
SLOTS = 3
SCHEDULE = (
    "killmid",
    "scale-out-kill",
    "rebalance-kill",
    "kill",
    "scale-in",
    "kill",
    "broker",
    "scale-out-kill",
    "rebalance-kill",
)
"""The bounded run's rounds (7 kill rounds: 2 after a scale-out, 2 during a rebalance, and
first, on the new topics as in `worker_recovery.sh killmid`, 1 `killmid` with 2 more kills of
the restarted worker while it joins)."""
KILLS = ("kill", "scale-out-kill", "rebalance-kill", "killmid")
JOIN_KILLS = ("join-kill",)
"""Kills of a worker restarted 1.5 s before, while it joins: it cannot be seen consuming yet,
so such a kill has landed when the process was alive before and gone after."""
KILLMID_KILLS = 3
ROUND_SECONDS = 11.0
"""Shortest round length assumed when spreading the input over the rounds (seconds)."""
DWELL = (2.0, 5.0)
"""Seconds between a harm and the next round's, drawn uniformly."""
BURST = 2000
"""Records published at full speed just before a `kill`."""
FLOOD = 8000
"""At most this many records (half of those not yet sent) arrive at full speed after a
scale-out, before its kill: the reproduction's first worker read about 4,900 records of its
two kept partitions in the 1.5 s before its kill, with thousands more behind them."""
WARM_UP = 3.0
"""Seconds of input before the first harm."""


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------- the input


@dataclass
class Input:
    valid: list[bytes]
    hostile: list[bytes]
    stream: list[bytes]
    """Valid and hostile records in publication order (each ticket's order kept)."""
    until: str
    expected: list[dict[str, Any]]
    """`escalator replay` of the valid lines up to `until`."""


def make_input(
    work: Path, broker: str, tickets: int, hostile_count: int, seed: int, tree: Tree = HERE
) -> Input:
    """A seeded history (`escalator sample`), hostile records mixed in, and its replay by
    `tree`'s `escalator replay` (the code the workers run)."""
    sample = cli("sample", "--tickets", str(tickets), "--seed", str(seed), broker=broker)
    assert sample.returncode == 0, sample.stderr.decode()
    valid = [line for line in sample.stdout.splitlines() if line.strip()]
    history = [orjson.loads(line) for line in valid]
    rng = random.Random(seed)
    hostile = hostile_records(rng, history, hostile_count)
    stream = mix(rng, valid, hostile)
    until = format_instant(parse_instant(history[-1]["occurred_at"]) + 30 * DAY)
    (work / "valid.jsonl").write_bytes(b"\n".join(valid) + b"\n")
    expected = _replay(work / "valid.jsonl", until, broker, tree)
    # The hostile records must not change what the valid ones give: the replay of every
    # record that fits a JSONL line is the replay of the valid lines alone.
    lines = [r for r in stream if r.strip() and b"\n" not in r and not r.endswith(b"\r")]
    (work / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    mixed = _replay(work / "mixed.jsonl", until, broker, tree)
    assert mixed == expected, "the hostile records change the replay: not a sound input"
    return Input(valid, hostile, stream, until, expected)


def _replay(path: Path, until: str, broker: str, tree: Tree) -> list[dict[str, Any]]:
    done = cli("replay", "--input", str(path), "--until", until, broker=broker, tree=tree)
    assert done.returncode == 0, done.stderr.decode()
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


def key_of(value: bytes) -> bytes | None:
    """The record key `escalator publish` gives a line: its ticket id, else none."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    ticket = obj.get("ticket_id") if isinstance(obj, dict) else None
    return ticket.encode() if isinstance(ticket, str) and ticket else None


class Trickle(threading.Thread):
    """Produces the stream at `rate` records per second (acks=all, idempotent), pausable."""

    def __init__(self, broker: str, topic: str, stream: Sequence[bytes]) -> None:
        super().__init__(daemon=True, name="trickle")
        self.broker, self.topic = broker, topic
        self.records = [(key_of(value), value) for value in stream]
        self.rate = 200.0
        self.burst = 0
        """Records to send at full speed before going on at `rate`."""
        self.sent = 0
        self.error: BaseException | None = None
        self.flowing = threading.Event()
        self.flowing.set()
        self.paused = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the run, which then fails
            self.error = exc
        finally:
            self.done.set()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=2_000_000,
        )
        await producer.start()
        try:
            step = 0.05
            while self.sent < len(self.records):
                if not self.flowing.is_set():
                    await producer.flush()
                    self.paused.set()
                    while not self.flowing.is_set():
                        await asyncio.sleep(0.05)
                    self.paused.clear()
                size = max(1, round(self.rate * step))
                if self.burst > 0:
                    size = min(self.burst, 1000)
                    self.burst -= size
                batch = self.records[self.sent : self.sent + size]
                sends = [await producer.send(self.topic, v, key=k) for k, v in batch]
                await asyncio.gather(*sends)
                self.sent += len(batch)
                await asyncio.sleep(0 if self.burst else step)
        finally:
            await producer.stop()

    def pause(self) -> None:
        """Stop producing; returns once everything sent is acknowledged."""
        self.flowing.clear()
        while not (self.paused.wait(0.1) or self.done.is_set()):
            pass

    def resume(self) -> None:
        self.flowing.set()


# ------------------------------------------------------------------------------- workers


class Slot:
    """One worker's place: its own --port and --data-dir, kept across its restarts."""

    def __init__(self, name: str, broker: str, topics: Topics, work: Path, tree: Tree) -> None:
        (work / name).mkdir(parents=True, exist_ok=True)
        self.name = name
        self.worker = Worker(broker, topics, work / name / "worker.log", clock="event", tree=tree)
        self.started: float | None = None
        """When its current process started (monotonic); None while it is meant to be down."""

    @property
    def pid(self) -> int | None:
        return self.worker.proc.pid if self.worker.proc is not None else None

    def alive(self) -> bool:
        proc = self.worker.proc
        return proc is not None and proc.poll() is None and pid_alive(proc.pid)

    def start(self, fresh: bool = False) -> None:
        """Start its process; `fresh`: on an empty --data-dir (a worker on a new machine)."""
        if fresh:
            shutil.rmtree(self.worker.log_path.parent / "data", ignore_errors=True)
        self.worker.start()
        self.started = time.monotonic()

    def position(self) -> float | None:
        """escalator_events_in_total over its kinds (None if /metrics does not answer)."""
        try:
            text = self.worker.metrics()
        except (OSError, ValueError):
            return None
        lines = text.splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith("escalator_events_in_total{")
        )

    def owned(self) -> list[int]:
        health = self.worker.health() or {}
        return list(health.get("partitions") or ()) if health.get("status") == "ok" else []

    def sigkill(self) -> bool:
        """SIGKILL; True when the process is then gone."""
        proc = self.worker.proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.started = None
        return proc.returncode == -signal.SIGKILL and not pid_alive(proc.pid)

    def sigterm(self, timeout: float = 30.0) -> int | None:
        """SIGTERM; the exit status, or None if it did not exit in time (then SIGKILLed)."""
        proc = self.worker.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        self.started = None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return None


@dataclass
class Probe:
    slot: Slot
    pid: int | None
    alive: bool
    before: float | None
    after: float | None

    @property
    def consuming(self) -> bool:
        return self.alive and self.before is not None and (self.after or 0) > self.before

    def describe(self) -> str:
        state = "alive" if self.alive else "NOT alive"
        moving = "consuming" if self.consuming else "NOT consuming"
        return f"{state}, {moving} ({self.before} -> {self.after})"


def probe(slots: Sequence[Slot], gap: float = 0.3) -> list[Probe]:
    """Two scrapes of each slot's events_in_total `gap` seconds apart."""
    pids = [s.pid for s in slots]
    before = [s.position() for s in slots]
    time.sleep(gap)
    after = [s.position() for s in slots]
    return [
        Probe(s, pid, s.alive() and s.pid == pid, b, a)
        for s, pid, b, a in zip(slots, pids, before, after, strict=True)
    ]


# ------------------------------------------------------------------------------- the log


@dataclass
class Harm:
    round: int
    kind: str
    target: str
    at: float
    alive_before: bool
    consuming_before: bool
    dead_after: bool
    note: str = ""

    @property
    def landed(self) -> bool:
        consuming = self.consuming_before or self.kind in JOIN_KILLS
        return self.alive_before and consuming and self.dead_after

    def line(self) -> str:
        before = ("alive" if self.alive_before else "NOT alive") + (
            ", consuming" if self.consuming_before else ", NOT consuming"
        )
        after = "gone after" if self.dead_after else "STILL THERE after"
        verdict = "landed" if self.landed else "MISSED"
        return (
            f"round {self.round} {self.kind} {self.target} at {self.at:.1f} s: {before}; "
            f"{after}: {verdict}{'; ' + self.note if self.note else ''}"
        )


@dataclass
class Summary:
    rounds: int
    harms: list[Harm]
    unexpected_exits: list[str]
    valid_records: int
    events: EventCounts
    letters: LetterCounts
    caught_up: bool
    seconds: float
    work: str
    publish_error: str | None = None

    @property
    def kills(self) -> list[Harm]:
        return [h for h in self.harms if h.kind in KILLS]

    @property
    def ok(self) -> bool:
        e, d = self.events, self.letters
        return (
            self.caught_up
            and self.publish_error is None
            and e.lost == e.duplicated == e.extra == e.changed == e.reordered == 0
            and d.wrongly_dead_lettered == d.hostile_missing == d.hostile_duplicated == 0
            and d.unexplained == d.without_reason == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "kills": len(self.kills),
            "kills_landed": sum(h.landed for h in self.kills),
            "harms_landed": {
                kind: f"{sum(h.landed for h in self.harms if h.kind == kind)}"
                f"/{sum(1 for h in self.harms if h.kind == kind)}"
                for kind in dict.fromkeys(h.kind for h in self.harms)
            },
            "unexpected_exits": len(self.unexpected_exits),
            "valid_records": self.valid_records,
            **self.events.as_dict(),
            **self.letters.as_dict(),
            "caught_up": self.caught_up,
            "publish_error": self.publish_error,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
            "work": self.work,
        }

    def text(self) -> str:
        d = self.as_dict()
        e, dl = self.events, self.letters
        return (
            f"chaos: {d['rounds']} rounds, {d['kills']} kills ({d['kills_landed']} landed, "
            f"{d['kills'] - d['kills_landed']} missed), harms landed {d['harms_landed']}, "
            f"{d['unexpected_exits']} unexpected exits; {d['valid_records']} valid + "
            f"{dl.hostile} hostile records, {e.expected} SLA events expected, {e.records} "
            f"committed: lost {e.lost}, duplicated {e.duplicated}, extra {e.extra}, changed "
            f"{e.changed}, reordered {e.reordered}; wrongly dead-lettered "
            f"{dl.wrongly_dead_lettered}, hostile not dead-lettered {dl.hostile_missing}, "
            f"hostile dead-lettered twice {dl.hostile_duplicated}, unexplained dead letters "
            f"{dl.unexplained}; caught up {self.caught_up}; {d['seconds']} s; "
            f"{'OK' if self.ok else 'FAILED'} (logs in {self.work})"
        )


# ------------------------------------------------------------------------------- the run


class Run:
    def __init__(
        self,
        work: Path,
        rounds: int,
        tickets: int,
        hostile: int,
        seed: int,
        tree: Tree,
        schedule: Sequence[str] = SCHEDULE,
    ) -> None:
        self.work = work
        self.schedule = tuple(schedule)
        self.tree = tree
        self.rounds = rounds
        self.tickets = tickets
        self.hostile_count = hostile
        self.rng = random.Random(seed)
        self.seed = seed
        self.t0 = time.monotonic()
        self.harms: list[Harm] = []
        self.exits: list[str] = []
        self.round_started: list[float] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, harm: Harm) -> None:
        self.harms.append(harm)
        log("  " + harm.line())

    # -- set-up and tear-down

    def execute(self) -> Summary:
        self.broker = LocalKafka(data_dir=self.work / "kafka")
        self.broker.start()
        bootstrap = self.broker.bootstrap_servers
        self.topics = new_topics("chaos", PARTITIONS)
        self.slots = [
            Slot(f"worker-{i + 1}", bootstrap, self.topics, self.work, self.tree)
            for i in range(SLOTS)
        ]
        trickle: Trickle | None = None
        try:
            data = make_input(
                self.work, bootstrap, self.tickets, self.hostile_count, self.seed, self.tree
            )
            log(
                f"chaos: {len(data.valid)} valid + {len(data.hostile)} hostile records, "
                f"{len(data.expected)} SLA events expected, {self.rounds} rounds; workers "
                f"from {self.tree.root}; logs in {self.work}"
            )
            # As the reproduction: the first worker owns every partition, the second joins.
            for slot in self.slots[:2]:
                slot.start()
                slot.worker.wait_ready(timeout=90)
            trickle = self.trickle = Trickle(bootstrap, self.topics.input, data.stream)
            self.pace(0)
            if self.schedule[0] != "killmid":
                trickle.start()
                time.sleep(WARM_UP)
            for number in range(1, self.rounds + 1):
                self.pace(number)
                harm = self.schedule[(number - 1) % len(self.schedule)]
                log(f"round {number} ({self.now():.1f} s, {trickle.sent}/{len(data.stream)} "
                    f"records sent): {harm}")  # fmt: skip
                self.HARMS[harm](self, number)
                self.supervise(number)
                # The group rebalances, the workers that kept partitions go on with them.
                time.sleep(self.rng.uniform(*DWELL))
            return self.finish(data, trickle)
        finally:
            if trickle is not None:
                trickle.resume()
            for slot in self.slots:
                if slot.alive():
                    slot.sigkill()
            self.broker.stop()

    def pace(self, number: int) -> None:
        """Spread what is left of the input over the rounds left (at their pace so far)."""
        if number:
            self.round_started.append(self.now())
        spent = self.round_started[-1] - self.round_started[0] if number else 0.0
        per_round = max(ROUND_SECONDS, spent / (number - 1) if number > 1 else 0.0)
        left = len(self.trickle.records) - self.trickle.sent
        rounds_left = self.rounds - max(number, 1) + 1
        # Kept for the bursts and floods of the rounds left, so the last ones are not dry.
        kinds = [self.schedule[r % len(self.schedule)]
                 for r in range(max(number, 1) - 1, self.rounds)]  # fmt: skip
        reserve = BURST * sum(kind in ("kill", "scale-out-kill", "killmid") for kind in kinds)
        self.trickle.rate = max(
            20.0, (left - reserve) / (rounds_left * per_round + WARM_UP * (not number))
        )

    def finish(self, data: Input, trickle: Trickle) -> Summary:
        trickle.rate = 1e9
        trickle.done.wait(120)
        for slot in self.slots:
            if slot.started is None and sum(s.started is not None for s in self.slots) < 2:
                slot.start()
        running = [s for s in self.slots if s.started is not None]
        for slot in running:
            slot.worker.wait_ready(timeout=90)
        bootstrap = self.broker.bootstrap_servers
        tick = cli(
            "publish", "/dev/null", "--tick", data.until, *self.topics.flags(), broker=bootstrap
        )
        assert tick.returncode == 0, tick.stderr.decode()
        caught_up = asyncio.run(wait_caught_up(bootstrap, self.topics, timeout=120))
        self.supervise(self.rounds + 1)
        output = asyncio.run(read_committed(bootstrap, self.topics.output))
        letters = asyncio.run(read_committed(bootstrap, self.topics.dlq))
        return Summary(
            rounds=self.rounds,
            harms=self.harms,
            unexpected_exits=self.exits,
            valid_records=len(data.valid),
            events=compare_events(data.expected, [orjson.loads(r.value) for r in output]),
            letters=compare_letters(
                data.valid,
                data.hostile,
                [(r.value, dict(r.headers or ()).get("escalator.reason")) for r in letters],
            ),
            caught_up=caught_up,
            seconds=self.now(),
            work=str(self.work),
            publish_error=repr(trickle.error) if trickle.error else None,
        )

    def supervise(self, number: int) -> None:
        """Restart a worker that exited by itself (logged as an unexpected exit)."""
        for slot in self.slots:
            if slot.started is not None and not slot.alive():
                proc = slot.worker.proc
                code = proc.returncode if proc is not None else None
                message = f"round {number}: {slot.name} pid {slot.pid} exited by itself ({code})"
                log("  " + message + "; restarted")
                self.exits.append(message)
                slot.start()

    # -- choosing targets

    def running(self, but: Slot | None = None) -> list[Slot]:
        return [s for s in self.slots if s.started is not None and s is not but]

    def stopped(self) -> Slot:
        return next(s for s in self.slots if s.started is None)

    def consuming(self, slots: Sequence[Slot], timeout: float = 30.0) -> Probe:
        """The longest-running slot seen consuming; after `timeout`, the longest-running one."""
        order = sorted(slots, key=lambda s: s.started or 0.0)
        deadline = time.monotonic() + timeout
        while True:
            probes = probe(order)
            moving = [p for p in probes if p.consuming]
            if moving:
                return moving[0]
            if time.monotonic() > deadline:
                return probes[0]

    def join(self, number: int, wait: bool) -> Slot:
        """Start a stopped slot (scale-out); with `wait`, until it owns partitions."""
        joiner = self.stopped()
        joiner.start()
        if not wait:
            return joiner
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not joiner.owned() and joiner.alive():
            time.sleep(0.2)
        owned = joiner.owned()
        self.note(Harm(number, "scale-out", f"{joiner.name} pid {joiner.pid}", self.now(),
                       joiner.alive(), bool(owned), True, f"owns partitions {owned}"))  # fmt: skip
        return joiner

    def kill(self, number: int, kind: str, chosen: Probe, note: str = "") -> None:
        slot = chosen.slot
        target = f"{slot.name} pid {chosen.pid}"
        alive = slot.alive() and slot.pid == chosen.pid
        owned = "" if kind == "rebalance-kill" else f"owned {slot.owned()}; "
        dead = slot.sigkill() if alive else True
        self.note(Harm(number, kind, target, self.now(), alive, chosen.consuming, dead,
                       f"{owned}{chosen.describe()}{'; ' + note if note else ''}"))  # fmt: skip

    # -- the harms

    def burst(self) -> None:
        """A backlog at full speed, as the issue's reproduction publishes a whole history:
        the kill then lands while big batches are in open transactions."""
        self.trickle.burst += BURST
        time.sleep(self.rng.uniform(0.5, 1.5))

    def harm_kill(self, number: int) -> None:
        self.burst()
        chosen = self.consuming(self.running())
        self.kill(number, "kill", chosen)
        chosen.slot.start()

    def harm_scale_out_kill(self, number: int) -> None:
        self.trickle.pause()
        # As the reproduction: a new worker (new process, empty --data-dir) owns every
        # partition alone, idle; a second one joins; the first keeps two partitions.
        for slot in self.running():
            code = slot.sigterm()
            log(f"  round {number}: {slot.name} leaves (SIGTERM, exit status {code})")
        first = self.stopped()
        first.start(fresh=True)
        first.worker.wait_ready(timeout=90)
        log(f"  round {number}: {first.name} pid {first.pid} started anew, owns "
            f"{first.owned()}")  # fmt: skip
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.join(number, wait=True)
        # The first worker goes on with the partitions it kept, into a backlog at full speed.
        self.trickle.burst += min(FLOOD, (len(self.trickle.records) - self.trickle.sent) // 2)
        self.trickle.resume()
        time.sleep(self.rng.uniform(1.0, 1.5))
        self.kill(number, "scale-out-kill", self.consuming([first]))
        # As the reproduction goes on: restarted 1 s later, killed again 1.5 s after that
        # (while it joins, so the survivor takes its partitions), restarted 1 s later.
        time.sleep(1.0)
        first.start()
        time.sleep(1.5)
        pid, alive = first.pid, first.alive()
        dead = first.sigkill() if alive else True
        log(f"  round {number} restart-kill {first.name} pid {pid} at {self.now():.1f} s "
            f"(1.5 s after its restart, joining): alive {alive}, gone after {dead}")  # fmt: skip
        time.sleep(1.0)
        first.start()

    def harm_rebalance_kill(self, number: int) -> None:
        chosen = self.consuming(self.running())
        joiner = self.join(number, wait=False)
        # The joiner's group membership starts about when its web server answers.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and joiner.worker.health() is None:
            time.sleep(0.05)
        time.sleep(self.rng.uniform(0.0, 1.0))
        self.kill(number, "rebalance-kill", chosen, f"{joiner.name} joining since "
                  f"{time.monotonic() - (joiner.started or 0):.1f} s")  # fmt: skip

    def harm_scale_in(self, number: int) -> None:
        if len(self.running()) < SLOTS:
            self.join(number, wait=True)
        chosen = self.consuming(self.running()[:-1] or self.running())
        slot = chosen.slot
        alive = slot.alive() and slot.pid == chosen.pid
        code = slot.sigterm() if alive else None
        self.note(Harm(number, "scale-in", f"{slot.name} pid {chosen.pid}", self.now(), alive,
                       chosen.consuming, not slot.alive(), f"SIGTERM, exit status {code}; "
                       f"{chosen.describe()}"))  # fmt: skip

    def harm_broker(self, number: int) -> None:
        chosen = self.consuming(self.running())
        self.trickle.pause()
        pid = self.broker.pid
        alive = pid is not None and pid_alive(pid)
        self.broker.stop()
        down = self.rng.uniform(4.0, 8.0)
        self.note(Harm(number, "broker", f"broker pid {pid}", self.now(), alive,
                       chosen.consuming, pid is not None and not pid_alive(pid),
                       f"down {down:.1f} s; {chosen.slot.name} {chosen.describe()}"))  # fmt: skip
        time.sleep(down)
        self.broker.start()
        self.trickle.resume()

    def harm_killmid(self, number: int) -> None:
        """As `worker_recovery.sh killmid`: two new workers (empty --data-dir), the second
        joined, a backlog arrives at full speed; as soon as it is seen consuming the
        partitions it kept, the first is SIGKILLed, restarted 1 s later,
        SIGKILLed again 1.5 s after each restart (while it starts or joins), three kills in
        all, then restarted.
        In the reproduction's failing run the survivor took the kept partitions when the
        first process's session expired, 6 s after the first kill."""
        first, second = self.slots[0], self.slots[1]
        if self.trickle.ident is not None:  # started
            self.trickle.pause()
            for slot in self.running():
                code = slot.sigterm()
                log(f"  round {number}: {slot.name} leaves (SIGTERM, exit status {code})")
            first.start(fresh=True)
            first.worker.wait_ready(timeout=90)
            second.start(fresh=True)
            second.worker.wait_ready(timeout=90)
        # else the run's start is the reproduction's: new topics, two new workers, the
        # second just joined, and the input starts here.
        log(f"  round {number}: {first.name} pid {first.pid} and {second.name} pid "
            f"{second.pid} started anew, {second.name} joined; backlog at full speed")  # fmt: skip
        self.trickle.burst += (len(self.trickle.records) - self.trickle.sent) // 2
        if self.trickle.ident is not None:
            self.trickle.resume()
        else:
            self.trickle.start()
        for k in range(1, KILLMID_KILLS + 1):
            if k == 1:
                # The script's 1.5 s include `escalator publish` starting up (about a second
                # of imports), so its kill lands in the first batches the first worker takes
                # after the rebalance: here, as soon as it is seen consuming (the old engine
                # lost events in 2 of 12 runs so, 1 of 16 with the kill 1.5 s in).
                started = time.monotonic()
                chosen = self.consuming([first], timeout=5.0)
                self.kill(number, "killmid", chosen, f"kill {k} of {KILLMID_KILLS}, "
                          f"{time.monotonic() - started:.1f} s into the backlog")  # fmt: skip
            else:
                time.sleep(1.5)
                pid, alive = first.pid, first.alive()
                since = time.monotonic() - (first.started or 0.0)
                dead = first.sigkill() if alive else True
                self.note(Harm(number, "join-kill", f"{first.name} pid {pid}", self.now(),
                               alive, False, dead, f"kill {k} of {KILLMID_KILLS}, "
                               f"{since:.1f} s after its restart, joining"))  # fmt: skip
            time.sleep(1.0)
            first.start()

    HARMS: ClassVar[dict[str, Callable[[Run, int], None]]] = {
        "kill": harm_kill,
        "killmid": harm_killmid,
        "scale-out-kill": harm_scale_out_kill,
        "rebalance-kill": harm_rebalance_kill,
        "scale-in": harm_scale_in,
        "broker": harm_broker,
    }


# ------------------------------------------------------------------------------- reading Kafka


async def wait_caught_up(broker: str, topics: Topics, timeout: float) -> bool:
    """Until the group's committed input offsets equal the input's end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topics.input, p) for p in range(topics.partitions)]
        deadline = time.monotonic() + timeout
        while True:
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(topics.app_id)
            behind = {tp.partition: ends[tp] - (committed[tp].offset if tp in committed else 0)
                      for tp in tps}  # fmt: skip
            if not any(behind.values()):
                return True
            if time.monotonic() > deadline:
                log(f"  not caught up after {timeout:.0f} s: records behind {behind}")
                return False
            await asyncio.sleep(1)
    finally:
        await consumer.stop()
        await admin.close()


async def read_committed(broker: str, topic: str) -> list[Any]:
    """Every committed record of `topic`, to its last stable offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def run(
    work: Path,
    rounds: int = len(SCHEDULE),
    tickets: int = 4000,
    hostile: int = 60,
    seed: int = 1,
    tree: Tree = HERE,
    schedule: Sequence[str] = SCHEDULE,
) -> Summary:
    """One chaos run in `work` (its broker, workers' data and logs) with `tree`'s workers,
    harming it by `schedule` (kinds of `Run.HARMS`, repeated); see the module doc."""
    return Run(work, rounds, tickets, hostile, seed, tree, schedule).execute()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=len(SCHEDULE))
    parser.add_argument("--tickets", type=int, default=4000)
    parser.add_argument("--hostile", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--schedule",
        default=",".join(SCHEDULE),
        help=f"harm kinds, comma-separated, repeated over the rounds (of {', '.join(Run.HARMS)})",
    )
    parser.add_argument("--work", type=Path, default=None, help="folder for the broker and logs")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.add_argument(
        "--worker-tree",
        type=Path,
        default=os.environ.get("ESCALATOR_WORKER_TREE") or None,
        help="a checkout with its own .venv whose `escalator` runs the workers and the replay",
    )
    args = parser.parse_args()
    schedule = [kind.strip() for kind in args.schedule.split(",") if kind.strip()]
    unknown = [kind for kind in schedule if kind not in Run.HARMS]
    if unknown or not schedule:
        parser.error(f"--schedule: unknown harm {unknown} (known: {', '.join(Run.HARMS)})")
    tree = Tree.at(args.worker_tree) if args.worker_tree else HERE
    work = args.work or Path(tempfile.mkdtemp(prefix="escalator-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    summary = run(work, args.rounds, args.tickets, args.hostile, args.seed, tree, schedule)
    log(summary.text())
    if args.json:
        log(orjson.dumps(summary.as_dict()).decode())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
