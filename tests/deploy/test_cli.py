"""The `escalator` command as a user meets it: version, pipes, sample start, query errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import orjson
import pytest

from events.instants import parse_instant

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "examples" / "tickets.jsonl"


def escalator(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_version_is_the_packages() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = escalator("--version")
    assert done.returncode == 0
    assert done.stdout.decode().strip() == f"escalator {version}"


PROBE = """
import sys
from deploy.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED", " ".join(sorted(m for m in sys.modules if m.split(".")[0] in {"events", "streams",
      "projections"} or m in {"deploy.demo", "deploy.settings", "base.settings", "pydantic",
      "aiokafka"})),
      file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [(["--version"], set()), (["--help"], set()), ([], set()), (["nope"], set()),
     (["schema", "--help"], {"events", "pydantic"})],
)  # fmt: skip
def test_the_command_line_imports_only_the_part_it_runs(argv: list[str], allowed: set[str]) -> None:
    """`--version` and `--help` import no part (they answered in 0.5 s when every part was
    imported up front; tests/bench/bench_cli_startup.py measures them); a sub-command imports
    its own part, not the others'."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    loaded = done.stderr.decode().rsplit("LOADED", 1)[1].split()
    assert {m.split(".")[0] for m in loaded} <= allowed, loaded


def test_every_part_registers_exactly_the_commands_listed() -> None:
    """The listed summaries and the parts agree: a command a part adds is listed, and every
    listed command is really added by the part named for it (not left a placeholder)."""
    import argparse
    import importlib

    from deploy.cli import COMMANDS

    for module in {command.module for command in COMMANDS.values()}:
        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers()
        importlib.import_module(module).register(commands)
        listed = {name for name, command in COMMANDS.items() if command.module == module}
        assert set(commands.choices) == listed, module


def _into_head(args: list[str]) -> tuple[int, str]:
    """Run `escalator ARGS | head -n 1`: the reader leaves after one line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(60), err


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--tickets", "3000"],
        ["schema"],
        ["replay", "--input", "HISTORY"],
        ["replay", "--input", "HISTORY", "--format", "table"],
    ],
)
def test_a_reader_that_leaves_early_gets_no_traceback(args: list[str], tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_bytes(escalator("sample", "--tickets", "3000").stdout)
    args = [str(history) if a == "HISTORY" else a for a in args]
    status, err = _into_head(args)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert status in (0, 141), err


def test_query_output_into_head(tmp_path: Path) -> None:
    db = tmp_path / "p.sqlite3"
    from projections.db import Database
    from projections.schema import migrate

    database = Database(str(db))
    migrate(database)
    database.close()
    _status, err = _into_head(["query", "compliance", "--db", str(db)])
    assert "Traceback" not in err, err


def _first_opened(out: bytes) -> int:
    events = [orjson.loads(line) for line in out.splitlines()]
    return min(parse_instant(e["occurred_at"]) for e in events)


def test_sample_start_sets_when_the_history_begins() -> None:
    done = escalator("sample", "--tickets", "20", "--start", "2026-01-05T09:00:00+01:00")
    assert done.returncode == 0, done.stderr
    start = parse_instant("2026-01-05T08:00:00Z")
    first = _first_opened(done.stdout)
    assert start <= first < start + 3_600_000_000
    default = _first_opened(escalator("sample", "--tickets", "20").stdout)
    assert parse_instant("2026-11-23T13:00:00Z") <= default < parse_instant("2026-11-23T14:00:00Z")


def test_sample_start_relative_to_now() -> None:
    done = escalator("sample", "--tickets", "20", "--start", "30d")
    assert done.returncode == 0, done.stderr
    thirty_days_ago = time.time_ns() // 1000 - 30 * 86_400_000_000
    assert abs(_first_opened(done.stdout) - thirty_days_ago) < 3_600_000_000
    now = escalator("sample", "--tickets", "5", "--start", "now")
    assert abs(_first_opened(now.stdout) - time.time_ns() // 1000) < 3_600_000_000


def test_sample_start_rejects_a_bad_time() -> None:
    for bad in ("yesterday", "2026-01-05T09:00:00"):
        done = escalator("sample", "--start", bad)
        assert done.returncode == 2
        assert b"--start" in done.stderr
        assert not done.stdout


def test_query_of_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "projections.sqlite3"
    for what in (["tickets"], ["ticket", "T-1"], ["escalations"], ["compliance"]):
        done = escalator("query", *what, "--db", str(missing))
        assert done.returncode == 1, what
        assert str(missing).encode() in done.stderr
        assert b"no database" in done.stderr
        assert b"Traceback" not in done.stderr
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.postgres
def test_query_of_a_missing_postgres_database_says_so(postgres_dsn: str) -> None:
    base, _, _ = postgres_dsn.rpartition("/")
    missing = f"{base}/no_such_database_here"
    done = escalator("query", "tickets", "--db", missing)
    assert done.returncode == 1
    assert b"no_such_database_here" in done.stderr and b"does not exist" in done.stderr
    assert b"Traceback" not in done.stderr
