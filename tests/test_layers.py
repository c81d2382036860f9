"""The floors of the house (issue #21): deploy > projections > streams > events > base.

A floor imports only the floors below it, and base (settings, logs, durations, errors)
imports nothing of the project: `lint-imports` checks the contracts in pyproject.toml
(import-linter, every import counted, inside functions and `TYPE_CHECKING` blocks too).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = ["deploy", "projections", "streams", "events", "base"]


def test_the_contracts_name_every_floor_top_down() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_packages"] == FLOORS[::-1]
    contracts = {c["type"]: c for c in config["contracts"]}
    assert contracts["layers"]["layers"] == FLOORS
    assert contracts["forbidden"]["source_modules"] == ["base"]
    assert contracts["forbidden"]["forbidden_modules"] == FLOORS[:-1][::-1]


def test_no_floor_imports_one_above_it() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout, done.stdout
    analyzed = re.search(r"Analyzed (\d+) files", done.stdout)
    assert analyzed and int(analyzed.group(1)) >= 70, done.stdout  # it read the packages
