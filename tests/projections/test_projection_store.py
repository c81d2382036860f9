"""The read models on both databases: rows match the SLA core, order and repeats don't matter."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.instants import HOUR, format_instant, parse_instant
from events.samples import generate_history, with_routing
from projections.db import Database
from projections.queries import compliance
from projections.schema import MIGRATIONS, migrate, truncate
from projections.store import Record, Store, dump_tables
from streams.sla.policy import load_policy, parse_policy
from streams.sla.replay import Replayer
from streams.sla.rules import Policy
from tests.projections.helpers import (
    SLA,
    TICKETS,
    apply_interleaved,
    as_records,
    lines,
    sla_records,
)


def _records(history: list[dict[str, Any]], policy: Policy) -> tuple[list[Record], list[Record]]:
    return as_records(TICKETS, lines(history)), as_records(SLA, sla_records(history, policy))


def shifted(records: list[Record]) -> list[Record]:
    return [Record(r.topic, r.partition, r.offset + len(records), r.value) for r in records]


def test_migrations_are_idempotent(db: Database) -> None:
    assert migrate(db) == MIGRATIONS[-1][0]
    assert migrate(db) == MIGRATIONS[-1][0]
    assert db.query("SELECT version FROM schema_migrations ORDER BY version") == [
        (version,) for version, _, _ in MIGRATIONS
    ]


def test_rows_agree_with_the_sla_core(
    db: Database, policy: Policy, history: list[dict[str, Any]]
) -> None:
    store = Store(db, policy)
    tickets, slas = _records(history, policy)
    apply_interleaved(store, tickets, slas, seed=None)
    replayer = Replayer(policy)
    list(replayer.run(lines(history)))
    rows = {
        r[0]: r
        for r in db.query("SELECT ticket_id, status, severity, cycle, customer_id FROM tickets")
    }
    assert len(rows) == len({e["ticket_id"] for e in history})
    for ticket_id, state in replayer.tickets.items():
        assert rows[ticket_id][1:] == (state.status, state.severity, state.cycle, state.customer_id)
    # every SLA event stored once; escalations are the ticket.escalated ones
    emitted = [orjson.loads(r.value or b"") for r in slas]
    assert db.query_one("SELECT COUNT(*) FROM sla_events") == (len(emitted),)
    escalated = [e for e in emitted if e["type"] == "ticket.escalated"]
    assert db.query_one("SELECT COUNT(*) FROM escalations") == (len(escalated),)
    # a breached metric shows as breached on its ticket
    for e in emitted:
        if e["type"] == "sla.breached" and e["metric"] == "first_response":
            assert db.query_one(
                "SELECT fr_state FROM tickets WHERE ticket_id = ?", (e["ticket_id"],)
            ) == ("breached",)
    assert store.counters.invalid == 0
    assert db.query(
        "SELECT topic, partition_id, next_offset FROM projector_offsets ORDER BY topic"
    ) == [
        (SLA, 0, len(slas)),
        (TICKETS, 0, len(tickets)),
    ]


def test_interleaving_and_reprocessing_leave_tables_identical(
    make_db_target: Any, policy: Policy, history: list[dict[str, Any]]
) -> None:
    tickets, slas = _records(history, policy)
    dumps = []
    for seed in (None, 1, 2):
        target = make_db_target()
        db = Database(target)
        store = Store(db, policy)
        apply_interleaved(store, tickets, slas, seed=seed)
        dumps.append(dump_tables(db))
        if seed == 2:
            # redelivered at offsets already stored: skipped without being looked at
            apply_interleaved(store, tickets, slas, seed=3)
            assert store.counters.skipped == len(tickets) + len(slas)
            # the same events again at new offsets (an upstream retry): duplicates, no-ops
            apply_interleaved(store, shifted(tickets), shifted(slas), seed=4)
            assert dump_tables(db) == dumps[0]
            assert store.counters.duplicates == len(tickets) + len(slas)
        db.close()
    assert dumps[0] == dumps[1] == dumps[2]
    assert dumps[0]["tickets"]


def test_a_live_ticket_shows_due_times_and_states(db: Database, policy: Policy) -> None:
    opened = "2026-11-24T14:00:00Z"  # Tuesday 09:00 Toronto
    events: list[dict[str, Any]] = [
        {"event_id": "a1", "ticket_id": "T1", "type": "ticket.opened", "occurred_at": opened,
         "severity": 1, "customer_id": "C-1", "title": "secret text"},
        {"event_id": "a2", "ticket_id": "T1", "type": "ticket.assigned",
         "occurred_at": "2026-11-24T14:05:00Z", "assignee": "dana", "group": "l2"},
    ]  # fmt: skip
    store = Store(db, policy)
    store.apply_batch("ticket", as_records(TICKETS, lines(events)))
    row = db.query_one(
        "SELECT status, assignee, group_name, fr_state, fr_due_at, res_state, res_due_at, "
        "sla_state, next_due_at, state_json FROM tickets WHERE ticket_id = 'T1'"
    )
    assert row is not None
    status, assignee, group, fr_state, fr_due, res_state, res_due, worst, next_due, state = row
    assert (status, assignee, group, fr_state, res_state, worst) == (
        "open",
        "dana",
        "l2",
        "on_track",
        "on_track",
        "on_track",
    )
    assert fr_due == parse_instant(opened) + HOUR
    assert res_due == parse_instant("2026-11-25T14:00:00Z")  # +10h30 business: Wed 09:00
    assert next_due == fr_due
    assert "secret" not in state
    # the stream processor says the first response breached: the ticket row follows
    breach = sla_records(events, policy, until=parse_instant(opened) + 2 * HOUR)
    store.apply_batch("sla", as_records(SLA, breach))
    row = db.query_one("SELECT fr_state, sla_state, next_due_at, escalation_level FROM tickets")
    assert row == ("breached", "breached", res_due, 1)


def test_malformed_records_are_counted_and_never_fatal(
    db: Database, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(db, policy)
    bad_tickets = [
        b"{not json",
        b"[]",
        None,
        b'{"type": "ticket.exploded", "event_id": "x", "ticket_id": "t"}',
        orjson.dumps({"event_id": "e9", "ticket_id": "T9", "type": "ticket.responded",
                      "occurred_at": "2026-11-24T14:00:00Z", "comment": "free text secret"}),
        orjson.dumps({"event_id": "e1", "ticket_id": "T1", "type": "ticket.opened",
                      "occurred_at": "2026-11-24T14:00:00Z", "severity": 9, "title": "secret"}),
    ]  # fmt: skip
    bad_slas = [b"", b'{"type": "sla.warning"}', orjson.dumps({"event_id": "s", "note": "secret"})]
    with caplog.at_level(logging.INFO, logger="escalator.projections"):
        store.apply_batch("ticket", as_records(TICKETS, bad_tickets))  # type: ignore[arg-type]
        store.apply_batch("sla", as_records(SLA, bad_slas))
    assert store.counters.invalid == 8
    assert store.counters.rejected == 1  # a response for a ticket never opened
    assert "secret" not in caplog.text
    assert db.query_one("SELECT COUNT(*) FROM tickets") == (0,)
    assert store.offsets() == {(TICKETS, 0): 6, (SLA, 0): 3}


def test_a_failed_batch_stores_neither_rows_nor_offset(
    db: Database, policy: Policy, history: list[dict[str, Any]]
) -> None:
    store = Store(db, policy)
    good = as_records(TICKETS, lines(history[:5]))
    store.apply_batch("ticket", good)
    before = dump_tables(db, ("tickets", "projector_offsets"))

    class Boom(Exception):
        pass

    def explode() -> Any:
        yield Record(TICKETS, 0, 5, orjson.dumps(history[5]))
        raise Boom

    with pytest.raises(Boom):
        store.apply_batch("ticket", explode())
    assert dump_tables(db, ("tickets", "projector_offsets")) == before
    truncate(db)
    assert store.offsets() == {}


def test_remaining_is_computed_on_the_metric_clock(policy: Policy) -> None:
    from projections.model import metric_clock, remaining

    business = metric_clock(policy, "business", "default")
    elapsed = metric_clock(policy, "elapsed", None)
    due = parse_instant("2026-11-27T23:30:00Z")  # Friday 18:30 Toronto
    monday = parse_instant("2026-11-30T14:00:00Z")  # Monday 09:00 Toronto
    friday = parse_instant("2026-11-27T22:30:00Z")  # Friday 17:30
    assert remaining("on_track", due, None, business, friday) == HOUR
    assert remaining("breached", due, None, business, monday) == -HOUR
    assert remaining("on_track", due, None, elapsed, friday) == HOUR
    assert remaining("paused", None, 5 * HOUR, business, monday) == 5 * HOUR
    assert remaining("met", None, None, business, monday) is None
    assert format_instant(due) == "2026-11-27T23:30:00Z"


def test_deadlines_of_a_history_cut_midway_match_the_core(
    db: Database, policy: Policy, history: list[dict[str, Any]]
) -> None:
    """Cut the history in the middle (many tickets open, some paused): every stored deadline
    is the core's `sla_status` deadline, and metric states follow the SLA events."""
    from streams.sla.status import sla_status

    cut = history[: len(history) // 2]
    end = parse_instant(cut[-1]["occurred_at"].replace("Z", "+00:00"))
    store = Store(db, policy)
    tickets, slas = as_records(TICKETS, lines(cut)), as_records(SLA, sla_records(cut, policy, end))
    apply_interleaved(store, tickets, slas, seed=5)
    replayer = Replayer(policy)
    list(replayer.run(lines(cut), until=end))
    rows = {
        r[0]: r[1:]
        for r in db.query(
            "SELECT ticket_id, fr_state, fr_due_at, res_state, res_due_at FROM tickets"
        )
    }
    states = set()
    for ticket_id, state in replayer.tickets.items():
        # the replayer fired every timer up to `end`, like the stream processor would have
        expected = {s.metric: s for s in sla_status(state, policy, end)}
        fr_state, fr_due, res_state, res_due = rows[ticket_id]
        if "first_response" in expected:
            assert (fr_state, fr_due) == (
                expected["first_response"].state,
                expected["first_response"].due_at,
            ), ticket_id
        if "resolution" in expected:
            assert (res_state, res_due) == (
                expected["resolution"].state,
                expected["resolution"].due_at,
            ), ticket_id
        states.update({fr_state, res_state})
    assert {"on_track", "breached", "met"} <= states


def test_tickets_keep_their_policy_and_compliance_groups_by_it(db: Database) -> None:
    """The vendor example (three policies): each ticket's row names the policy the core chose
    for it, and compliance grouped by policy counts each policy's tickets and outcomes."""
    vendor = load_policy(Path(__file__).resolve().parents[2] / "deploy/examples/vendor-policy.toml")
    routed = with_routing(generate_history(120, seed=3), seed=3)
    store = Store(db, vendor)
    tickets, slas = _records(routed, vendor)
    apply_interleaved(store, tickets, slas, seed=None)
    replayer = Replayer(vendor)
    emitted = list(replayer.run(lines(routed)))
    rows = dict(db.query("SELECT ticket_id, policy_name FROM tickets"))
    assert rows == {t: s.policy_name for t, s in replayer.tickets.items()}
    assert set(rows.values()) == {"premium", "emea", "standard"}
    start, end = parse_instant("2020-01-01T00:00:00Z"), parse_instant("2030-01-01T00:00:00Z")
    groups = {g["key"]: g for g in compliance(db, vendor, start, end, "policy")["groups"]}
    assert {k: g["tickets"] for k, g in groups.items()} == dict(Counter(rows.values()))
    outcomes = Counter(  # a ticket that moved counts under the policy it ended with
        (rows[e["ticket_id"]], e["metric"], e["type"])
        for e in emitted
        if e["type"] in ("sla.met", "sla.breached") and e["metric"] == "first_response"
    )
    for name, group in groups.items():
        assert group["first_response"]["met"] == outcomes[(name, "first_response", "sla.met")]
        assert (
            group["first_response"]["breached"]
            == outcomes[(name, "first_response", "sla.breached")]
        )


def test_compliance_on_a_calendar_in_a_fixed_offset_zone(db: Database) -> None:
    """A policy whose calendar is in `UTC-5` loads and replays; its compliance report must too
    (its days are UTC-5 days)."""
    fixed = parse_policy(
        'name = "fixed"\n[calendars.c]\ntimezone = "UTC-5"\nhours = "24x7"\n'
        '[severity.1]\nfirst_response = { target = "1h" }\n',
        "fixed.toml",
    )
    start, end = parse_instant("2026-11-30T05:00:00Z"), parse_instant("2026-12-01T05:00:00Z")
    report = compliance(db, fixed, start, end, "severity")
    assert report["groups"] == []
