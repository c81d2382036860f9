"""Issue #25 §1 and §3 on the real broker: `escalator notify` acting on tickets of a local
Zendesk-shaped API (deploy/ticket_apis.py): Retry-After waited for, dead letters after N tries
with the reason, no second note after a SIGKILL, and `notify redeliver`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from deploy.ticket_apis import SECRET_TEXT, TicketApi
from streams.notify.rules import parse_rules
from streams.notify.worker import Notifier
from tests.edges.test_actions import breach
from tests.edges.test_notify import REPO, Harness, committed_offsets, produce, until
from tests.engine.helpers import _read as read_records

pytestmark = pytest.mark.kafka

TOKEN = "zd-token-1"


def zendesk_rules(url: str, attempts: int = 3, extra: str = "") -> str:
    return f"""
[channels.zd]
kind = "zendesk"
url = "{url}"
email = "bot@example.com"
token_env = "ZD_TOKEN"
add_tags = ["sla_breached"]
attempts = {attempts}
timeout = 10.0
backoff = 0.05
max_backoff = 0.1
{extra}
[[rules]]
name = "breaches to the ticket"
match = {{ type = "sla.breached" }}
channels = ["zd"]
"""


def event_id(n: int) -> str:
    return f"00000000-0000-5000-8000-{n:012d}"


def notes_with(api: TicketApi, eid: str) -> int:
    mark = f"[escalator-event:{eid}]"
    return sum(mark in str(n["body"]) for t in api.tickets.values() for n in t.notes)


async def test_retry_after_is_waited_for_and_failures_dead_letter_with_the_reason(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    sla_topic = await kafka_topics.create("sla", 1)
    dlq = sla_topic + "-dlq."
    api = await TicketApi("zendesk", TOKEN).start()
    try:
        api.seed("7")
        api.throttle = [2]  # the first request: 429, Retry-After: 2
        await produce(kafka_bootstrap, sla_topic, [breach("zendesk-7", event_id(1))])
        env = {"ZD_TOKEN": TOKEN}
        async with Harness(kafka_bootstrap, sla_topic, "unused", zendesk_rules(api.url), env,
                           dlq) as notifier:  # fmt: skip
            await until(lambda: notes_with(api, event_id(1)) == 1)
            first, second = api.seen[0], api.seen[1]
            assert first.status == 429 and second.status == 200
            waited = second.at - first.at
            assert 2.0 <= waited < 3.5, waited  # not the 0.05 s backoff
            # a vendor failing: 500 three times, dead-lettered after 3 tries; then a ticket
            # Zendesk does not have: 404, dead-lettered at once
            api.fail = [500, 500, 500]
            await produce(kafka_bootstrap, sla_topic, [breach("zendesk-8", event_id(2))])
            await until(lambda: notifier.stats["dead_lettered"] == 1)
            await produce(kafka_bootstrap, sla_topic, [breach("zendesk-404", event_id(3))])
            await until(lambda: notifier.stats["dead_lettered"] == 2)
        dead = await read_records(kafka_bootstrap, dlq + "zd", 2, 30, 0.5)
        reasons = [dict(r.headers)["escalator.reason"] for r in dead]
        assert reasons == [
            b"zendesk read comments: HTTP 500 (after 3 tries)",
            b"zendesk read comments: HTTP 404 (after 1 tries)",
        ]
        assert [orjson.loads(r.value)["event_id"] for r in dead] == [event_id(2), event_id(3)]
        assert SECRET_TEXT.encode() not in b"".join(r.value for r in dead)
    finally:
        await api.stop()


async def test_sigkill_mid_stream_writes_no_second_note(
    kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path
) -> None:
    """60 breaches of 20 tickets on 3 partitions; one write held for 20 s holds its
    partition's commit, so the notes written after it in that partition are not committed when
    the notifier is killed; the restarted notifier reads them again, finds each note, and
    writes none twice."""
    sla_topic = await kafka_topics.create("sla", 3)
    group = f"{sla_topic}-kill"
    api = await TicketApi("zendesk", TOKEN, delay=0.02).start()
    events = [breach(f"zendesk-{100 + n % 20}", event_id(n)) for n in range(60)]
    for n in range(20):
        api.seed(str(100 + n))
    api.hold["/api/v2/tickets/100"] = 20.0  # ticket 100's first write hangs, then fails
    rules = tmp_path / "rules.toml"
    rules.write_text(zendesk_rules(api.url))
    env = {**os.environ, "ZD_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "deploy.cli", "notify", "--rules", str(rules),
        "--broker", kafka_bootstrap, "--sla-topic", sla_topic, "--ticket-topic", sla_topic,
        "--consumer-group", group, "--dlq-prefix", sla_topic + "-dlq.",
    ]  # fmt: skip
    await produce(kafka_bootstrap, sla_topic, events)
    try:
        first = subprocess.Popen(command, env=env, cwd=REPO)
        try:
            await until(lambda: len(api.writes()) >= 50, timeout=90)
            await asyncio.sleep(0.5)  # commits of what is not held
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        await asyncio.sleep(0.3)
        written = {e["event_id"] for e in events if notes_with(api, e["event_id"])}
        committed = await committed_offsets(kafka_bootstrap, sla_topic, group)
        records = await read_records(kafka_bootstrap, sla_topic, 60, 30, 0.0)
        uncommitted = {
            orjson.loads(r.value)["event_id"]
            for r in records
            if r.offset >= committed.get(r.partition, 0)
        }
        assert written & uncommitted, "no written note was left uncommitted: proves nothing"
        reads_before = len([s for s in api.seen if s.method == "GET"])
        second = subprocess.Popen(command, env=env, cwd=REPO)
        try:
            await until(lambda: all(notes_with(api, e["event_id"]) for e in events), timeout=90)
            await asyncio.sleep(1.0)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
        assert [notes_with(api, e["event_id"]) for e in events] == [1] * 60
        assert len(api.writes()) == 60  # one write per event, over both runs
        reads_after = len([s for s in api.seen if s.method == "GET"]) - reads_before
        assert reads_after == len(uncommitted)  # each redelivered event checked once
    finally:
        await api.stop()


async def test_notify_redeliver_sends_dead_letters_again_with_the_same_key(
    kafka_bootstrap: str, kafka_topics: Any, tmp_path: Path
) -> None:
    sla_topic = await kafka_topics.create("sla", 1)
    dlq = sla_topic + "-dlq."
    api = await TicketApi("zendesk", TOKEN).start()
    try:
        for n in (1, 2, 3):
            api.seed(str(n))
        rules_text = zendesk_rules(api.url, attempts=2)
        wrong = {"ZD_TOKEN": "revoked-token"}  # every try: 401, dead-lettered at once
        events = [breach(f"zendesk-{n}", event_id(n)) for n in (1, 2, 3)]
        await produce(kafka_bootstrap, sla_topic, events)
        async with Harness(kafka_bootstrap, sla_topic, "unused", rules_text, wrong,
                           dlq) as notifier:  # fmt: skip
            await until(lambda: notifier.stats["dead_lettered"] == 3)
        dead = await read_records(kafka_bootstrap, dlq + "zd", 3, 30, 0.5)
        assert {dict(r.headers)["escalator.reason"] for r in dead} == {
            b"zendesk read comments: HTTP 401 (after 1 tries)"
        }
        assert not api.writes()
        rules = tmp_path / "rules.toml"
        rules.write_text(rules_text)
        env = {**os.environ, "ZD_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}

        def redeliver(*filters: str) -> dict[str, Any]:
            command = [
                sys.executable, "-m", "deploy.cli", "notify", "redeliver", "--rules", str(rules),
                "--broker", kafka_bootstrap, "--sla-topic", sla_topic, "--dlq-prefix", dlq,
                *filters,
            ]  # fmt: skip
            done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, timeout=120)
            assert done.returncode == 0, done.stderr.decode()
            report: dict[str, Any] = orjson.loads(done.stdout)
            return report

        # by event id: only event 2
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(None, redeliver, "--channel", "zd", "--event-id",
                                            event_id(2))  # fmt: skip
        assert report == {"zd": {"read": 3, "matched": 1, "delivered": 1, "dead_lettered": 0,
                                 "skipped": 0}}  # fmt: skip
        assert [notes_with(api, event_id(n)) for n in (1, 2, 3)] == [0, 1, 0]
        # by time range: dead-lettered from a minute ago on: all three; event 2's note is
        # found and not written again
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        report = await loop.run_in_executor(None, redeliver, "--since", since)
        assert report["zd"]["matched"] == 3 and report["zd"]["delivered"] == 3
        assert [notes_with(api, event_id(n)) for n in (1, 2, 3)] == [1, 1, 1]
        assert len(api.writes()) == 3
        # a range that holds none
        report = await loop.run_in_executor(None, redeliver, "--until", since)
        assert report["zd"]["matched"] == 0
    finally:
        await api.stop()


async def test_three_vendors_on_one_rule_each_acts_on_its_own_tickets(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    """One rule routes every breach to a Zendesk, a JSM and a Zammad channel: each writes to
    its own vendor's ticket and skips the others' (no dead letter); a second run over the same
    records (a new consumer group: every record redelivered) writes nothing more."""
    sla_topic = await kafka_topics.create("sla", 2)
    apis = {v: await TicketApi(v, TOKEN).start() for v in ("zendesk", "jsm", "zammad")}
    try:
        apis["zendesk"].seed("11")
        apis["jsm"].seed("SUP-11")
        apis["zammad"].seed("71", number="31011")
        rules = (
            "".join(
                f"""
[channels.{vendor}]
kind = "{vendor}"
url = "{api.url}"
token_env = "ZD_TOKEN"
{'email = "bot@example.com"' if vendor != "zammad" else ""}
add_tags = ["sla_breached"]
"""
                for vendor, api in apis.items()
            )
            + '[[rules]]\nname = "all"\nchannels = ["zendesk", "jsm", "zammad"]\n'
        )
        events = [breach(t, event_id(n)) for n, t in
                  enumerate(("zendesk-11", "SUP-11", "zammad-31011"), start=1)]  # fmt: skip
        await produce(kafka_bootstrap, sla_topic, events)
        env = {"ZD_TOKEN": TOKEN}
        for run in (1, 2):
            harness = Harness(kafka_bootstrap, sla_topic, "unused", rules, env, sla_topic + "-d.")
            group = {"consumer_group": f"{sla_topic}-run{run}"}
            harness.notifier = Notifier(harness.settings.model_copy(update=group),
                                        parse_rules(rules))  # fmt: skip
            async with harness as notifier:
                await until(lambda: notifier.stats["delivered"] + notifier.stats["skipped"] == 9)
            assert (notifier.stats["skipped"], notifier.stats["dead_lettered"]) == (6, 0)
            assert notifier.stats["already_done"] == (0 if run == 1 else 3)
        assert apis["zendesk"].tickets["11"].tags == ["sla_breached"]
        assert apis["jsm"].tickets["SUP-11"].tags == ["sla_breached"]
        assert apis["zammad"].tickets["71"].tags == ["sla_breached"]
        for api, ref in ((apis["zendesk"], "11"), (apis["jsm"], "SUP-11"), (apis["zammad"], "71")):
            assert len(api.internal_notes(ref)) == 1
    finally:
        for api in apis.values():
            await api.stop()
