"""The projections keep the rollout history (issue #22): `policy.activated` audit records."""

from __future__ import annotations

import orjson

from events.rollouts import activation_id
from projections.db import Database
from projections.queries import policy_history
from projections.store import Store
from streams.sla.rules import Policy
from tests.projections.helpers import SLA, as_records

DIGEST = "sha256:" + "ab" * 32


def _activated(partition: int, moved: int, kept: int) -> bytes:
    return orjson.dumps(
        {
            "type": "policy.activated",
            "event_id": activation_id("v2", DIGEST, partition),
            "name": "rollout-test",
            "version": "v2",
            "digest": DIGEST,
            "mode": "open-tickets",
            "at": "2026-12-07T10:10:00Z",
            "partition": partition,
            "tickets_moved": moved,
            "tickets_kept": kept,
        }
    )


def test_activations_are_kept_once_and_summed_per_version(db: Database, policy: Policy) -> None:
    store = Store(db, policy)
    values = [_activated(0, 3, 1), _activated(1, 2, 0), _activated(0, 3, 1)]  # a redelivery
    store.apply_batch("sla", as_records(SLA, values))
    assert store.counters.invalid == 0
    assert policy_history(db) == {
        "activations": [
            {
                "version": "v2",
                "name": "rollout-test",
                "digest": DIGEST,
                "mode": "open-tickets",
                "at": "2026-12-07T10:10:00Z",
                "partitions": 2,
                "tickets_moved": 5,
                "tickets_kept": 1,
            }
        ]
    }


def test_a_ticket_timeline_names_the_version_that_timed_each_event(
    db: Database, policy: Policy
) -> None:
    from events.instants import parse_instant
    from projections.queries import get_ticket
    from streams.sla.policy import parse_policy
    from streams.sla.replay import Replayer
    from streams.sla.versions import PolicyBook, Rollout
    from tests.core.test_policy_rollout import V1, V2
    from tests.projections.helpers import TICKETS

    versions = PolicyBook(parse_policy(V1, "v1.toml"))
    v2 = parse_policy(V2.replace('"20m"', '"20m", warn_at = [0.5]'), "v2.toml")
    instant = parse_instant("2026-12-07T10:10:00Z")
    assert versions.add(Rollout("v2", v2.digest, instant, "open-tickets"), v2) is None
    opened = orjson.dumps(
        {"event_id": "o", "ticket_id": "T", "type": "ticket.opened",
         "occurred_at": "2026-12-07T10:00:00Z", "severity": 2}
    )  # fmt: skip
    # v1 has no warning; moved at 10:10, v2 warns at 10:10 (half of 20m, due then) and breaches
    # at 10:20: both name v2
    out = list(Replayer(versions.newest).run([opened], parse_instant("2026-12-07T11:00:00Z")))
    store = Store(db, parse_policy(V1, "v1.toml"))
    store.apply_batch("ticket", as_records(TICKETS, [opened]))
    store.apply_batch("sla", as_records(SLA, [orjson.dumps(e) for e in out]))
    ticket = get_ticket(db, store.policy, "T", parse_instant("2026-12-07T11:00:00Z"))
    assert ticket is not None
    assert [
        (e["type"], e["at"], e["due_at"], e["policy_version"])
        for e in ticket["timeline"]
        if e["type"].startswith("sla.")
    ] == [
        ("sla.warning", "2026-12-07T10:10:00Z", "2026-12-07T10:10:00Z", "v2"),
        ("sla.breached", "2026-12-07T10:20:00Z", "2026-12-07T10:20:00Z", "v2"),
    ]
