"""`escalator`: one command line for every part; each part registers its own sub-commands.

The parts stay thin shells: parse flags, call the pure core or the service, print.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; each sets `func` returning the exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
