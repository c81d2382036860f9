"""Policy versions and rollouts in the SLA core (issue #22), with the issue's own values.

Sev2 first response 60m -> 20m on a 24x7 UTC calendar, tickets opened at 10:00 (UTC). The
rollout instant is event time: what is dated before it is timed by the old version.
"""

from __future__ import annotations

from typing import Any

from events.codec import ticket_event_from_obj
from events.instants import MINUTE, parse_rfc3339
from events.outbound import sla_event_adapter
from events.records import TicketEvent
from events.rollouts import RolloutMode
from events.sla_records import wire
from streams.sla.policy import parse_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from streams.sla.versions import PolicyBook, Rollout

V1 = """
name = "rollout-test"
version = "v1"
[calendar]
timezone = "UTC"
hours = "24x7"
[severity.2]
first_response = { target = "60m" }
[severity.3]
first_response = { target = "2h" }
"""
V2 = """
name = "rollout-test"
version = "v2"
[calendar]
timezone = "UTC"
hours = "24x7"
[severity.2]
first_response = { target = "20m" }
"""
DAY = "2026-12-07T"


def at(hhmm: str) -> int:
    return parse_rfc3339(f"{DAY}{hhmm}:00Z")


def utc(hhmm: str) -> str:
    return f"{DAY}{hhmm}:00Z"


def book(mode: RolloutMode, instant: str, new: str = V2) -> Policy:
    base = parse_policy(V1, "v1.toml")
    versions = PolicyBook(base)
    policy = parse_policy(new, "v2.toml")
    refused = versions.add(Rollout(policy.version, policy.digest, at(instant), mode), policy)
    assert refused is None
    return versions.newest


_ids = iter(range(1, 10_000))


def ev(kind: str, hhmm: str, ticket: str, **fields: Any) -> TicketEvent:
    return ticket_event_from_obj(
        {
            "event_id": f"e{next(_ids)}",
            "ticket_id": ticket,
            "type": f"ticket.{kind}",
            "occurred_at": utc(hhmm),
            **fields,
        }
    )


def run(policy: Policy, events: list[TicketEvent], until: str) -> tuple[list[Any], Replayer]:
    replayer = Replayer(policy)
    out: list[dict[str, Any]] = []
    for event in events:
        emitted, rejected = replayer.feed(event)
        assert rejected is None, rejected
        out.extend(emitted)
    out.extend(replayer.advance(at(until)))
    for record in out:
        sla_event_adapter.validate_python(wire(record))
    return out, replayer


def breaches(out: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [
        (r["ticket_id"], r["due_at"], r["at"], r["policy"]["version"])
        for r in map(wire, out)
        if r["type"] == "sla.breached"
    ]


def test_untouched_tickets_breach_at_the_new_deadline_in_open_tickets_mode() -> None:
    opened = [ev("opened", "10:00", t, severity=2) for t in ("B", "C", "D")]
    opened[2] = ev("opened", "10:15", "D", severity=2)
    out, _ = run(book("open-tickets", "10:10"), opened, "11:30")
    assert breaches(out) == [
        ("B", utc("10:20"), utc("10:20"), "v2"),
        ("C", utc("10:20"), utc("10:20"), "v2"),
        ("D", utc("10:35"), utc("10:35"), "v2"),
    ]


def test_untouched_tickets_keep_the_old_deadline_in_new_tickets_mode() -> None:
    opened = [ev("opened", "10:00", t, severity=2) for t in ("B", "C", "D")]
    opened[2] = ev("opened", "10:15", "D", severity=2)
    out, _ = run(book("new-tickets", "10:10"), opened, "11:30")
    assert breaches(out) == [
        ("D", utc("10:35"), utc("10:35"), "v2"),
        ("B", utc("11:00"), utc("11:00"), "v1"),
        ("C", utc("11:00"), utc("11:00"), "v1"),
    ]


def test_a_rollout_after_the_recomputed_deadline_fires_it_at_the_instant() -> None:
    """A touched at 10:25 (on v1 then), B untouched; open-tickets at 10:30: both breach at
    the watermark 10:30 with due_at 10:20, the recomputed deadline."""
    events = [
        ev("opened", "10:00", "A", severity=2),
        ev("opened", "10:00", "B", severity=2),
        ev("assigned", "10:25", "A", group="tier-2"),
    ]
    out, _ = run(book("open-tickets", "10:30"), events, "11:30")
    assert breaches(out) == [
        ("A", utc("10:20"), utc("10:30"), "v2"),
        ("B", utc("10:20"), utc("10:30"), "v2"),
    ]


def test_a_removed_severity_keeps_its_tickets_on_their_version() -> None:
    """v2 has no severity 3: the Sev3 tickets (E touched after the instant, E2 not) are never
    rejected, stay on v1 (2h) and are counted once each as kept; a Sev3 ticket opened after
    the instant is refused by v2."""
    policy = book("open-tickets", "10:10")
    replayer = Replayer(policy)
    out: list[dict[str, Any]] = []
    for event in [
        ev("opened", "10:00", "E", severity=3),
        ev("opened", "10:00", "E2", severity=3),
        ev("opened", "10:00", "B", severity=2),
        ev("assigned", "10:40", "E", group="tier-2"),
        ev("responded", "10:50", "B"),
    ]:
        emitted, rejected = replayer.feed(event)
        assert rejected is None, rejected
        out.extend(emitted)
    emitted, rejected = replayer.feed(ev("opened", "10:45", "G", severity=3))
    assert rejected == "field 'severity': 3 is not defined in policy 'rollout-test'"
    out.extend(emitted)
    out.extend(replayer.advance(at("13:00")))
    assert breaches(out) == [
        ("B", utc("10:20"), utc("10:20"), "v2"),
        ("E", utc("12:00"), utc("12:00"), "v1"),
        ("E2", utc("12:00"), utc("12:00"), "v1"),
    ]
    reason = "severity 3 is not defined in policy 'rollout-test'"
    assert replayer.kept == {"v2": {"E": reason, "E2": reason}}
    assert replayer.counts.faults == 0


def test_a_late_reply_from_before_the_instant_is_folded_in_under_the_old_version() -> None:
    """F's reply dated 10:05 (before the 10:10 rollout) comes after its v2 breach at 10:20:
    the breach is retracted and the reply meets v1's 60m target."""
    events = [ev("opened", "10:00", "F", severity=2), ev("opened", "10:30", "H", severity=2)]
    out, replayer = run(book("open-tickets", "10:10"), events, "10:30")
    assert breaches(out) == [("F", utc("10:20"), utc("10:20"), "v2")]
    emitted, rejected = replayer.feed(ev("responded", "10:05", "F"))
    assert rejected is None
    assert [
        (r["type"], r["due_at"], r["at"], r["policy"]["version"]) for r in map(wire, emitted)
    ] == [
        ("sla.retracted", utc("10:20"), utc("10:05"), "v2"),
        ("sla.met", utc("11:00"), utc("10:05"), "v1"),
    ]


def test_versions_have_a_digest_of_their_content() -> None:
    one, same = parse_policy(V1, "a.toml"), parse_policy("# a comment\n" + V1, "b.toml")
    other = parse_policy(V1.replace('"2h"', '"3h"'), "c.toml")
    assert one.digest == same.digest
    assert one.digest.startswith("sha256:") and len(one.digest) == 7 + 64
    assert other.digest != one.digest and other.version == one.version == "v1"
    versions = PolicyBook(one)
    refused = versions.add(Rollout("v1", other.digest, at("10:00"), "new-tickets"), other)
    assert refused is not None and "already published with other content" in refused


def test_an_event_after_the_instant_moves_its_ticket_at_the_instant() -> None:
    """With 15 minutes of out-of-orderness, A's event of 10:35 is applied while the watermark
    is at 10:20: A moves at the 10:30 instant all the same (breach at 10:30, due 10:20), as
    B does when the watermark passes 10:30; the output is the time-ordered one."""
    events = [
        ev("opened", "10:00", "A", severity=2),
        ev("opened", "10:00", "B", severity=2),
        ev("assigned", "10:35", "A", group="tier-2"),
    ]
    replayer = Replayer(book("open-tickets", "10:30"), max_delay=15 * MINUTE)
    out: list[dict[str, Any]] = []
    for event in events:
        emitted, rejected = replayer.feed(event)
        assert rejected is None, rejected
        out.extend(emitted)
    assert breaches(out) == []  # nothing final yet: the watermark is at 10:20
    out.extend(replayer.finish(at("11:30")))
    assert breaches(out) == [
        ("A", utc("10:20"), utc("10:30"), "v2"),
        ("B", utc("10:20"), utc("10:30"), "v2"),
    ]


def test_a_reply_dated_between_the_ticket_and_the_instant_counts_under_the_old_version() -> None:
    """J moved to v2 at 10:10 (its first response now due 10:20); its reply dated 10:05 comes
    when the watermark is at 10:15: it is folded in before the switch, meeting v1's 60m."""
    events = [ev("opened", "10:00", "J", severity=2), ev("opened", "10:15", "K", severity=2)]
    replayer = Replayer(book("open-tickets", "10:10"))
    for event in events:
        assert replayer.feed(event)[1] is None
    emitted, rejected = replayer.feed(ev("responded", "10:05", "J"))
    assert rejected is None
    assert [
        (r["type"], r["due_at"], r["at"], r["policy"]["version"]) for r in map(wire, emitted)
    ] == [
        ("sla.met", utc("11:00"), utc("10:05"), "v1"),
    ]
