"""Issue #11 §2: `escalator notify` against the real broker and real local receivers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from deploy.webhook_receiver import Recorder
from events.signatures import verify_webhook
from streams.notify.rules import parse_rules
from streams.notify.worker import Notifier, NotifySettings
from tests.edges.receivers import SmtpSink
from tests.engine.helpers import _read as read_records

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "HOOK_SECRET": "hook-secret-1",
    "SLACK_URL": "",  # set per test to the recorder
    "PD_KEY": "pd-routing-key",
}


def sla(n: int, kind: str = "ticket.escalated", **extra: Any) -> dict[str, Any]:
    metric = "escalation" if kind == "ticket.escalated" else "resolution"
    return {
        "event_id": f"00000000-0000-5000-8000-{n:012d}",
        "type": kind,
        "ticket_id": f"T-{n}",
        "severity": 1,
        "metric": metric,
        "due_at": "2026-11-30T15:00:00Z",
        "at": "2026-11-30T15:00:00Z",
        "cycle": 0,
        "policy": {"name": "clevr-helpdesk", "version": "2026-11"},
        "customer_id": "acme",
        "group": "tier1",
        "assignee": "ana",
        **({"level": 1, "to": "senior-technical-staff"} if kind == "ticket.escalated" else {}),
        **extra,
    }


def rules_text(url: str, smtp_port: int, attempts: int = 4, timeout: float = 1.0) -> str:
    common = f"attempts = {attempts}\ntimeout = {timeout}\nbackoff = 0.05\nmax_backoff = 0.2\n"
    return f"""
[channels.ops-hook]
kind = "webhook"
url = "{url}/hook"
secret_env = "HOOK_SECRET"
{common}
[channels.team-slack]
kind = "slack"
url_env = "SLACK_URL"
{common}
[channels.oncall-mail]
kind = "email"
host = "127.0.0.1"
port = {smtp_port}
sender = "escalator@example.com"
to = ["oncall@example.com"]
{common}
[channels.pager]
kind = "pagerduty"
routing_key_env = "PD_KEY"
url = "{url}/pd"
{common}
[[rules]]
name = "sev1-2 escalations page and hook"
match = {{ type = "ticket.escalated", severity = [1, 2] }}
channels = ["ops-hook", "pager"]

[[rules]]
name = "acme breaches by mail"
match = {{ type = ["sla.breached"], customer = "acme" }}
channels = ["oncall-mail", "ops-hook"]

[[rules]]
name = "tier2 to slack"
match = {{ group = "tier2", policy = "clevr-helpdesk" }}
channels = ["team-slack"]
"""


async def produce(broker: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for ev in events:
            await producer.send_and_wait(topic, orjson.dumps(ev), key=ev["ticket_id"].encode())
    finally:
        await producer.stop()


class Harness:
    def __init__(self, broker: str, sla_topic: str, ticket_topic: str, rules: str,
                 env: dict[str, str], dlq_prefix: str) -> None:  # fmt: skip
        self.settings = NotifySettings(
            broker=broker,
            sla_topic=sla_topic,
            ticket_topic=ticket_topic,
            consumer_group=f"{sla_topic}-notify",
            dlq_prefix=dlq_prefix,
            environ=env,
        )
        self.notifier = Notifier(self.settings, parse_rules(rules))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Notifier:
        await self.notifier.start()
        self.task = asyncio.create_task(self.notifier.run())
        return self.notifier

    async def __aexit__(self, *exc: object) -> None:
        self.notifier.request_stop()
        assert self.task is not None
        await self.task
        await self.notifier.stop()


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def env_for(recorder: Recorder) -> dict[str, str]:
    return {**ENV, "SLACK_URL": recorder.url + "/slack"}


async def test_routing_signatures_email_slack_pagerduty(
    kafka_bootstrap: str, topics: tuple[str, str, str], recorder: Recorder, smtp: SmtpSink
) -> None:
    sla_topic, ticket_topic, dlq = topics
    events = [
        sla(1),  # sev1 escalation -> hook + pager
        sla(2, severity=3),  # sev3 escalation -> nothing
        sla(3, "sla.breached"),  # acme breach -> mail + hook
        sla(4, "sla.breached", customer_id="other"),  # -> nothing
        sla(5, "sla.warning", group="tier2", threshold=0.5),  # -> slack
    ]
    await produce(kafka_bootstrap, sla_topic, events)
    rules = rules_text(recorder.url, smtp.port)
    async with Harness(kafka_bootstrap, sla_topic, ticket_topic, rules, env_for(recorder), dlq):
        await until(lambda: len(recorder.received) >= 4 and len(smtp.messages) >= 1)
        await asyncio.sleep(1.0)  # nothing more arrives
    hooks = recorder.at("/hook")
    assert sorted(orjson.loads(h.body)["ticket_id"] for h in hooks) == ["T-1", "T-3"]
    now = int(time.time())
    for hook in hooks:
        assert verify_webhook(
            "hook-secret-1",
            hook.headers["X-Escalator-Timestamp"],
            hook.body,
            hook.headers["X-Escalator-Signature"],
            now,
        )
        assert hook.headers["Idempotency-Key"] == orjson.loads(hook.body)["event_id"]
        assert not verify_webhook(
            "wrong-secret", hook.headers["X-Escalator-Timestamp"], hook.body,
            hook.headers["X-Escalator-Signature"], now,
        )  # fmt: skip
    (page,) = recorder.at("/pd")
    pd = orjson.loads(page.body)
    assert (pd["event_action"], pd["dedup_key"], pd["routing_key"]) == (
        "trigger", "T-1:escalation", "pd-routing-key",
    )  # fmt: skip
    assert pd["payload"]["severity"] == "critical"
    (slack,) = recorder.at("/slack")
    assert "T-5 (Sev1) has used 50% of its resolution target" in orjson.loads(slack.body)["text"]
    (mail,) = smtp.messages
    assert mail["Subject"] == "[Escalator] T-3 (Sev1) breached its resolution target"
    assert mail["Message-ID"] == f"<{sla(3)['event_id']}.oncall-mail@escalator>"
    assert mail["To"] == "oncall@example.com"


async def test_retries_after_5xx_and_timeouts_then_delivers_once(
    kafka_bootstrap: str, topics: tuple[str, str, str], recorder: Recorder, smtp: SmtpSink
) -> None:
    sla_topic, ticket_topic, dlq = topics
    recorder.fail["/hook"] = [503, 500]
    recorder.stall["/pd"] = [2.0]  # first try outlives the 1 s timeout
    await produce(kafka_bootstrap, sla_topic, [sla(1)])
    rules = rules_text(recorder.url, smtp.port)
    async with Harness(
        kafka_bootstrap, sla_topic, ticket_topic, rules, env_for(recorder), dlq
    ) as n:
        await until(lambda: len(recorder.at("/hook")) == 1 and len(recorder.at("/pd")) == 1)
        await asyncio.sleep(0.5)
    tries = [a for a in recorder.attempts if a.path == "/hook"]
    assert len(tries) == 3
    assert {t.headers["Idempotency-Key"] for t in tries} == {sla(1)["event_id"]}
    assert len([a for a in recorder.attempts if a.path == "/pd"]) == 2
    assert n.stats["dead_lettered"] == 0 and n.stats["retries"] == 3


async def test_dead_letter_after_n_failures_and_at_once_for_4xx(
    kafka_bootstrap: str, topics: tuple[str, str, str], recorder: Recorder, smtp: SmtpSink
) -> None:
    sla_topic, ticket_topic, dlq = topics
    recorder.fail["/hook"] = [500] * 10
    recorder.fail["/pd"] = [400]
    await produce(kafka_bootstrap, sla_topic, [sla(1)])
    rules = rules_text(recorder.url, smtp.port, attempts=3)
    async with Harness(
        kafka_bootstrap, sla_topic, ticket_topic, rules, env_for(recorder), dlq
    ) as n:
        await until(lambda: n.stats["dead_lettered"] == 2)
    hook_dead = await read_records(kafka_bootstrap, dlq + "ops-hook", 1, 30, 0.5)
    (record,) = hook_dead
    headers = dict(record.headers)
    assert headers["escalator.reason"] == b"HTTP 500 (after 3 tries)"
    assert headers["escalator.channel"] == b"ops-hook"
    assert orjson.loads(record.value)["event_id"] == sla(1)["event_id"]
    (pd_dead,) = await read_records(kafka_bootstrap, dlq + "pager", 1, 30, 0.5)
    assert dict(pd_dead.headers)["escalator.reason"] == b"HTTP 400 (after 1 tries)"
    assert len([a for a in recorder.attempts if a.path == "/hook"]) == 3


async def test_crash_redelivers_only_unacknowledged_with_the_same_key(
    kafka_bootstrap: str, topics: tuple[str, str, str], recorder: Recorder, smtp: SmtpSink,
    tmp_path: Path,
) -> None:  # fmt: skip
    sla_topic, ticket_topic, dlq = topics
    total, first_wave = 300, 100
    group = f"{sla_topic}-crash"
    await produce(kafka_bootstrap, sla_topic, [sla(n) for n in range(first_wave)])
    recorder.delay = 0.01
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f"""
[channels.ops-hook]
kind = "webhook"
url = "{recorder.url}/hook"
secret_env = "HOOK_SECRET"
[[rules]]
name = "all"
channels = ["ops-hook"]
"""
    )
    env = {**os.environ, "HOOK_SECRET": "hook-secret-1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "deploy.cli", "notify", "--rules", str(rules),
        "--broker", kafka_bootstrap, "--sla-topic", sla_topic, "--ticket-topic", ticket_topic,
        "--consumer-group", group, "--dlq-prefix", dlq,
    ]  # fmt: skip
    first = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        # a first wave delivered and committed, then a second one cut short by the crash
        await until(lambda: len(recorder.received) >= first_wave, timeout=90)
        for _ in range(300):
            if sum((await committed_offsets(kafka_bootstrap, sla_topic, group)).values()):
                break
            await asyncio.sleep(0.1)
        # 80 of the second wave answered, every later try held for 3 s: the kill always lands
        # with deliveries in flight, however fast the machine (a race on a fixed delay once
        # let all 300 through before the kill)
        recorder.stall["/hook"] = [0.0] * 80 + [3.0] * total
        await produce(kafka_bootstrap, sla_topic, [sla(n) for n in range(first_wave, total)])
        await until(lambda: len(recorder.received) >= first_wave + 80, timeout=90)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        recorder.stall["/hook"] = []
    await asyncio.sleep(0.5)  # requests the killed process had already sent are answered
    before = len(recorder.received)
    assert before < total, "the crash came too late to prove anything"
    committed = await committed_offsets(kafka_bootstrap, sla_topic, group)
    assert sum(committed.values()) >= first_wave, "no commit before the crash: proves nothing"
    second = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        await until(
            lambda: (
                {r.headers["Idempotency-Key"] for r in recorder.received}
                >= {sla(n)["event_id"] for n in range(total)}
            ),
            timeout=120,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    bodies: dict[str, bytes] = {}
    for r in recorder.received:
        key = r.headers["Idempotency-Key"]
        assert bodies.setdefault(key, r.body) == r.body  # a repeat is the same event, same key
        assert orjson.loads(r.body)["event_id"] == key
    assert len(bodies) == total
    # the restarted notifier delivers exactly the events after the last committed offset of
    # their partition (each at least once; a try that timed out under load may repeat), and
    # none that was committed
    records = await read_records(kafka_bootstrap, sla_topic, total, 30, 0.0)
    uncommitted = {
        orjson.loads(r.value)["event_id"]
        for r in records
        if r.offset >= committed.get(r.partition, 0)
    }
    again = {r.headers["Idempotency-Key"] for r in recorder.received[before:]}
    assert again == uncommitted


async def committed_offsets(broker: str, topic: str, group: str) -> dict[int, int]:
    """Partition -> next offset `group` has committed on `topic`, as its coordinator has them
    (the admin API: a fresh consumer's `partitions_for_topic` could still be empty, which once
    read as "nothing committed" and failed this test under load)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def test_rules_refuse_secrets_and_unknown_channels() -> None:
    from streams.notify.rules import RulesError

    with pytest.raises(RulesError, match=r"channels\.h\.webhook\.secret: Extra inputs"):
        parse_rules('[channels.h]\nkind="webhook"\nurl="http://x"\nsecret_env="S"\nsecret="x"\n'
                    "rules=[]\n", "r.toml")  # fmt: skip
    with pytest.raises(RulesError, match=r"unknown channel 'nope'"):
        parse_rules('rules=[{name="r", channels=["nope"]}]\n[channels]\n', "r.toml")


async def test_a_stop_during_a_retry_backoff_is_prompt_and_leaves_the_event_for_redelivery(
    kafka_bootstrap: str, topics: tuple[str, str, str], recorder: Recorder
) -> None:
    """SIGTERM (request_stop) while a delivery waits out a long backoff: the notifier stops at
    once, neither dead-letters nor commits the event, and the next run delivers it (same key)."""
    sla_topic, ticket_topic, dlq = topics
    recorder.fail["/hook"] = [503] * 100
    await produce(kafka_bootstrap, sla_topic, [sla(1)])
    rules = f"""
[channels.ops-hook]
kind = "webhook"
url = "{recorder.url}/hook"
secret_env = "HOOK_SECRET"
attempts = 10
backoff = 60
max_backoff = 60
[[rules]]
name = "all"
channels = ["ops-hook"]
"""
    env = env_for(recorder)
    harness = Harness(kafka_bootstrap, sla_topic, ticket_topic, rules, env, dlq)
    async with harness as n:
        await until(lambda: len(recorder.at("/hook")) == 0 and len(recorder.attempts) >= 1)
        stop_requested = time.monotonic()
    assert time.monotonic() - stop_requested < 10, "stop waited for the backoff"
    assert n.stats["dead_lettered"] == 0
    assert await committed_offsets(kafka_bootstrap, sla_topic, f"{sla_topic}-notify") == {}
    recorder.fail["/hook"] = []
    async with Harness(kafka_bootstrap, sla_topic, ticket_topic, rules, env, dlq):
        await until(lambda: len(recorder.at("/hook")) == 1)
    assert recorder.at("/hook")[0].headers["Idempotency-Key"] == sla(1)["event_id"]
