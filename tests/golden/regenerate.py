"""Write the stored copies the golden tests compare with (`python -m tests.golden.regenerate`).

Run it only for a change that means to alter behaviour, and say so in the commit: a renovation
(issue #21) must leave every file here byte-identical. The inputs are stored too, so a change
to the sample generator cannot hide a change of the fold.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson

from events.instants import HOUR
from events.samples import generate_history
from tests.core.test_event_time import _interleave

HERE = Path(__file__).parent
REPO = HERE.parent.parent

# (stored output, input file, escalator arguments after the command)
CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("replay-default.jsonl", "sample.jsonl", ("replay",)),
    ("replay-max-delay-0.jsonl", "sample.jsonl", ("replay", "--max-delay", "0")),
    ("replay-late.jsonl", "late.jsonl", ("replay", "--max-delay", "15m")),
    ("replay-vendor-policy.jsonl", "sample.jsonl",
     ("replay", "--policy", "deploy/examples/vendor-policy.toml")),
    ("replay-demo-policy.jsonl", "sample.jsonl",
     ("replay", "--policy", "deploy/examples/demo-policy.toml")),
    ("replay-table.txt", "sample.jsonl", ("replay", "--format", "table")),
    ("backtest.txt", "sample.jsonl",
     ("backtest", "--against", "deploy/examples/proposed-policy.toml")),
    ("backtest.json", "sample.jsonl",
     ("backtest", "--against", "deploy/examples/proposed-policy.toml", "--format", "json")),
    ("policy-check-default.txt", "", ("policy", "check")),
    ("policy-check-vendor.txt", "", ("policy", "check", "deploy/examples/vendor-policy.toml")),
    ("policy-check-olas.txt", "", ("policy", "check", "deploy/examples/vendor-olas.toml")),
)  # fmt: skip


def run_case(input_name: str, args: tuple[str, ...]) -> bytes:
    """Stdout of `escalator <args>` with the stored input on stdin (or `--input`)."""
    command = [sys.executable, "-m", "deploy.cli", *args]
    if input_name:
        command += ["--input", str(HERE / input_name)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.decode()}")
    return done.stdout


STATE_CASES: tuple[tuple[str, str], ...] = (
    ("states-sample.jsonl", "sample.jsonl"),
    ("states-late.jsonl", "late.jsonl"),
)
"""(stored changelog values, input): each ticket's state after the replay, as the engine
writes it to its changelog, one line per ticket in ticket id order."""


def stored_states(input_name: str) -> bytes:
    """The changelog form of every ticket's state after replaying the stored input (15m)."""
    from streams.sla import state_codec
    from streams.sla.policy import load_policy
    from streams.sla.replay import DEFAULT_MAX_DELAY, Replayer

    replayer = Replayer(load_policy(), DEFAULT_MAX_DELAY)
    for _ in replayer.run((HERE / input_name).read_bytes().splitlines()):
        pass
    tickets = replayer.tickets
    return b"".join(state_codec.encode(tickets[t]) + b"\n" for t in sorted(tickets))


def write_inputs() -> None:
    lines = [orjson.dumps(obj) for obj in generate_history(150, seed=7)]
    (HERE / "sample.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # lines delayed up to 2 h: beyond the 15-minute bound, so corrections and retractions
    late = _interleave(lines, 2 * HOUR, random.Random(7))
    (HERE / "late.jsonl").write_bytes(b"\n".join(late) + b"\n")


def main() -> None:
    if "--keep-inputs" not in sys.argv:
        write_inputs()
    for output, input_name, args in CASES:
        (HERE / output).write_bytes(run_case(input_name, args))
        print(f"wrote {output}")
    for output, input_name in STATE_CASES:
        (HERE / output).write_bytes(stored_states(input_name))
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
