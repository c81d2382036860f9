"""Issue #10 section 2: the projector skips and counts what it cannot fold, and never stops."""

from __future__ import annotations

from typing import Any

import pytest

from projections import store as store_module
from projections.db import Database
from projections.store import Record, Store
from streams.sla.rules import Policy
from tests.core.test_hostile_input import VALID_SEV1, YEAR_9999, opened

TOPIC = "ticket-events"


def records(*values: bytes) -> list[Record]:
    return [Record(TOPIC, 0, offset, value) for offset, value in enumerate(values)]


def test_the_9999_record_is_counted_invalid_and_the_rest_applied(
    db: Database, policy: Policy
) -> None:
    store = Store(db, policy)
    assert store.apply_batch("ticket", records(YEAR_9999, VALID_SEV1)) == 2
    assert store.counters.invalid == 1
    assert store.counters.applied == 1
    assert db.query("SELECT ticket_id FROM tickets") == [("V",)]
    assert store.offsets() == {(TOPIC, 0): 2}


def test_a_fault_in_the_fold_skips_that_record_only(
    db: Database, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the core (injected) on one record: the batch is applied again without it.

    The faulty record touches a ticket an earlier record of the same batch changed, so a
    half-folded state would show in the row if it were kept.
    """
    real = store_module.fold_ticket

    def fold(state: Any, extras: Any, event: Any, policy: Any) -> Any:
        if event.event_id == "boom":
            if state is not None:
                state.severity = 4  # half-done work that must not survive
            raise ValueError("injected")
        return real(state, extras, event, policy)

    monkeypatch.setattr(store_module, "fold_ticket", fold)
    store = Store(db, policy)
    batch = records(
        opened(event_id="a", ticket_id="T1", severity=2),
        opened(event_id="boom", ticket_id="T1", type="ticket.responded"),
        opened(event_id="b", ticket_id="T2", severity=3),
    )
    assert store.apply_batch("ticket", batch) == 3
    assert store.counters.invalid == 1
    assert store.counters.applied == 2
    assert db.query("SELECT ticket_id, severity FROM tickets ORDER BY ticket_id") == [
        ("T1", 2),
        ("T2", 3),
    ]
    assert store.offsets() == {(TOPIC, 0): 3}
