"""`escalator`: one command line for every part; each part registers its own sub-commands.

The parts stay thin shells: parse flags, call the pure core or the service, print.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

Register = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def _registrars() -> list[Register]:
    """The sub-command groups, each registered by its own part."""
    from deploy import demo
    from events import cli as contract
    from projections import cli as projections
    from streams.engine import cli as engine
    from streams.ingest import cli as ingest
    from streams.notify import cli as notify
    from streams.sla import cli as sla

    return [
        contract.register,
        sla.register,
        engine.register,
        ingest.register,
        notify.register,
        projections.register,
        demo.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escalator",
        description="Event-sourced escalation engine for help-desk SLAs.",
    )
    parser.add_argument("--version", action="version", version=f"escalator {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(commands)
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
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return SIGPIPE_STATUS
    return status


if __name__ == "__main__":
    sys.exit(main())
