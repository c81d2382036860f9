"""Projections and event time (issue #9): corrections apply, compliance by decided severity."""

from __future__ import annotations

from collections import Counter

import orjson

from events.instants import DAY, parse_instant
from projections.db import Database
from projections.queries import compliance
from projections.store import Record, Store
from streams.sla.replay import replay_lines
from streams.sla.rules import Policy
from tests.core.test_event_time import ISSUE_POLICY, YX
from tests.projections.helpers import SLA, TICKETS, apply_interleaved, as_records

START = parse_instant("2026-02-01T00:00:00Z")


def test_a_retraction_removes_the_breach_and_the_met_holds(db: Database) -> None:
    slas = [orjson.dumps(r) for r in replay_lines(YX, ISSUE_POLICY, max_delay=0)]
    assert [orjson.loads(r)["type"] for r in slas] == ["sla.breached", "sla.retracted", "sla.met"]
    store = Store(db, ISSUE_POLICY)
    apply_interleaved(store, as_records(TICKETS, YX), as_records(SLA, slas), seed=3, batch=2)
    breach = orjson.loads(slas[0])["event_id"]
    assert db.query("SELECT type FROM sla_events WHERE ticket_id = 'Y'") == [("sla.met",)]
    assert db.query_one("SELECT fr_state FROM tickets WHERE ticket_id = 'Y'") == ("met",)
    # the original delivered again (a producer retry) stays retracted
    store.apply_batch("sla", [Record(SLA, 0, len(slas), slas[0])])
    assert db.query_one("SELECT COUNT(*) FROM sla_events WHERE event_id = ?", (breach,)) == (0,)
    report = compliance(db, ISSUE_POLICY, START, START + 30 * DAY, "severity")
    (group,) = report["groups"]
    assert (group["key"], group["first_response"]["met"]) == (2, 1)
    assert group["first_response"]["breached"] == 0


SEVERITY_CHANGE = [
    orjson.dumps(
        {
            "event_id": f"s{n}",
            "ticket_id": "S",
            "type": f"ticket.{kind}",
            "occurred_at": f"2026-11-30T{when}:00-05:00",
            **fields,
        }
    )
    for n, (kind, when, fields) in enumerate(
        [
            ("opened", "09:00", {"severity": 2}),
            ("responded", "09:30", {}),
            ("severity_changed", "10:00", {"severity": 1}),
        ]
    )
]


def test_compliance_by_severity_counts_each_metric_under_the_severity_it_was_decided(
    db: Database, policy: Policy
) -> None:
    """First response met under Sev2, resolution breached under Sev1 after the raise."""
    until = parse_instant("2026-12-03T00:00:00Z")
    records = replay_lines(SEVERITY_CHANGE, policy, until)
    decided = Counter(
        (r["severity"], r["metric"], r["type"])
        for r in records
        if r["type"] in ("sla.met", "sla.breached")
    )
    assert decided == {
        (2, "first_response", "sla.met"): 1,
        (1, "resolution", "sla.breached"): 1,
    }
    store = Store(db, policy)
    slas = [orjson.dumps(r) for r in records]
    apply_interleaved(store, as_records(TICKETS, SEVERITY_CHANGE), as_records(SLA, slas), None)
    report = compliance(db, policy, START, until, "severity")
    groups = {g["key"]: g for g in report["groups"]}
    assert groups[2]["first_response"]["met"] == 1 and groups[2]["tickets"] == 0
    assert groups[1]["resolution"]["breached"] == 1 and groups[1]["tickets"] == 1
    assert groups[1]["first_response"]["met"] == 0
    # the per-severity totals add up to the topic's
    for (severity, metric, kind), count in decided.items():
        key = "met" if kind == "sla.met" else "breached"
        assert groups[severity][metric][key] == count
