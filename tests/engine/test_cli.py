"""CLI behaviour that needs no broker: clear errors and non-zero exits."""

from __future__ import annotations

import time
from pathlib import Path

from tests.engine.helpers import cli


def test_run_gives_up_on_an_unreachable_broker() -> None:
    started = time.monotonic()
    done = cli("run", "--connect-timeout", "2", "--web-port", "0", broker="127.0.0.1:9")
    assert done.returncode == 1
    assert time.monotonic() - started < 30
    assert b"unreachable" in done.stderr and b"127.0.0.1:9" in done.stderr


def test_run_rejects_an_invalid_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    done = cli("run", "--policy", str(bad), broker="127.0.0.1:9")
    assert done.returncode == 2
    assert b"bad.toml" in done.stderr


def test_publish_and_tail_fail_cleanly_without_broker() -> None:
    for args in (("publish", "-"), ("tail", "--timeout", "1")):
        done = cli(*args, "--connect-timeout", "1", broker="127.0.0.1:9")
        assert done.returncode == 1, args
        assert b"unreachable" in done.stderr
