"""Issue #19 item 2: a NUL byte stopped the PostgreSQL projector for ever, and gave 500s.

The contract now refuses control characters in every string (`events.text`), so the record is
counted invalid on both backends alike; what reaches the database anyway (a decoder that
predates the rule) is skipped with a logged reason, never a stopped projector; API filters
with a control character are 400s naming the parameter, on both backends.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pytest

from events.instants import parse_rfc3339
from events.records import from_payload
from projections import store as store_module
from projections.api import make_app
from projections.db import Database
from projections.store import Record, Store
from streams.sla.rules import Policy
from tests.projections.conftest import _drop_postgres, _fresh_postgres
from tests.projections.helpers import api_client

TOPIC = "ticket-events"
NUL_TICKET = (
    b'{"event_id":"n1","ticket_id":"N\\u0000X","type":"ticket.opened",'
    b'"occurred_at":"2026-12-07T09:00:00Z","severity":2}'
)


def opened(event_id: str, ticket_id: str) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "ticket_id": ticket_id, "type": "ticket.opened",
        "occurred_at": "2026-12-07T09:00:00Z", "severity": 2,
    })  # fmt: skip


def records(*values: bytes) -> list[Record]:
    return [Record(TOPIC, 0, offset, value) for offset, value in enumerate(values)]


def test_the_nul_record_is_counted_invalid_on_every_backend(
    db: Database, policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(db, policy)
    assert store.apply_batch("ticket", records(opened("a", "A"), NUL_TICKET, opened("b", "B"))) == 3
    assert (store.counters.invalid, store.counters.applied) == (1, 2)
    assert db.query("SELECT ticket_id FROM tickets ORDER BY ticket_id") == [("A",), ("B",)]
    assert store.offsets() == {(TOPIC, 0): 3}
    assert "field 'ticket_id': must not contain control characters" in caplog.text
    # and again after a restart: the stored offset is past it
    again = Store(db, policy)
    assert again.apply_batch("ticket", records(opened("a", "A"), NUL_TICKET)) == 0


def _older_decoder(obj: Any) -> Any:
    """A decoder without the contract's string rules (a producer and projector that predate
    them): the record reaches the database as it is."""
    return from_payload(obj, parse_rfc3339(obj["occurred_at"]))


def test_an_unstorable_record_is_skipped_with_a_reason_and_the_batch_kept(
    postgres_dsn: str,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL refuses NUL in text: the record is found alone, counted invalid and logged;
    the records around it in the same batch are applied and the offset moves past it."""
    monkeypatch.setattr(store_module, "ticket_event_from_obj", _older_decoder)
    target, name = _fresh_postgres(postgres_dsn)
    try:
        from projections.schema import migrate

        db = Database(target)
        migrate(db)
        store = Store(db, policy)
        batch = records(opened("a", "A"), NUL_TICKET, opened("b", "B"))
        assert store.apply_batch("ticket", batch) == 3
        assert (store.counters.invalid, store.counters.applied) == (1, 2)
        assert db.query("SELECT ticket_id FROM tickets ORDER BY ticket_id") == [("A",), ("B",)]
        assert store.offsets() == {(TOPIC, 0): 3}
        assert "unstorable ticket record ticket-events/0@1: DataError; skipped" in caplog.text
        db.close()
    finally:
        _drop_postgres(postgres_dsn, name)


FILTERS = [
    ("/api/tickets?customer=%00", "customer"),
    ("/api/tickets?group=N%00X", "group"),
    ("/api/tickets?assignee=%00", "assignee"),
    ("/api/tickets?policy=%00", "policy"),
    ("/api/compliance?policy=%00", "policy"),
    ("/api/dashboard?group=%00", "group"),
    ("/api/dashboard?customer=%1B%5B2J", "customer"),
    ("/api/sla-events?ticket_id=%00", "ticket_id"),
    ("/api/tickets/%00", "ticket_id"),
    ("/api/tickets/N%00X", "ticket_id"),
    ("/api/tickets/H%0D%0AX-Injected:%201", "ticket_id"),  # was a 404: `path` stopped at LF
    ("/api/tickets/%0A", "ticket_id"),
    ("/api/tickets/" + "x" * 257, "ticket_id"),
    ("/api/tickets?customer=" + "x" * 257, "customer"),
]


async def test_control_characters_in_filters_are_400_naming_the_parameter(
    db_target: str, policy: Policy
) -> None:
    db = Database(db_target)
    Store(db, policy).apply_batch("ticket", records(opened("a", "N X")))
    db.close()
    async with api_client(make_app(db_target, policy)) as client:
        for path, parameter in FILTERS:
            response = await client.get(path)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["parameter"] == parameter, path
        found = await client.get("/api/tickets/" + quote("N X", safe=""))
        assert found.status_code == 200  # a space is printable


def test_query_prints_control_characters_from_ids_escaped(
    db_target: str,
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """#19 item 13: an id stored before the rule (ESC sequences that clear a terminal, CR)
    is printed escaped by `escalator query`."""
    from deploy.cli import main as escalator

    monkeypatch.setattr(store_module, "ticket_event_from_obj", _older_decoder)
    db = Database(db_target)
    hostile = "T\u001b[2J\u001b]0;pwned\u0007\r"
    Store(db, policy).apply_batch("ticket", records(opened("a", hostile)))
    db.close()
    now = ["--db", db_target, "--now", "2026-12-07T10:00:00Z"]
    assert escalator(["query", "tickets", *now]) == 0
    out = capsys.readouterr().out
    assert "T\\x1b[2J\\x1b]0;pwned\\x07\\x0d" in out
    assert not any(c in out for c in "\u001b\u0007\r")


HOSTILE_IDS = ["T/with?query=1#frag space", "//", "a/b/", "/lead", "50% off", "x" * 256]


async def test_ids_with_reserved_characters_are_fetchable(db_target: str, policy: Policy) -> None:
    """#19 item 13: `/api/tickets/{id}` with `/` (was 404), `//` (was a 307), `?`, `#`, `%`
    and spaces in the id, percent-encoded, answers that ticket."""
    db = Database(db_target)
    batch = [opened(f"e{n}", ticket_id) for n, ticket_id in enumerate(HOSTILE_IDS)]
    Store(db, policy).apply_batch("ticket", records(*batch))
    db.close()
    async with api_client(make_app(db_target, policy)) as client:
        for ticket_id in HOSTILE_IDS:
            response = await client.get("/api/tickets/" + quote(ticket_id, safe=""))
            assert response.status_code == 200, (ticket_id, response.status_code)
            assert response.json()["ticket_id"] == ticket_id
        missing = await client.get("/api/tickets/" + quote("T/none", safe=""))
        assert missing.status_code == 404
