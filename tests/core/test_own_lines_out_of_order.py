"""Issue #19 item 3: a ticket's own lines out of order (a resume before its pause) are parked
until the earlier event comes, then folded in where they belong; replay with 15m and 0."""

from __future__ import annotations

import orjson
import pytest

from streams.sla.policy import parse_policy
from streams.sla.replay import Replayer

POLICY_TEXT = """
name = "issue-19"
version = "1"
[calendar]
timezone = "America/Toronto"
open = "09:00"
close = "17:00"
weekdays = ["mon", "tue", "wed", "thu", "fri"]
[severity.2]
first_response = { target = "1h", clock = "business" }
resolution = { target = "8h", clock = "business", pausable = true }
escalations = [{ after = "2h", to = "duty" }]
"""
POLICY = parse_policy(POLICY_TEXT, "issue-19.toml")


def _line(event_id: str, kind: str, when: str, **fields: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "ticket_id": "C",
            "type": f"ticket.{kind}",
            "occurred_at": f"2026-12-07T{when}:00-05:00",
            **fields,
        }
    )


OPENED = _line("c1", "opened", "09:00", severity=2)
RESUMED = _line("c2", "resumed", "10:05")
PAUSED = _line("c3", "paused", "10:00")
EXPECTED = [
    ("sla.breached", "first_response", "2026-12-07T15:00:00Z", None),
    ("ticket.escalated", "escalation", "2026-12-07T16:00:00Z", None),
    ("sla.breached", "resolution", "2026-12-08T14:05:00Z", None),
    (
        "customer.notification_required",
        "resolution",
        "2026-12-08T14:05:00Z",
        "2026-12-09T14:05:00Z",
    ),
]


@pytest.mark.parametrize("max_delay", [15 * 60_000_000, 0])
def test_a_resume_before_its_pause_waits_and_is_folded_in(max_delay: int) -> None:
    until = 1_797_000_000_000_000  # 2026-12-10T07:20Z, after the notification
    reasons: list[tuple[int, str]] = []
    replayer = Replayer(POLICY, max_delay)
    out = list(replayer.run([OPENED, RESUMED, PAUSED], until, lambda n, r: reasons.append((n, r))))
    assert reasons == []
    assert [(r["type"], r["metric"], r["at"], r.get("eta")) for r in out] == EXPECTED
    in_order = list(Replayer(POLICY, max_delay).run([OPENED, PAUSED, RESUMED], until))
    assert out == in_order
    assert replayer.counts.held == 1 and replayer.counts.rejected == 0


def test_a_resume_whose_pause_never_comes_is_rejected_with_its_line_and_the_state() -> None:
    reasons: list[tuple[int, str]] = []
    replayer = Replayer(POLICY, 0)
    list(replayer.run([OPENED, RESUMED], None, lambda n, r: reasons.append((n, r))))
    assert len(reasons) == 1 and reasons[0][0] == 2
    assert reasons[0][1].startswith("cannot resume an open ticket")
    assert replayer.counts.rejected == 1


def _at(when: str) -> int:
    from events.instants import parse_instant

    return parse_instant(f"2026-12-07T{when}:00-05:00")


UNTIL = 1_797_000_000_000_000  # 2026-12-10T07:20Z, after every timer of these lines


@pytest.mark.parametrize("max_delay", [15 * 60_000_000, 0])
@pytest.mark.parametrize(
    "lines",
    [
        # a reopen before its resolve
        [OPENED, _line("r2", "reopened", "11:00"), _line("r1", "resolved", "10:30")],
        # a reply before its open (the ticket unknown when the reply comes)
        [_line("p2", "responded", "09:20"), OPENED],
        # a resume and a reply before the open, then the pause
        [RESUMED, _line("p2", "responded", "09:20"), OPENED, PAUSED],
        # a pause of a paused ticket: the second pause before the resume between them
        [OPENED, PAUSED, _line("c4", "paused", "10:30"), RESUMED],
    ],
    ids=["reopen-before-resolve", "reply-before-open", "all-before-open", "pause-of-paused"],
)
def test_every_lifecycle_pair_out_of_order_gives_the_time_ordered_output(
    lines: list[bytes], max_delay: int
) -> None:
    reasons: list[tuple[int, str]] = []
    replayer = Replayer(POLICY, max_delay)
    out = list(replayer.run(lines, UNTIL, lambda n, r: reasons.append((n, r))))
    in_order = sorted(lines, key=lambda line: orjson.loads(line)["occurred_at"])
    assert in_order != lines
    expected = list(Replayer(POLICY, max_delay).run(in_order, UNTIL))
    assert reasons == [] and out == expected and len(out) >= 2
    assert replayer.counts.held >= 1 and replayer.counts.rejected == 0


def test_a_reply_whose_open_comes_too_late_is_rejected_with_its_line() -> None:
    """The lateness bound: another ticket's line moves the watermark past the reply's time
    before its open comes; the reply is rejected then, with its line number."""
    other = orjson.dumps(
        {
            "event_id": "d1",
            "ticket_id": "D",
            "type": "ticket.opened",
            "occurred_at": "2026-12-07T09:40:00-05:00",
            "severity": 2,
        }
    )
    reply = _line("p2", "responded", "09:20")
    reasons: list[tuple[int, str]] = []
    replayer = Replayer(POLICY, 15 * 60_000_000)
    list(replayer.run([reply, other, OPENED], UNTIL, lambda n, r: reasons.append((n, r))))
    assert len(reasons) == 1 and reasons[0][0] == 1
    assert reasons[0][1].startswith("unknown ticket 'C': no ticket.opened seen (held until")
    assert replayer.counts.held == 1 and replayer.counts.rejected == 1
