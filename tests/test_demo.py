"""The README's main command: `escalator demo` shows escalations arriving from a real worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.kafka
def test_demo_shows_escalations_arriving_on_time(kafka_bootstrap: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "demo", "--seconds", "33"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    def seen(ticket: str, kind: str, metric: str, extra: str = "") -> str:
        found = [
            line
            for line in lines
            if line.startswith(ticket)
            and f" {kind} " in line
            and f" {metric} " in line
            and extra in line
        ]
        assert len(found) == 1, f"{ticket} {kind} {metric} {extra}:\n{result.stdout}"
        return found[0]

    seen("DEMO-2", "sla.met", "first_response")
    seen("DEMO-2", "sla.met", "resolution")
    seen("DEMO-1", "ticket.escalated", "escalation", "level 1 -> on-call-engineer")
    seen("DEMO-1", "ticket.escalated", "escalation", "level 2 -> senior-technical-staff")
    seen("DEMO-1", "customer.notification_required", "resolution")
    for line in lines:
        if match := re.search(r"arrived ([+-]\d+\.\d+)s after due", line):
            assert 0 <= float(match.group(1)) <= 1.5, line  # never early, about on time
