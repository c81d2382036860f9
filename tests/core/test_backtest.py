"""`escalator backtest`: the shipped sample under the default policy and a proposed change.

The proposal (hand-checked against the sample's walk-through in docs/replay.md): Sev2
resolution 2bd instead of 1bd, and a second Sev1 escalation level to a duty manager 2h after
the report.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import orjson

from events.instants import parse_instant
from streams.sla.backtest import backtest, format_table
from streams.sla.policy import load_policy, parse_policy

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "tickets.jsonl"
UNTIL = "2026-12-01T18:00:00-05:00"


PROPOSED = SAMPLE.with_name("proposed-policy.toml")


def proposed_text() -> str:
    """The shipped proposal (deploy/examples/proposed-policy.toml), checked to be the default
    with exactly the two changes."""
    text = resources.files("streams.sla").joinpath("default_policy.toml").read_text()
    sev2 = 'resolution = { target = "1bd", clock = "business", pausable = true }\n'
    text = text.replace(sev2, sev2.replace("1bd", "2bd"), 1)
    sev1 = 'escalations = [{ after = "1h", clock = "elapsed", to = "senior-technical-staff" }]'
    text = text.replace(sev1, sev1[:-1] + ', { after = "2h", to = "duty-manager" }]', 1)
    shipped = PROPOSED.read_text()
    assert shipped.endswith(text)
    return shipped


def test_backtest_on_the_sample_reports_changes_and_gained_escalations() -> None:
    proposed = parse_policy(proposed_text(), "proposed.toml")
    report = backtest(
        SAMPLE.read_bytes().splitlines(), load_policy(), proposed, parse_instant(UNTIL)
    )
    rows = {(r["severity"], r["metric"]): r for r in report["summary"]}
    # 2bd = 21 business hours. T-101 (Sev2, reported Friday 17:00) was resolved Tuesday 09:00
    # after 13h: met instead of breached (Monday 17:00); reopened Tuesday 10:00, its remaining
    # 8h end Tuesday 18:00, within the run: breached in cycle 1 (under 1bd the breach had
    # already fired, once per ticket). T-104 (Sev2, reported Monday 10:00, paused 11:00-15:00)
    # breached 1bd on Tuesday 14:00; 2bd is due Wednesday, after the run: still running.
    assert rows[(2, "resolution")] == {
        "policy": "clevr-helpdesk", "severity": 2, "metric": "resolution",
        "met_current": 0, "breached_current": 2, "met_proposed": 1, "breached_proposed": 1,
        "met_difference": 1, "breached_difference": -1,
    }  # fmt: skip
    assert rows[(1, "first_response")]["met_difference"] == 0
    assert report["changed"] == [
        {"ticket_id": "T-101", "metric": "resolution", "cycle": 0,
         "current": "breached", "proposed": "met"},
        {"ticket_id": "T-101", "metric": "resolution", "cycle": 1,
         "current": "-", "proposed": "breached"},
        {"ticket_id": "T-104", "metric": "resolution", "cycle": 0,
         "current": "breached", "proposed": "-"},
    ]  # fmt: skip
    # Sev1 tickets T-102 (reported 09:00, resolved 16:00) and T-103 (Sev1 from 11:00, reported
    # 09:15, unresolved) reach the new level 2h after their report.
    assert report["escalations_gained"] == [
        {"ticket_id": "T-102", "cycle": 0, "level": 2, "to": "duty-manager"},
        {"ticket_id": "T-103", "cycle": 0, "level": 2, "to": "duty-manager"},
    ]
    assert report["escalations_lost"] == []


def test_backtest_command_prints_a_table_and_json(tmp_path: Path) -> None:
    proposed = tmp_path / "proposed.toml"
    proposed.write_text(proposed_text())
    base = [sys.executable, "-m", "deploy.cli", "backtest", "--input", str(SAMPLE),
            "--against", str(proposed), "--until", UNTIL]  # fmt: skip
    table = subprocess.run(base, capture_output=True, check=True, text=True).stdout
    assert "tickets whose outcome changes: 3" in table
    assert "T-104  resolution  cycle 0: breached -> -" in table
    assert "escalations gained: 2" in table
    as_json = subprocess.run([*base, "--format", "json"], capture_output=True, check=True)
    assert orjson.loads(as_json.stdout)["escalations_lost"] == []


LATE = [
    b'{"event_id":"1","ticket_id":"L","type":"ticket.opened",'
    b'"occurred_at":"2026-11-30T09:00:00-05:00","severity":1}',
    b'{"event_id":"1","ticket_id":"O","type":"ticket.opened",'
    b'"occurred_at":"2026-11-30T12:00:00-05:00","severity":4}',
    b'{"event_id":"2","ticket_id":"L","type":"ticket.resolved",'
    b'"occurred_at":"2026-11-30T09:45:00-05:00"}',
]
"""Sev1 ticket L reported Monday 09:00; ticket O at 12:00 moves the watermark (15 min behind)
to 11:45, past L's first-response deadline (10:00), its 1h escalation (10:00) and, in the
proposal, its 2h escalation (11:00); then a late line: L was resolved at 09:45."""


def test_backtest_drops_what_a_late_line_retracts() -> None:
    """Found trying #8 §4: breaches and escalations withdrawn by `sla.retracted` still counted
    (and a retracted level-2 escalation read as one gained)."""
    proposed = parse_policy(proposed_text(), "proposed.toml")
    report = backtest(LATE, load_policy(), proposed, parse_instant("2026-11-30T18:00:00-05:00"))
    # Resolved at 09:45 before any deadline: resolution met in 45 business minutes under both;
    # no reply, so no first-response outcome; no escalation was due by then.
    assert report["summary"] == [
        {"policy": "clevr-helpdesk", "severity": 1, "metric": "resolution",
         "met_current": 1, "breached_current": 0, "met_proposed": 1, "breached_proposed": 0,
         "met_difference": 0, "breached_difference": 0},
    ]  # fmt: skip
    assert report["changed"] == []
    assert report["escalations_gained"] == report["escalations_lost"] == []


def test_backtest_reports_lines_one_policy_rejects() -> None:
    """A severity the proposal drops used to vanish silently from the comparison."""
    text = proposed_text()
    proposed = parse_policy(text[: text.index("[severity.4]")], "proposed.toml")
    report = backtest(LATE, load_policy(), proposed, parse_instant("2026-11-30T18:00:00-05:00"))
    assert report["skipped"] == {
        "current": [],
        "proposed": [
            {
                "line": 2,
                "reason": "field 'severity': 4 is not defined in policy 'clevr-helpdesk'",
            }
        ],
    }
    assert (
        "lines skipped (invalid or rejected): 0 current, 1 proposed\n"
        "  line 2 (proposed only): field 'severity': 4 is not defined in policy 'clevr-helpdesk'"
    ) in format_table(report)
    sample = backtest(SAMPLE.read_bytes().splitlines(), load_policy(), proposed)
    assert [s["line"] for s in sample["skipped"]["current"]] == [11, 14, 16]
    assert "lines skipped (invalid or rejected): 3 current, 3 proposed" in format_table(sample)


def test_backtest_reads_the_history_from_stdin_like_replay() -> None:
    """`--input -` as for replay (`escalator sample | escalator backtest --input - ...`); it
    failed: 'cannot read -'."""
    base = [sys.executable, "-m", "deploy.cli", "backtest", "--against", str(PROPOSED),
            "--until", UNTIL]  # fmt: skip
    from_file = subprocess.run([*base, "--input", str(SAMPLE)], capture_output=True, check=True)
    piped = subprocess.run(
        [*base, "--input", "-"], input=SAMPLE.read_bytes(), capture_output=True, check=False
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == from_file.stdout


def test_documented_backtest_example_is_what_a_user_gets() -> None:
    readme = (SAMPLE.parents[2] / "docs" / "replay.md").read_text()
    block = re.search(r"```console\n\$ (escalator backtest [^\n]+)\n(.*?)```", readme, re.S)
    assert block, "docs/replay.md has no backtest example"
    args = block.group(1).split()[1:]
    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        capture_output=True,
        cwd=SAMPLE.parents[2],
        check=True,
    )
    assert result.stdout.decode() == block.group(2)
