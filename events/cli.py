"""`escalator schema` and `escalator sample`: the event contract from a terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from events.samples import generate_history
from events.schema import render, schemas, write_schemas


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    schema = commands.add_parser("schema", help="print the JSON Schemas of the event contract")
    schema.add_argument("--write", metavar="DIR", help="write .schema.json files there")
    schema.set_defaults(func=_schema)

    sample = commands.add_parser("sample", help="generate a realistic ticket history (JSONL)")
    sample.add_argument("--tickets", type=int, default=100)
    sample.add_argument("--seed", type=int, default=7)
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


def _sample(args: argparse.Namespace) -> int:
    if args.tickets < 1:
        print("escalator: --tickets must be at least 1", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for event in generate_history(args.tickets, seed=args.seed):
        out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    out.flush()
    return 0
