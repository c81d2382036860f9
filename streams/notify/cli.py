"""`escalator notify`: run the notifier (see streams.notify.worker)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from streams.notify.rules import RulesError, load_rules, missing_secrets
from streams.notify.worker import Notifier, NotifySettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "notify", help="deliver SLA events to webhooks, Slack, e-mail and PagerDuty by rules"
    )
    parser.add_argument(
        "--rules",
        default=os.environ.get("ESCALATOR_NOTIFY_RULES"),
        help="routing rules TOML file (env ESCALATOR_NOTIFY_RULES)",
    )
    parser.add_argument("--broker", help="bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--sla-topic", help="SLA events (env ESCALATOR_SLA_TOPIC)")
    parser.add_argument("--ticket-topic", help="ticket events (env ESCALATOR_TICKET_TOPIC)")
    parser.add_argument(
        "--consumer-group", help="consumer group (env ESCALATOR_CONSUMER_GROUP; escalator-notify)"
    )
    parser.add_argument(
        "--dlq-prefix", help="dead-letter topic prefix per channel (default notify-dlq.)"
    )
    parser.set_defaults(func=cmd_notify)


def settings_from(args: argparse.Namespace) -> NotifySettings:
    env = os.environ
    given: dict[str, str | None] = {
        "broker": args.broker or env.get("KAFKA_BOOTSTRAP_SERVERS"),
        "sla_topic": args.sla_topic
        or env.get("ESCALATOR_SLA_TOPIC", env.get("ESCALATOR_OUTPUT_TOPIC")),
        "ticket_topic": args.ticket_topic
        or env.get("ESCALATOR_TICKET_TOPIC", env.get("ESCALATOR_INPUT_TOPIC")),
        "consumer_group": args.consumer_group or env.get("ESCALATOR_CONSUMER_GROUP"),
        "dlq_prefix": args.dlq_prefix or env.get("ESCALATOR_NOTIFY_DLQ_PREFIX"),
    }
    chosen: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    return NotifySettings(**chosen, environ=dict(env))


async def _serve(notifier: Notifier) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, notifier.request_stop)
    await notifier.start()
    try:
        await notifier.run()
    finally:
        await notifier.stop()


def cmd_notify(args: argparse.Namespace) -> int:
    from streams.engine.topics import BrokerUnavailable, ensure_topics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.rules:
        print(
            "escalator notify: --rules FILE (or ESCALATOR_NOTIFY_RULES) is required",
            file=sys.stderr,
        )
        return 2
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        print(f"escalator notify: {exc}", file=sys.stderr)
        return 2
    missing = missing_secrets(rules)
    if missing:
        print(
            f"escalator notify: channel secrets not set in the environment: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    settings = settings_from(args)
    topics = [settings.sla_topic, settings.ticket_topic] + [
        settings.dlq_prefix + name for name in rules.channels
    ]
    try:
        asyncio.run(ensure_topics(settings.broker, topics, 8))
    except BrokerUnavailable as exc:
        print(f"escalator notify: {exc}", file=sys.stderr)
        return 1
    print(
        f"escalator notify: {settings.sla_topic} -> {len(rules.channels)} channels, "
        f"{len(rules.rules)} rules (group {settings.consumer_group})",
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(_serve(Notifier(settings, rules)))
    return 0
