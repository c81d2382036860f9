"""`escalator ingest`: run the HTTP ingest service (see streams.ingest.app)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from streams.ingest.settings import IngestSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest", help="HTTP ingest: contract events and Zendesk/JSM/Zammad webhooks -> Kafka"
    )
    parser.add_argument("--broker", help="bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--ticket-topic", help="topic to produce to (env ESCALATOR_TICKET_TOPIC)")
    parser.add_argument("--dlq-topic", help="unmappable payloads (env ESCALATOR_DLQ_TOPIC)")
    parser.add_argument("--host", help="listen address (env ESCALATOR_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (env ESCALATOR_PORT; default 8090)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of new topics")
    parser.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from aiohttp import web

    from streams.engine.topics import BrokerUnavailable, ensure_topics
    from streams.ingest.app import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = IngestSettings.from_env(
        broker=args.broker,
        ticket_topic=args.ticket_topic,
        dlq_topic=args.dlq_topic,
        host=args.host,
        port=args.port,
    )
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
                settings.broker, [settings.ticket_topic, settings.dlq_topic], args.partitions
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
    web.run_app(build_app(settings), host=settings.host, port=settings.port, print=None)
    return 0
