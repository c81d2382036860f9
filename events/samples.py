"""Realistic, reproducible ticket histories: for the shipped sample, demos, tests and benchmarks.

Each ticket gets a plausible lifecycle (assignment, replies, waits on the customer, severity
changes, resolution, reopening, closing) with delays drawn so that some SLAs are met, some
warned, some breached. Opened events carry a free-text `title` on purpose: the engine must
drop it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from events.instants import HOUR, MINUTE, SECOND, Micros, from_datetime, to_datetime

_SEVERITY_WEIGHTS = (1, 3, 4, 2)
_GROUPS = ("l1-support", "l2-platform", "billing")


def _stamp(instant: Micros) -> str:
    return to_datetime(instant).isoformat().replace("+00:00", "Z")


SAMPLE_START = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
"""When the first sample ticket opens unless told otherwise (`escalator sample --start`)."""


def generate_history(
    tickets: int,
    seed: int = 7,
    start: datetime = SAMPLE_START,
    mean_gap: Micros = 2 * MINUTE,
) -> list[dict[str, Any]]:
    """`tickets` ticket lifecycles, as inbound event objects sorted by `occurred_at`."""
    rng = random.Random(seed)
    events: list[tuple[Micros, int, dict[str, Any]]] = []
    clock = from_datetime(start)
    sequence = 0
    for number in range(tickets):
        clock += int(rng.expovariate(1 / mean_gap))
        ticket = f"T-{seed}-{number:07d}"
        for at, body in _lifecycle(rng, ticket, clock):
            sequence += 1
            events.append((at, sequence, body))
    events.sort(key=lambda item: (item[0], item[1]))
    return [body for _, _, body in events]


def _lifecycle(
    rng: random.Random, ticket: str, opened: Micros
) -> Iterator[tuple[Micros, dict[str, Any]]]:
    count = 0

    def event(kind: str, at: Micros, **fields: Any) -> tuple[Micros, dict[str, Any]]:
        nonlocal count
        count += 1
        body = {
            "event_id": f"{ticket}-e{count}",
            "ticket_id": ticket,
            "type": kind,
            "occurred_at": _stamp(at),
            "source": "sample",
            **fields,
        }
        return at, body

    severity = rng.choices((1, 2, 3, 4), weights=_SEVERITY_WEIGHTS)[0]
    yield event(
        "ticket.opened",
        opened,
        severity=severity,
        customer_id=f"C-{rng.randrange(40):03d}",
        title="Printer on fire; call Dana at 555-0100",
    )
    at = opened + int(rng.expovariate(1 / (5 * MINUTE)))
    yield event(
        "ticket.assigned", at, assignee=f"agent-{rng.randrange(12)}", group=rng.choice(_GROUPS)
    )
    at += int(rng.expovariate(1 / (severity * 90 * MINUTE)))
    yield event("ticket.responded", at)
    if rng.random() < 0.15:
        at += int(rng.uniform(1, 30) * MINUTE)
        new = min(4, max(1, severity + rng.choice((-1, 1))))
        if new != severity:
            severity = new
            yield event("ticket.severity_changed", at, severity=severity)
    if rng.random() < 0.3:
        at += int(rng.uniform(10, 120) * MINUTE)
        yield event("ticket.paused", at)
        at += int(rng.expovariate(1 / (6 * HOUR)))
        yield event("ticket.resumed", at)
    at += int(rng.expovariate(1 / (severity * 6 * HOUR)))
    yield event("ticket.resolved", at)
    if rng.random() < 0.1:
        at += int(rng.uniform(1, 48) * HOUR)
        yield event("ticket.reopened", at)
        at += int(rng.expovariate(1 / (4 * HOUR)))
        yield event("ticket.resolved", at)
    if rng.random() < 0.9:
        at += int(rng.uniform(1, 72) * HOUR) + SECOND
        yield event("ticket.closed", at)


def with_routing(history: Iterable[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The history with routing attributes for a file of several policies (the vendor example,
    `deploy/examples/vendor-policy.toml`): a fifth of the tickets opened `tier = "gold"` on the
    phone, a quarter in group `emea` tagged `eu` (and assigned within it), and one reply in ten
    followed by a `ticket.updated` to `tier = "gold"` (the ticket may move policy)."""
    rng = random.Random(seed)
    emea: set[str] = set()
    out: list[dict[str, Any]] = []
    for event in history:
        if event["type"] == "ticket.opened":
            roll = rng.random()
            if roll < 0.2:
                event = {**event, "attributes": {"tier": "gold"}, "channel": "phone"}
            elif roll < 0.45:
                event = {**event, "group": "emea", "tags": ["eu"]}
                emea.add(event["ticket_id"])
        elif event["type"] == "ticket.assigned" and event["ticket_id"] in emea:
            event = {**event, "group": "emea"}
        out.append(event)
        if event["type"] == "ticket.responded" and rng.random() < 0.1:
            out.append(
                {
                    "event_id": event["event_id"] + "-u",
                    "ticket_id": event["ticket_id"],
                    "type": "ticket.updated",
                    "occurred_at": event["occurred_at"],
                    "attributes": {"tier": "gold"},
                }
            )
    return out


def with_conversation(history: Iterable[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The history with customers writing back: after a third of the agents' replies the
    customer answers (`ticket.customer_replied`, 10 minutes to 4 hours later), sometimes twice,
    and half of those get an agent's answer within hours (`ticket.responded`), so
    next_response rounds are met, breached, left open or cut by a resolve. Sorted by time."""
    rng = random.Random(seed)
    events = list(history)
    closed = {
        event["ticket_id"]: _instant(event) for event in events if event["type"] == "ticket.closed"
    }
    timed: list[tuple[Micros, dict[str, Any]]] = []
    for event in events:
        at = _instant(event)
        timed.append((at, event))
        if event["type"] != "ticket.responded" or rng.random() >= 0.33:
            continue
        end = closed.get(event["ticket_id"])
        follows = [(f"-c{n}", "ticket.customer_replied") for n in range(rng.choice((1, 1, 2)))]
        if rng.random() < 0.5:
            follows.append(("-a", "ticket.responded"))
        for suffix, kind in follows:
            at += int(rng.uniform(10, 240) * MINUTE)
            if end is None or at < end:  # nothing after the close (it would be rejected)
                timed.append((at, _follow(event, suffix, kind, at)))
    order = sorted(range(len(timed)), key=lambda index: (timed[index][0], index))
    return [timed[index][1] for index in order]


TIERS = ("l1-support", "l2-platform", "l3-engineering")
"""The support tiers' groups of `deploy/examples/vendor-olas.toml`."""


def with_tiers(history: Iterable[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The history routed through support tiers (the OLA example,
    `deploy/examples/vendor-olas.toml`): two thirds of the tickets are first assigned to L1;
    of those, half move to L2 (30 minutes to 6 hours later), a third of these on to L3 and
    some back to L1, each move before the ticket's first resolve (with its assignee). Sorted
    by time."""
    rng = random.Random(seed)
    events = list(history)
    resolved: dict[str, Micros] = {}
    for event in events:
        if event["type"] == "ticket.resolved":
            resolved.setdefault(event["ticket_id"], _instant(event))
    timed: list[tuple[Micros, dict[str, Any]]] = []
    for event in events:
        at = _instant(event)
        ticket = event["ticket_id"]
        if event["type"] != "ticket.assigned" or rng.random() >= 2 / 3:
            timed.append((at, event))
            continue
        timed.append((at, {**event, "group": TIERS[0]}))
        end = resolved.get(ticket)
        path = [TIERS[1]] if rng.random() < 0.5 else []
        if path and rng.random() < 0.33:
            path.append(TIERS[2])
        if path and rng.random() < 0.2:
            path.append(TIERS[0])
        for number, group in enumerate(path):
            at += int(rng.uniform(30, 360) * MINUTE)
            if end is not None and at >= end:
                break
            move = _follow(event, f"-t{number}", "ticket.assigned", at)
            move["group"] = group
            move["assignee"] = f"agent-{rng.randrange(12)}"
            timed.append((at, move))
    order = sorted(range(len(timed)), key=lambda index: (timed[index][0], index))
    return [timed[index][1] for index in order]


def _instant(event: dict[str, Any]) -> Micros:
    return from_datetime(datetime.fromisoformat(event["occurred_at"]))


def _follow(event: dict[str, Any], suffix: str, kind: str, at: Micros) -> dict[str, Any]:
    return {
        "event_id": event["event_id"] + suffix,
        "ticket_id": event["ticket_id"],
        "type": kind,
        "occurred_at": _stamp(at),
        "source": "sample",
    }
