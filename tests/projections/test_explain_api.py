"""Explain on its surfaces (issue 24 §4): the projections' stored state, the HTTP API and
`escalator explain` (from the database and from a history) give the fold's explanation; and
compliance reports breached-exempt. On SQLite and PostgreSQL. Hand-computed values.

T1: opened in emea (Warsaw) Monday 2026-12-07 14:00Z, moved to amer (Toronto) at 15:00Z,
resolution stopped 16:00-17:00Z (third_party, agent-7), answered 17:30Z.
T/2: opened in emea 14:00Z and never answered: first response breaches Tuesday 10:00Z; a
manager gives `outage` (exempt) at 11:00Z. T3: as T/2, reason `agent_error` (not exempt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from deploy.cli import main
from events.instants import parse_rfc3339
from projections.api import make_app
from projections.db import Database
from projections.queries import compliance, explain_ticket
from projections.store import Store
from streams.sla.explain import explain
from streams.sla.replay import Replayer
from tests.clocks.helpers import body
from tests.clocks.policies import ALL, policy
from tests.projections.helpers import as_records, lines, serving, sla_records

POLICY = policy(ALL)
NOW = "2026-12-08T12:00:00Z"


def history() -> list[dict[str, Any]]:
    events = [
        body("opened", "2026-12-07T14:00:00Z", severity=2, group="emea"),
        body("assigned", "2026-12-07T15:00:00Z", group="amer"),
        body("sla_stopped", "2026-12-07T16:00:00Z", reason="third_party", actor="agent-7"),
        body("sla_started", "2026-12-07T17:00:00Z", actor="agent-7"),
        body("responded", "2026-12-07T17:30:00Z"),
    ]
    for ticket, code in (("T/2", "outage"), ("T3", "agent_error")):
        events += [
            body("opened", "2026-12-07T14:00:00Z", ticket=ticket, severity=2, group="emea"),
            body("breach_reason", "2026-12-08T11:00:00Z", ticket=ticket,
                 metric="first_response", reason=code, actor="m1"),
        ]  # fmt: skip
    return sorted(events, key=lambda e: e["occurred_at"])


def project(db: Database) -> None:
    events = history()
    store = Store(db, POLICY)
    store.apply_batch("ticket", as_records("tickets", lines(events)))
    store.apply_batch("sla", as_records("sla", sla_records(events, POLICY, parse_rfc3339(NOW))))


def replayed(ticket: str) -> Any:
    replayer = Replayer(POLICY)
    for _ in replayer.run(lines(history()), parse_rfc3339(NOW)):
        pass
    return replayer.tickets[ticket]


def test_the_stored_state_explains_as_the_fold(db: Database) -> None:
    project(db)
    found = explain_ticket(db, POLICY, "T1", parse_rfc3339(NOW))
    assert found == explain(replayed("T1"), POLICY, parse_rfc3339(NOW))
    assert found is not None
    resolution = found["metrics"][1]
    assert [
        (i["start"][11:16], i["end"][11:16], i["cause"], i.get("reason"), i.get("calendar"))
        for i in resolution["intervals"][:4]
    ] == [
        ("14:00", "15:00", "counted", None, "warsaw"),
        ("15:00", "16:00", "counted", None, "toronto"),
        ("16:00", "17:00", "stopped", "third_party", None),
        ("17:00", "22:00", "counted", None, "toronto"),
    ]
    # 1h + 1h + 5h on Monday; Tuesday up to 12:00Z is 07:00 in Toronto: closed.
    assert resolution["counted_seconds"] == 7 * 3600
    # 2bd = 16h: 9h left from Tuesday 09:00 Toronto (14:00Z): Tuesday 17:00 (22:00Z) is 8h,
    # then 1h Wednesday: 10:00 Toronto = 15:00Z.
    assert resolution["due_at"] == "2026-12-09T15:00:00Z"
    assert explain_ticket(db, POLICY, "nope", parse_rfc3339(NOW)) is None


async def test_the_api_explains_a_ticket(db_target: str) -> None:
    db = Database(db_target)
    project(db)
    expected = explain_ticket(db, POLICY, "T/2", parse_rfc3339(NOW))
    db.close()
    app = make_app(db_target, POLICY, clock=lambda: parse_rfc3339(NOW))
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        answer = await client.get("/api/tickets/T%2F2/explain")
        missing = await client.get("/api/tickets/nope/explain")
        plain = await client.get("/api/tickets/T%2F2")
    assert answer.status_code == 200
    assert answer.json() == orjson.loads(orjson.dumps(expected))
    assert answer.json()["breach_reasons"] == [
        {"metric": "first_response", "round": 0, "reason": "outage", "actor": "m1",
         "at": "2026-12-08T11:00:00Z"}
    ]  # fmt: skip
    assert missing.status_code == 404
    assert plain.status_code == 200 and plain.json()["ticket_id"] == "T/2"


def test_compliance_reports_breached_exempt(db: Database) -> None:
    project(db)
    report = compliance(
        db, POLICY, parse_rfc3339("2026-12-07T00:00:00Z"), parse_rfc3339(NOW), "all"
    )
    first = report["groups"][0]["first_response"]
    # T1 met; T/2 breached with an exempt reason; T3 breached (agent_error is not exempt).
    assert (first["met"], first["breached"], first["breached_exempt"], first["compliance"]) == (
        1, 1, 1, 0.5,
    )  # fmt: skip


def test_escalator_explain_from_a_history_and_from_the_database(
    tmp_path: Path, db_target: str, capsys: Any
) -> None:
    db = Database(db_target)
    project(db)
    db.close()
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(ALL)
    history_file = tmp_path / "history.jsonl"
    history_file.write_bytes(b"\n".join(lines(history())) + b"\n")
    common = ["--policy", str(policy_file), "--now", NOW]
    assert main(["explain", "T1", "--input", str(history_file), *common]) == 0
    from_history = capsys.readouterr().out
    assert main(["explain", "T1", "--db", db_target, *common]) == 0
    from_db = capsys.readouterr().out
    assert from_history == from_db
    assert "first_response: met, business clock on warsaw -> toronto" in from_db
    assert "  target: 4h from 2026-12-07T14:00:00Z; due 2026-12-07T18:00:00Z" in from_db
    assert "stopped (third_party by agent-7)" in from_db
    assert main(["explain", "T1", "--db", db_target, "--json", *common]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["metrics"][0]["counted_seconds"] == 3.5 * 3600
    assert main(["explain", "nope", "--db", db_target, *common]) == 1
    assert "no ticket 'nope'" in capsys.readouterr().err
