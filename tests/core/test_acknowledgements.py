"""Issue #25 §2: `ticket.escalation_acknowledged` stops a level's repeats; `ack_timeout`
re-arms it when the ticket has not progressed (docs/actions.md, "Acknowledgements").

The issue's hand-computed case: a Sev1, level 1 after 1h, `repeat_every = "30m"`, elapsed
clock, reported at 09:00. Level 1 at 10:00, repeat 1 at 10:30; acknowledged at 10:40: no
repeat at 11:00 or later. With `ack_timeout = "1h"` and no response, level 1 fires again at
11:40 (1h40 + 1h = 2h40 after the report; numbered repeat 3, the latest due by then, as
overdue repeats are), then on its 30-minute schedule from 12:00 (repeat 4).
"""

from __future__ import annotations

from typing import Any

from streams.sla.policy import parse_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from streams.sla.state_codec import decode, encode
from tests.core.helpers import event, replay, toronto, utc


def policy(extra: str = "", level2: str = "") -> Policy:
    levels = f"""escalations = [
  {{ after = "1h", clock = "elapsed", to = "duty", repeat_every = "30m"{extra} }},
  {{ after = "3h", clock = "elapsed", to = "manager"{level2} }},
]"""  # fmt: skip
    return parse_policy(f"""
name = "ack"
version = "t"
[calendar]
timezone = "America/Toronto"
hours = "24x7"
[severity.1]
{levels}
[severity.2]
{levels}
""", "ack.toml")  # fmt: skip


def escalations(out: list[dict[str, Any]]) -> list[tuple[int, int | None, str, str]]:
    """(level, repeat, due_at, at) of each escalation."""
    return [
        (r["level"], r.get("repeat"), r["due_at"], r["at"])
        for r in out
        if r["type"] == "ticket.escalated"
    ]


OPENED = ("opened", "2026-11-30 09:00")


def test_acknowledged_at_1h40_repeats_at_1h30_only() -> None:
    out = replay(
        (
            event(*OPENED, severity=1),
            event("escalation_acknowledged", "2026-11-30 10:40", level=1, actor="agent-17"),
        ),
        policy(),
        until="2026-11-30 13:30",
    )
    assert escalations(out) == [
        (1, None, utc("2026-11-30 10:00"), utc("2026-11-30 10:00")),
        (1, 1, utc("2026-11-30 10:30"), utc("2026-11-30 10:30")),
        # no level-1 repeat at 11:00, 11:30, ...; level 2 is not acknowledged
        (2, None, utc("2026-11-30 12:00"), utc("2026-11-30 12:00")),
    ]


def test_without_an_acknowledgement_the_level_repeats_every_30m() -> None:
    out = replay((event(*OPENED, severity=1),), policy(), until="2026-11-30 11:40")
    assert [(level, repeat) for level, repeat, _, _ in escalations(out)] == [
        (1, None), (1, 1), (1, 2), (1, 3)]  # fmt: skip


def test_ack_timeout_without_progress_fires_level_1_again_at_2h40() -> None:
    out = replay(
        (
            event(*OPENED, severity=1),
            event("escalation_acknowledged", "2026-11-30 10:40", level=1, actor="agent-17"),
        ),
        policy(extra=', ack_timeout = "1h"'),
        until="2026-11-30 12:30",
    )
    assert escalations(out) == [
        (1, None, utc("2026-11-30 10:00"), utc("2026-11-30 10:00")),
        (1, 1, utc("2026-11-30 10:30"), utc("2026-11-30 10:30")),
        (1, 3, utc("2026-11-30 11:40"), utc("2026-11-30 11:40")),  # 2h40: fires again
        (1, 4, utc("2026-11-30 12:00"), utc("2026-11-30 12:00")),  # then on its schedule
        (2, None, utc("2026-11-30 12:00"), utc("2026-11-30 12:00")),
        (1, 5, utc("2026-11-30 12:30"), utc("2026-11-30 12:30")),
    ]


def test_a_response_after_the_acknowledgement_is_progress_no_refire() -> None:
    out = replay(
        (
            event(*OPENED, severity=1),
            event("escalation_acknowledged", "2026-11-30 10:40", level=1, actor="agent-17"),
            event("responded", "2026-11-30 11:10"),
            # every timer recomputed: the acknowledgement still holds, its timeout stays off
            event("severity_changed", "2026-11-30 11:20", severity=2),
        ),
        policy(extra=', ack_timeout = "1h"'),
        until="2026-11-30 13:30",
    )
    assert [(level, repeat) for level, repeat, _, _ in escalations(out)] == [
        (1, None), (1, 1), (2, None)]  # fmt: skip


def test_an_acknowledgement_without_a_level_takes_every_fired_level_only() -> None:
    out = replay(
        (
            event(*OPENED, severity=1),
            event("escalation_acknowledged", "2026-11-30 10:40", actor="PLH1HKV"),
        ),
        policy(level2=', repeat_every = "30m"'),
        until="2026-11-30 13:00",
    )
    # level 1 (fired) is acknowledged; level 2 had not fired: it fires and repeats
    assert [(level, repeat) for level, repeat, _, _ in escalations(out)] == [
        (1, None), (1, 1), (2, None), (2, 1), (2, 2)]  # fmt: skip


def test_acknowledging_a_level_that_has_not_fired_does_nothing() -> None:
    out = replay(
        (
            event(*OPENED, severity=1),
            event("escalation_acknowledged", "2026-11-30 09:30", level=1),
        ),
        policy(),
        until="2026-11-30 11:00",
    )
    assert [(level, repeat) for level, repeat, _, _ in escalations(out)] == [
        (1, None), (1, 1), (1, 2)]  # fmt: skip


def test_a_reopen_clears_acknowledgements() -> None:
    out = replay(
        (
            event(*OPENED, severity=1),
            event("escalation_acknowledged", "2026-11-30 10:40", level=1),
            event("resolved", "2026-11-30 10:50"),
            event("reopened", "2026-11-30 11:20"),
        ),
        policy(),
        until="2026-11-30 11:50",
    )
    # repeats resume after the reopen: the latest overdue one at once, then on schedule
    assert [(level, repeat, at) for level, repeat, _, at in escalations(out)] == [
        (1, None, utc("2026-11-30 10:00")),
        (1, 1, utc("2026-11-30 10:30")),
        (1, 2, utc("2026-11-30 11:20")),
        (1, 3, utc("2026-11-30 11:30")),
    ]


def test_a_late_acknowledgement_retracts_the_repeat_it_would_have_stopped() -> None:
    """The acknowledgement of 10:40 arrives after the 11:00 repeat fired: folded in at its
    own time, the repeat is withdrawn (`sla.retracted`), as for any late event."""
    replayer = Replayer(policy())
    assert replayer.feed(event(*OPENED, severity=1))[1] is None
    fired = replayer.advance(toronto("2026-11-30 11:05"))
    assert [r.get("repeat") for r in fired if r["type"] == "ticket.escalated"] == [None, 1, 2]
    out, rejected = replayer.feed(
        event("escalation_acknowledged", "2026-11-30 10:40", level=1, actor="agent-17")
    )
    assert rejected is None
    (retraction,) = [r for r in out if r["type"] == "sla.retracted"]
    assert retraction["retracts"] == fired[2]["event_id"]
    assert not [r for r in out if r["type"] == "ticket.escalated"]


def test_the_state_keeps_acknowledgements_across_a_restart() -> None:
    ack_policy = policy(extra=', ack_timeout = "1h"')
    replayer = Replayer(ack_policy)
    for ev in (
        event(*OPENED, severity=1),
        event("escalation_acknowledged", "2026-11-30 10:40", level=1, actor="agent-17"),
    ):
        assert replayer.feed(ev)[1] is None
    (state,) = replayer.tickets.values()
    assert state.acks is not None
    restored = decode(encode(state))
    assert restored.acks == state.acks
    assert [e.level for e in restored.applied_events()] == [None, 1]
    assert restored.applied_events()[1].digest() == state.applied_events()[1].digest()
