"""What the commands print for stored inputs, byte for byte against stored copies.

A renovation (issue #21) changes no behaviour: these files are the proof. A change that means
to alter an output regenerates them (`python -m tests.golden.regenerate --keep-inputs`) and
says so in its commit.
"""

from __future__ import annotations

import difflib

import pytest

from streams.sla import state_codec
from tests.golden.regenerate import CASES, HERE, STATE_CASES, run_case, stored_states


@pytest.mark.parametrize(("output", "input_name", "args"), CASES, ids=[c[0] for c in CASES])
def test_output_is_byte_identical_to_the_stored_copy(
    output: str, input_name: str, args: tuple[str, ...]
) -> None:
    stored = (HERE / output).read_bytes()
    got = run_case(input_name, args)
    if got != stored:
        diff = difflib.unified_diff(
            stored.decode().splitlines(), got.decode().splitlines(), "stored", "now", lineterm=""
        )
        pytest.fail(f"{output} changed:\n" + "\n".join(list(diff)[:40]))


def test_the_late_input_exercises_corrections() -> None:
    """The late input is only worth storing if it reaches the correction paths."""
    late = (HERE / "replay-late.jsonl").read_bytes()
    assert b'"sla.retracted"' in late
    assert late != (HERE / "replay-default.jsonl").read_bytes()


@pytest.mark.parametrize(("output", "input_name"), STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_stored_states_still_read_and_are_written_the_same(output: str, input_name: str) -> None:
    """A worker upgraded over a changelog written today recovers every ticket as it was; while
    the stored format is unchanged, today's states are written byte for byte the same."""
    stored = (HERE / output).read_bytes().splitlines()
    now = stored_states(input_name).splitlines()
    assert len(now) == len(stored)
    for old, new in zip(stored, now, strict=True):
        assert state_codec.encode(state_codec.decode(old)) == new
    assert now == stored
