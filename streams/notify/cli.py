"""`escalator notify`: run the notifier (see streams.notify.worker)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from base.settings import SettingsError, add_flags, service_settings
from streams.notify.rules import RulesError, load_rules, missing_secrets
from streams.notify.settings import NotifySettings
from streams.notify.worker import Notifier


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("notify")
    add_flags(parser, NotifySettings)
    parser.set_defaults(func=cmd_notify)


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

    try:
        settings = service_settings(NotifySettings, args)
    except SettingsError as exc:
        print(f"escalator notify: {exc}", file=sys.stderr)
        return 2
    if not settings.rules:
        print(
            "escalator notify: --rules FILE (or ESCALATOR_NOTIFY_RULES) is required",
            file=sys.stderr,
        )
        return 2
    try:
        rules = load_rules(settings.rules)
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
    topics = [settings.sla_topic] + [settings.dlq_prefix + name for name in rules.channels]
    try:
        asyncio.run(
            ensure_topics(settings.broker, topics, settings.partitions, settings.connect_timeout)
        )
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
