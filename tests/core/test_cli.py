"""The SLA core's commands as a user runs them: `escalator replay`, `policy check`, `schema`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from events.outbound import sla_event_adapter
from events.schema import SCHEMA_DIR, render, schemas

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "examples" / "tickets.jsonl"


def escalator(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_replay_of_the_shipped_sample_reports_bad_lines_and_emits_valid_events() -> None:
    result = escalator("replay", "--input", str(SAMPLE), "--until", "2026-12-01T18:00:00-05:00")
    assert result.returncode == 0
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        sla_event_adapter.validate_python(record)
    assert len(records) == 17
    stderr = result.stderr.decode()
    assert "line 11: field 'severity'" in stderr
    assert "line 14: unknown ticket 'T-106'" in stderr
    assert "line 16: malformed JSON" in stderr
    assert "2 invalid, 1 rejected, 1 duplicates" in stderr
    # free text sent by upstream (title, comment) never comes out
    assert b"VPN" not in result.stdout and b"Looking into it" not in result.stdout


def test_documented_replay_example_is_what_a_user_gets() -> None:
    """docs/replay.md shows a replay of the shipped sample; the command must print exactly that."""
    readme = (ROOT / "docs" / "replay.md").read_text()
    block = re.search(r"```console\n\$ (escalator replay [^\n]+)\n(.*?)```", readme, re.S)
    assert block, "docs/replay.md has no replay example"
    command, shown = block.group(1), block.group(2)
    args = command.split()[1:]
    args = [a for a in args if a not in ("2>/dev/null",)]
    result = escalator(*args)
    assert result.returncode == 0
    assert result.stdout.decode() == shown


def test_replay_reads_stdin_and_advances_to_until() -> None:
    opened = SAMPLE.read_bytes().splitlines()[0] + b"\n"
    short = escalator("replay", stdin=b"")  # no --until: the clock stops at the last event
    assert short.returncode == 0 and short.stdout == b""
    until = "2026-11-30T12:00:00-05:00"
    result = escalator("replay", "--input", "-", "--until", until, stdin=opened)
    types = [orjson.loads(line)["type"] for line in result.stdout.splitlines()]
    assert types == ["ticket.escalated", "sla.breached"]


def test_replay_with_bad_arguments_exits_non_zero() -> None:
    assert escalator("replay", "--until", "yesterday").returncode == 2
    assert escalator("replay", "--input", "/nonexistent.jsonl").returncode == 2
    bad = escalator("replay", "--policy", "/nonexistent.toml")
    assert bad.returncode == 2 and b"/nonexistent.toml" in bad.stderr


def test_policy_check_prints_targets_and_warns(tmp_path: Path) -> None:
    result = escalator("policy", "check")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "1h business" in out and "10h30m business (1bd)" in out and "after 8h elapsed" in out
    assert "severity.3: first_response target is later than the resolution target" in out
    broken = tmp_path / "broken.toml"
    broken.write_text(
        'name = "b"\n[calendar]\ntimezone = "UTC"\nopen = "08:00"\nclose = "17:00"\n'
        'weekdays = ["mon"]\n[severity.1]\nresolution = { target = "3 weeks" }\n'
    )
    bad = escalator("policy", "check", str(broken))
    assert bad.returncode == 2
    assert f"{broken}: severity.1.resolution.target: invalid duration" in bad.stderr.decode()


def test_policy_errors_name_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "typo.toml"
    broken.write_text(
        'name = "b"\n[calendar]\ntimezone = "UTC"\nopen = "08:00"\nclose = "17:00"\n'
        'weekdays = ["mon", "funday"]\n[severity.1]\nfirst_responce = { target = "1h" }\n'
    )
    err = escalator("policy", "check", str(broken)).stderr.decode()
    assert "calendar.weekdays.1" in err and "severity.1.first_responce" in err


def test_committed_json_schemas_match_the_models() -> None:
    for name, schema in schemas().items():
        assert (SCHEMA_DIR / name).read_bytes() == render(schema), f"regenerate {name}"
    printed = escalator("schema").stdout
    assert b"ticket.severity_changed" in printed and b"customer.notification_required" in printed
