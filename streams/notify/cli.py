"""`escalator notify`: run the notifier (see streams.notify.worker); `escalator notify
redeliver`: send dead-lettered notifications again (streams.notify.redeliver)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from base.settings import SettingsError, add_flags, service_settings
from streams.notify.rules import Rules, RulesError, load_rules, missing_secrets
from streams.notify.settings import NotifySettings
from streams.notify.worker import Notifier


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("notify")
    add_flags(parser, NotifySettings)
    parser.set_defaults(func=cmd_notify)
    actions = parser.add_subparsers(dest="notify_command", metavar="{redeliver}")
    again = actions.add_parser(
        "redeliver",
        help="send dead-lettered notifications again (by channel, time range, event id)",
        description="Send the dead letters of the chosen channels again, with the same "
        "idempotency keys; filters combine (all given must match).",
    )
    add_flags(again, NotifySettings)
    again.add_argument("--channel", action="append", default=[],
                       help="a channel of the rules file (repeatable; default: all)")  # fmt: skip
    again.add_argument("--since", help="dead-lettered at or after this RFC 3339 time")
    again.add_argument("--until", help="dead-lettered before this RFC 3339 time")
    again.add_argument("--event-id", action="append", default=[], dest="event_ids",
                       help="an SLA event id (repeatable)")  # fmt: skip
    again.set_defaults(func=cmd_redeliver)


async def _serve(notifier: Notifier) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, notifier.request_stop)
    await notifier.start()
    try:
        await notifier.run()
    finally:
        await notifier.stop()


def _loaded(args: argparse.Namespace, command: str) -> tuple[NotifySettings, Rules] | int:
    """Settings and rules, or the exit status after saying what is wrong (2)."""
    try:
        settings = service_settings(NotifySettings, args)
    except SettingsError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    if not settings.rules:
        print(f"{command}: --rules FILE (or ESCALATOR_NOTIFY_RULES) is required", file=sys.stderr)
        return 2
    try:
        rules = load_rules(settings.rules)
    except RulesError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    missing = missing_secrets(rules, settings.environ)
    if missing:
        print(
            f"{command}: channel secrets not set in the environment: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    return settings, rules


def cmd_notify(args: argparse.Namespace) -> int:
    from streams.engine.topics import BrokerUnavailable, ensure_topics

    loaded = _loaded(args, "escalator notify")
    if isinstance(loaded, int):
        return loaded
    settings, rules = loaded
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


def _millis(value: str | None, flag: str) -> int | None:
    from events.instants import parse_rfc3339

    if value is None:
        return None
    try:
        return parse_rfc3339(value) // 1000
    except ValueError as exc:
        raise SettingsError(f"{flag}: {exc}") from None


def cmd_redeliver(args: argparse.Namespace) -> int:
    import orjson

    from streams.notify.redeliver import Selection, redeliver

    loaded = _loaded(args, "escalator notify redeliver")
    if isinstance(loaded, int):
        return loaded
    settings, rules = loaded
    try:
        selection = Selection(
            channels=list(args.channel),
            since_ms=_millis(args.since, "--since"),
            until_ms=_millis(args.until, "--until"),
            event_ids=frozenset(args.event_ids),
        )
        unknown = [name for name in selection.channels if name not in rules.channels]
        if unknown:
            raise SettingsError(f"--channel: no channel {', '.join(unknown)} in {settings.rules}")
    except SettingsError as exc:
        print(f"escalator notify redeliver: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(redeliver(settings, rules, selection))
    print(orjson.dumps(report).decode())
    failed = sum(counts["dead_lettered"] for counts in report.values())
    return 1 if failed else 0
