"""Builders for projection tests: records of both topics from a ticket history."""

from __future__ import annotations

import random
from typing import Any

import orjson

from events.instants import Micros
from projections.store import Record, Store
from streams.sla.policy import Policy
from streams.sla.replay import replay_lines

TICKETS = "ticket-events"
SLA = "sla-events"


def lines(history: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in history]


def sla_records(
    history: list[dict[str, Any]], policy: Policy, until: Micros | None = None
) -> list[bytes]:
    """The sla-events the stream processor would emit for the history (via the core's replay)."""
    return [orjson.dumps(e) for e in replay_lines(lines(history), policy, until)]


def as_records(topic: str, values: list[bytes]) -> list[Record]:
    return [Record(topic, 0, offset, value) for offset, value in enumerate(values)]


def apply_interleaved(
    store: Store, tickets: list[Record], slas: list[Record], seed: int | None, batch: int = 7
) -> None:
    """Apply both topics in batches, in a random interleaving (each topic keeps its order)."""
    rng = random.Random(seed)
    i = j = 0
    while i < len(tickets) or j < len(slas):
        take_ticket = j >= len(slas) or (i < len(tickets) and (seed is None or rng.random() < 0.5))
        if take_ticket:
            size = batch if seed is None else rng.randint(1, batch)
            store.apply_batch("ticket", tickets[i : i + size])
            i += size
        else:
            size = batch if seed is None else rng.randint(1, batch)
            store.apply_batch("sla", slas[j : j + size])
            j += size
