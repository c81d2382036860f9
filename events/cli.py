"""`escalator schema` and `escalator sample`: the event contract from a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson

from events.instants import to_datetime
from events.samples import SAMPLE_START, generate_history
from events.schema import render, schemas, write_schemas


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    schema = commands.add_parser("schema")
    schema.add_argument("--write", metavar="DIR", help="write .schema.json files there")
    schema.set_defaults(func=_schema)

    sample = commands.add_parser("sample")
    sample.add_argument("--tickets", type=int, default=100)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument(
        "--start",
        metavar="TIME",
        help="when the first ticket opens: RFC 3339 with offset, 'now', or a duration before "
        "now such as 7d (default 2026-11-23T13:00:00Z)",
    )
    sample.set_defaults(func=_sample)


def _schema(args: argparse.Namespace) -> int:
    if args.write:
        for path in write_schemas(Path(args.write)):
            print(path)
        return 0
    for name, schema in schemas().items():
        sys.stdout.write(f"# {name}\n")
        sys.stdout.buffer.write(render(schema))
        sys.stdout.flush()
    return 0


def _start(text: str) -> datetime:
    """`--start`: an RFC 3339 instant, 'now', or a duration before now (as `query --since`)."""
    from events.when import check_when, instant_at

    now = time.time_ns() // 1000
    if text.strip().lower() == "now":
        return to_datetime(now)
    return to_datetime(instant_at(check_when(text), now))


def _sample(args: argparse.Namespace) -> int:
    if args.tickets < 1:
        print("escalator: --tickets must be at least 1", file=sys.stderr)
        return 2
    start = SAMPLE_START
    if args.start is not None:
        try:
            start = _start(args.start)
        except ValueError as exc:
            print(f"escalator: --start: {exc}", file=sys.stderr)
            return 2
    out = sys.stdout.buffer
    for event in generate_history(args.tickets, seed=args.seed, start=start):
        out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    out.flush()
    return 0
