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
