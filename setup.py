"""Build hook: compile the SLA core to C with mypyc.

The fold runs on every ticket event, in replay and in the stream processor alike; mypyc turns
the same type-annotated source into a C extension that runs it about 1.5x faster. Everything
else (contract, shells, projections) stays plain Python. Set ESCALATOR_PURE_PYTHON=1 to
install without compiling (no C compiler needed, slower core, same behaviour).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

from setuptools import setup

with open("pyproject.toml", "rb") as pyproject:
    COMPILED_CORE: list[str] = tomllib.load(pyproject)["tool"]["escalator"]["compiled"]

PURE = os.environ.get("ESCALATOR_PURE_PYTHON", "") == "1"
ext_modules = []
if not PURE:
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED_CORE, opt_level="3", group_name="escalator_core")
# What this install compiled, so the test suite can refuse a build older than its source.
with open(".compiled-core.json", "w") as manifest:
    sources = {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in COMPILED_CORE}
    json.dump({"pure": PURE, "sources": {} if PURE else sources}, manifest, indent=1)

setup(ext_modules=ext_modules)
