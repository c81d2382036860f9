"""Helpers for the engine tests: workers as `escalator run` subprocesses, and topic readers.

Workers run as real processes (`python -m deploy.cli run ...`) so a test can SIGKILL one.
Faust's timeouts are turned down so rebalances after a kill take seconds, not a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from deploy.kafka_local import unique_name
from deploy.local_service import free_port

REPO = Path(__file__).resolve().parents[2]
FAST_POLICY = Path(__file__).with_name("fast_policy.toml")


@dataclass(frozen=True)
class Tree:
    """A checkout whose `escalator` a test runs: this one, or another one (an older commit
    with its own `.venv`), so a fault test can be shown to fail on the code before a fix."""

    root: Path
    python: str

    @classmethod
    def at(cls, root: Path) -> Tree:
        """The checkout at `root`, run with its `.venv/bin/python` (ValueError if absent)."""
        python = root / ".venv" / "bin" / "python"
        if not (root / "deploy" / "cli.py").is_file() or not python.is_file():
            raise ValueError(f"{root}: not a checkout with deploy/cli.py and .venv/bin/python")
        return cls(root.resolve(), str(python))

    def command(self, *args: str) -> list[str]:
        return [self.python, "-m", "deploy.cli", *args]

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root), **extra}


HERE = Tree(REPO, sys.executable)
"""This checkout, run with the test's own interpreter."""


@dataclass
class Topics:
    input: str
    output: str
    dlq: str
    app_id: str
    partitions: int

    def flags(self) -> list[str]:
        return [
            "--input-topic",
            self.input,
            "--output-topic",
            self.output,
            "--dlq-topic",
            self.dlq,
            "--partitions",
            str(self.partitions),
        ]


def new_topics(prefix: str, partitions: int) -> Topics:
    base = unique_name(prefix)
    return Topics(f"{base}-in", f"{base}-out", f"{base}-dlq", f"{base}-app", partitions)


def cli(
    *args: str, timeout: float = 120.0, broker: str, tree: Tree = HERE
) -> subprocess.CompletedProcess[bytes]:
    """Run an `escalator` sub-command of `tree` to completion."""
    return subprocess.run(
        tree.command(*args),
        cwd=tree.root,
        env=tree.env(KAFKA_BOOTSTRAP_SERVERS=broker),
        capture_output=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Worker:
    """One `escalator run` process."""

    broker: str
    topics: Topics
    log_path: Path
    clock: str = "event"
    policy: Path | None = None
    extra: list[str] = field(default_factory=list)
    web_port: int = field(default_factory=free_port)
    tree: Tree = HERE
    """The checkout whose `escalator run` this is."""
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        args = [
            *self.tree.command("run"),
            "--broker",
            self.broker,
            *self.topics.flags(),
            "--app-id",
            self.topics.app_id,
            "--clock",
            self.clock,
            "--web-port",
            str(self.web_port),
            "--data-dir",
            str(self.log_path.parent / "data"),
            "--session-timeout",
            "6",
            "--heartbeat-interval",
            "0.5",
            "--rebalance-timeout",
            "10",
            *self.extra,
        ]
        if self.policy is not None:
            args += ["--policy", str(self.policy)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, cwd=self.tree.root, env=self.tree.env(), stdout=log, stderr=log
        )
        log.close()
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}/health", timeout=2
            ) as reply:
                body: dict[str, Any] = json.loads(reply.read())
                return body
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            return body
        except (OSError, ValueError):
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.web_port}/metrics", timeout=5
        ) as reply:
            text: str = reply.read().decode()
            return text

    def wait_ready(self, timeout: float = 60.0, partitions: int | None = None) -> dict[str, Any]:
        """Until /health says ok (and, optionally, the worker owns `partitions` partitions)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            last = self.health()
            if (
                last
                and last.get("status") == "ok"
                and (partitions is None or len(last.get("partitions", ())) == partitions)
            ):
                return last
            time.sleep(0.2)
        pytest.fail(f"worker not ready after {timeout} s (last health {last}):\n{self.log_tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def _read(
    broker: str,
    topic: str,
    expect: int | None,
    timeout: float,
    settle: float,
) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = None
        for _ in range(100):
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while True:
            now = time.monotonic()
            if expect is not None and len(records) >= expect and settled_at is None:
                settled_at = now + settle
            if now >= deadline or (settled_at is not None and now >= settled_at):
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def read_topic(
    broker: str,
    topic: str,
    expect: int | None = None,
    timeout: float = 60.0,
    settle: float = 2.0,
) -> list[Any]:
    """Committed records of a topic from the beginning: until `expect` of them (then `settle`
    more seconds, to catch duplicates) or `timeout`."""
    return asyncio.run(_read(broker, topic, expect, timeout, settle))


def sla_events(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def per_ticket(events: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in events:
        out.setdefault(event["ticket_id"], []).append(event["event_id"])
    return out


def write_jsonl(path: Path, items: Iterable[dict[str, Any] | bytes]) -> Path:
    with path.open("wb") as handle:
        for item in items:
            handle.write((item if isinstance(item, bytes) else orjson.dumps(item)) + b"\n")
    return path
