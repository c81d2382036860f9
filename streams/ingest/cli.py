"""`escalator ingest`: run the HTTP ingest service (see streams.ingest.app)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from base.settings import SettingsError, add_flags, service_settings
from streams.ingest.settings import IngestSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ingest")
    add_flags(parser, IngestSettings)
    parser.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from streams.engine.topics import BrokerUnavailable, ensure_topics
    from streams.ingest.app import run

    try:
        settings = service_settings(IngestSettings, args)
    except SettingsError as exc:
        print(f"escalator ingest: {exc}", file=sys.stderr)
        return 2
    if not settings.secrets:
        print(
            "escalator ingest: no source enabled: set ESCALATOR_INGEST_TOKEN and/or "
            "ESCALATOR_ZENDESK_SECRET, ESCALATOR_JSM_SECRET, ESCALATOR_ZAMMAD_SECRET",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(
            ensure_topics(
                settings.broker,
                [settings.ticket_topic, settings.dlq_topic],
                settings.partitions,
                settings.connect_timeout,
            )
        )
    except BrokerUnavailable as exc:
        print(f"escalator ingest: {exc}", file=sys.stderr)
        return 1
    print(
        f"escalator ingest: http://{settings.host}:{settings.port} -> {settings.ticket_topic} "
        f"(sources: {', '.join(sorted(settings.secrets))})",
        file=sys.stderr,
        flush=True,
    )
    run(settings)
    return 0
