"""`escalator`: one command line for every part; each part registers its own sub-commands.

The parts stay thin shells: parse flags, call the pure core or the service, print. Only the
part that owns the command given is imported (issue #21: importing every part up front made
`--version` take 0.5 s); the one-line summaries `--help` lists live in `COMMANDS`, so listing
them imports nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NamedTuple

from base.errors import EscalatorError


class Command(NamedTuple):
    """A sub-command: the module whose `register(commands)` adds it, and its summary."""

    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "schema": Command("events.cli", "print the JSON Schemas of the event contract"),
    "sample": Command("events.cli", "generate a realistic ticket history (JSONL)"),
    "policy": Command("streams.sla.cli", "validate and explain an SLA policy file"),
    "replay": Command(
        "streams.sla.cli",
        "run ticket events (JSONL) through the SLA core with event time as the clock",
    ),
    "backtest": Command(
        "deploy.backtest",
        "replay a history under the current and a proposed policy and compare outcomes",
    ),
    "run": Command("streams.engine.cli", "run a stream-processing worker"),
    "publish": Command(
        "streams.engine.cli", "publish JSONL ticket events to the input topic, keyed by ticket id"
    ),
    "tail": Command("streams.engine.cli", "print SLA events as JSON lines (read_committed)"),
    "ingest": Command(
        "streams.ingest.cli",
        "HTTP ingest: contract events and Zendesk/JSM/Zammad webhooks -> Kafka",
    ),
    "notify": Command(
        "streams.notify.cli", "deliver SLA events to webhooks, Slack, e-mail and PagerDuty by rules"
    ),
    "projections": Command("projections.cli", "read models of SLA state (serve, rebuild)"),
    "query": Command("projections.cli", "ask the read models (reads the DB directly)"),
    "explain": Command(
        "projections.cli",
        "explain a ticket's clocks: every interval counted or not, and why (history or DB)",
    ),
    "demo": Command(
        "deploy.demo", "start a broker and a worker, publish live tickets, watch SLA events arrive"
    ),
}
"""Every sub-command, in the order `--help` lists them."""


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Sub-commands whose summary comes from `COMMANDS` (one copy of each)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name in COMMANDS:
            kwargs.setdefault("help", COMMANDS[name].summary)
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


def build_parser(load: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the sub-commands of the parts owning the commands in `load` (every part
    when None); the other commands are listed by name and summary, their parts not imported.

    Raises KeyError for a name in `load` that is not in `COMMANDS`.
    """
    parser = argparse.ArgumentParser(
        prog="escalator",
        description="Event-sourced escalation engine for help-desk SLAs.",
    )
    parser.register("action", "parsers", _Commands)
    parser.add_argument("--version", action="version", version=f"escalator {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = list(COMMANDS) if load is None else load
    for module in dict.fromkeys(COMMANDS[name].module for name in names):
        importlib.import_module(module).register(commands)
    for name in COMMANDS:
        if name not in commands.choices:  # listed only: its part is not loaded
            commands.add_parser(name, add_help=False)
    return parser


def version() -> str:
    """The installed distribution's version (pyproject.toml's), or "unknown" when not installed."""
    try:
        return metadata.version("escalator")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


SIGPIPE_STATUS = 141
"""Exit status when the reader of our output went away (128 + SIGPIPE, as `yes | head`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; each sets `func` returning the exit status.

    Output piped into `head` (or any reader that stops early) ends the command quietly with
    status 141 instead of a BrokenPipeError traceback.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    given = next((a for a in arguments if not a.startswith("-")), None)
    args = build_parser([given] if given in COMMANDS else []).parse_args(arguments)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
    except EscalatorError as exc:
        # a command's own errors are reported by it; one that escapes is still ours, not a bug:
        # a line naming it instead of a traceback, with the status a traceback would give
        print(f"escalator {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return SIGPIPE_STATUS
    return status


if __name__ == "__main__":
    sys.exit(main())
