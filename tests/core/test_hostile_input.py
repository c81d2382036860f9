"""Issue #10 sections 2 and 6: hostile values are rejected at decode, naming the field.

Each input is the issue's own value. The same codec serves the worker, the replay and the
projector, so one rejection here is the same rejection everywhere (the worker and projector
tests run the 9999 record end to end).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.codec import InvalidEvent, decode_input_record, decode_ticket_event, sanitise
from events.instants import parse_instant
from streams.sla import state_codec
from streams.sla.fold import CONFLICT, handle
from streams.sla.policy import load_policy
from streams.sla.replay import Replayer
from tests.core.test_cli import ROOT, escalator

YEAR_9999 = (
    b'{"event_id":"p","ticket_id":"P","type":"ticket.opened",'
    b'"occurred_at":"9999-12-31T23:59:59Z","severity":2}'
)
VALID_SEV1 = (
    b'{"event_id":"v1","ticket_id":"V","type":"ticket.opened",'
    b'"occurred_at":"2026-12-01T10:00:00Z","severity":1}'
)


def opened(**fields: Any) -> bytes:
    record: dict[str, Any] = {
        "event_id": "e1",
        "ticket_id": "T1",
        "type": "ticket.opened",
        "occurred_at": "2026-12-01T10:00:00Z",
        "severity": 2,
    }
    record.update(fields)
    return orjson.dumps(record)


def reason_of(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode_ticket_event(raw)
    return str(caught.value)


def test_year_9999_is_rejected_naming_occurred_at() -> None:
    assert reason_of(YEAR_9999).startswith("field 'occurred_at': outside the supported range")


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00+05:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
    ],
)
def test_out_of_range_years_are_rejected(occurred_at: str) -> None:
    assert "supported range" in reason_of(opened(occurred_at=occurred_at))


@pytest.mark.parametrize("severity", [True, "1", 2.0])
def test_severity_must_be_a_json_integer(severity: object) -> None:
    assert reason_of(opened(severity=severity)).startswith("field 'severity':")


@pytest.mark.parametrize(
    "occurred_at",
    [
        1767261600,
        "1767261600",
        "2026-12-01 10:00:00Z",  # lower-case t and z are RFC 3339 (#27 item 11): accepted
    ],
)
def test_occurred_at_must_be_strict_rfc3339(occurred_at: object) -> None:
    assert reason_of(opened(occurred_at=occurred_at)).startswith("field 'occurred_at':")


def test_a_leap_second_is_accepted_as_the_last_microsecond_of_its_day() -> None:
    leap = decode_ticket_event(opened(occurred_at="2016-12-31T23:59:60Z"))
    before = decode_ticket_event(opened(occurred_at="2016-12-31T23:59:59.999999Z"))
    assert leap.at == before.at


def test_ticks_are_held_to_the_same_rules() -> None:
    for occurred_at in ("9999-12-31T23:59:59Z", "2026-12-01 10:00:00Z", 1767261600):
        raw = orjson.dumps({"type": "clock.tick", "occurred_at": occurred_at})
        with pytest.raises(InvalidEvent, match="occurred_at"):
            decode_input_record(raw)


def test_an_unknown_type_is_quoted_only_in_a_short_sanitised_form() -> None:
    secret = "ticket.hello my password is hunter2\r\nX-Injected: yes" + "x" * 10_000
    reason = reason_of(opened(type=secret))
    assert reason.startswith("field 'type': unknown event type 'ticket.hello?my?password...'")
    assert "hunter2" not in reason and "\n" not in reason and len(reason) < 120
    assert "unknown event type (a JSON number)" in reason_of(opened(type=7))


def test_sanitise_bounds_and_filters() -> None:
    assert sanitise("ticket.opned") == "'ticket.opned'"
    assert sanitise("é\x00") == "'??'"
    assert sanitise(None) == "(a JSON null)"
    assert len(sanitise("a" * 1_000_000)) < 60


def test_replay_cli_reports_the_9999_record_and_goes_on_without_a_traceback() -> None:
    result = escalator(
        "replay", "--until", "2026-12-12T00:00:00Z", stdin=YEAR_9999 + b"\n" + VALID_SEV1 + b"\n"
    )
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err
    assert "line 1: field 'occurred_at': outside the supported range" in err
    assert b'"ticket_id":"V"' in result.stdout


FAULT_SCRIPT = """
import sys
from streams.sla import replay
from streams.sla.fold import CONFLICT, handle
from streams.sla.policy import load_policy
assert replay.__file__.endswith(".py"), replay.__file__
real = replay.handle
def handle(state, event, policy, raw=None, origin=-1):
    if event.ticket_id == "P":
        raise ValueError("injected")
    return real(state, event, policy, raw, origin)
replay.handle = handle
reasons = []
lines = [l.encode() for l in sys.argv[1:]]
until = 1_797_033_600_000_000  # 2026-12-12T00:00:00Z
out = list(replay.Replayer(load_policy()).run(lines, until, lambda n, r: reasons.append((n, r))))
print(reasons)
print(sorted(e["event_id"] for e in out))
"""


def test_replay_skips_a_line_the_core_fails_on_and_keeps_the_others(tmp_path: Path) -> None:
    """A fault inside the fold (a bug; injected) costs that line only, reported by error type.

    Runs the plain source in a subprocess: the compiled core cannot be patched.
    """
    for package in ("events", "streams"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.so"))
    faulty = opened(event_id="p", ticket_id="P").decode()
    valid = VALID_SEV1.decode()
    until = parse_instant("2026-12-12T00:00:00Z")
    expected = sorted(e["event_id"] for e in Replayer(load_policy()).run([VALID_SEV1], until))
    result = subprocess.run(
        [sys.executable, "-c", FAULT_SCRIPT, faulty, valid],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reasons, emitted = result.stdout.splitlines()
    assert reasons == "[(1, 'internal error: ValueError')]"
    assert emitted == str(expected)
    assert expected  # the valid ticket did emit


def test_a_reused_event_id_with_other_content_is_rejected_not_dropped() -> None:
    """Issue #10 section 6: a redelivery is a duplicate; the same id with other content is not."""
    policy = load_policy()
    first = decode_ticket_event(opened(event_id="e1", severity=2))
    state = handle(None, first, policy).state
    assert state is not None
    assert handle(state, decode_ticket_event(opened(event_id="e1", severity=2)), policy).duplicate
    other = handle(state, decode_ticket_event(opened(event_id="e1", severity=1)), policy)
    assert not other.duplicate
    assert other.rejected == CONFLICT
    later = opened(event_id="e1", type="ticket.resolved", occurred_at="2026-12-01T11:00:00Z")
    assert handle(state, decode_ticket_event(later), policy).rejected == CONFLICT
    # A state stored before digests existed still treats a repeated id as a redelivery.
    old = state_codec.to_obj(state)
    del old["digests"]
    restored = state_codec.from_obj(old)
    assert handle(restored, decode_ticket_event(later), policy).duplicate


def test_replay_counts_a_reused_event_id_as_rejected_with_its_reason() -> None:
    lines = [
        opened(event_id="e1", severity=2),
        opened(event_id="e1", severity=2),
        opened(event_id="e1", severity=1),
    ]
    reasons: list[tuple[int, str]] = []
    replayer = Replayer(load_policy())
    list(replayer.run(lines, None, lambda n, r: reasons.append((n, r))))
    assert reasons == [(3, CONFLICT)]
    assert (replayer.counts.duplicates, replayer.counts.rejected) == (1, 1)


CLOSED_FOR_YEARS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//tryout//EN\r
BEGIN:VEVENT\r
UID:shutdown\r
DTSTART;VALUE=DATE:20260101\r
DTEND;VALUE=DATE:20300101\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_a_core_fault_from_real_input_costs_one_line_in_the_compiled_replay(
    tmp_path: Path,
) -> None:
    """Real input the core cannot time, no patching (so the compiled core runs): a 24x7
    calendar closed by an iCalendar event for four years; a ticket inside it has no deadline
    within two local years (NoBusinessTimeError). That line is reported, the next still runs."""
    (tmp_path / "closed.ics").write_bytes(CLOSED_FOR_YEARS)
    policy = tmp_path / "p.toml"
    policy.write_text(
        'name = "p"\n[calendars.c]\ntimezone = "UTC"\nhours = "24x7"\nical = "closed.ics"\n'
        '[severity.1]\nfirst_response = { target = "1h" }\n'
    )
    history = tmp_path / "h.jsonl"
    history.write_bytes(
        opened(event_id="a", ticket_id="A", occurred_at="2027-01-01T00:00:00Z", severity=1)
        + b"\n"
        + opened(event_id="b", ticket_id="B", occurred_at="2030-01-01T00:00:00Z", severity=1)
        + b"\n"
    )
    result = escalator(
        "replay", "--input", str(history), "--policy", str(policy),
        "--until", "2030-01-02T00:00:00Z", "--format", "table",
    )  # fmt: skip
    assert b"Traceback" not in result.stderr, result.stderr.decode()[-600:]
    assert result.returncode == 0
    assert b"line 1: internal error: NoBusinessTimeError" in result.stderr
    # B, reported when the calendar opens again, is due an hour later.
    assert b"2030-01-01T01:00:00Z  B" in result.stdout
