"""Issue #11 §3: SLA events carry what routing needs, and CloudEvents headers on Kafka."""

from __future__ import annotations

from typing import Any

from events.cloudevents import (
    SLA_EVENT_SCHEMA_ID,
    read_headers,
    sla_event_headers,
)
from events.schema import schemas
from streams.sla import state_codec
from streams.sla.policy import load_policy
from streams.sla.state import TicketState
from tests.core.helpers import event, replay

POLICY = load_policy()


def fold(*events: Any, until: str) -> list[dict[str, Any]]:
    return replay(events, POLICY, until)


def test_events_carry_customer_group_assignee_and_policy_as_known_when_fired() -> None:
    out = fold(
        event("opened", "2026-11-30 09:00", "T-7", severity=1, customer_id="acme"),
        event("assigned", "2026-11-30 09:05", "T-7", group="tier1", assignee="ana"),
        # escalation level 1 (1h elapsed) fires at 10:00 with tier1/ana ...
        event("assigned", "2026-11-30 10:30", "T-7", group="tier2", assignee="bo"),
        # ... the first-response breach at 10:00 too; the resolution warning later, with tier2/bo
        until="2026-11-30 15:00",
    )
    fired = {(r["type"], r["metric"]): r for r in out}
    escalated = fired["ticket.escalated", "escalation"]
    assert (escalated["customer_id"], escalated["group"], escalated["assignee"]) == (
        "acme", "tier1", "ana",
    )  # fmt: skip
    warning = fired["sla.warning", "resolution"]
    assert (warning["customer_id"], warning["group"], warning["assignee"]) == (
        "acme",
        "tier2",
        "bo",
    )
    assert warning["policy"]["name"] == POLICY.name


def test_unassigned_ticket_has_null_group_and_assignee() -> None:
    out = fold(event("opened", "2026-11-30 09:00", "T-8", severity=1), until="2026-11-30 10:00")
    assert out and all(r["group"] is None and r["assignee"] is None for r in out)
    assert all(r["customer_id"] is None for r in out)


def test_assigned_event_replaces_both_fields() -> None:
    out = fold(
        event("opened", "2026-11-30 09:00", "T-9", severity=1, group="g1", assignee="a1"),
        event("assigned", "2026-11-30 09:10", "T-9", group="g2"),
        until="2026-11-30 10:00",
    )
    assert {(r["group"], r["assignee"]) for r in out} == {("g2", None)}


def test_state_round_trips_routing_metadata_and_reads_old_states() -> None:
    state = TicketState("T", 1, 0, 0, "v", group="g", assignee="a")
    again = state_codec.from_obj(state_codec.to_obj(state))
    assert (again.group, again.assignee) == ("g", "a")
    old = state_codec.to_obj(state)
    # a changelog record written before this change (4d9ce65), so before digests too
    del old["group"], old["assignee"], old["digests"]
    assert state_codec.from_obj(old).group is None


def test_cloudevents_binary_headers_written_by_the_sdk_and_readable_back() -> None:
    record = fold(
        event("opened", "2026-11-30 09:00", "T-10", severity=1), until="2026-11-30 10:00"
    )[0]
    headers = sla_event_headers(record, "/escalator/test")
    names = dict(headers)
    assert names["ce_specversion"] == b"1.0"
    assert names["ce_id"] == record["event_id"].encode()
    assert names["ce_type"] == b"escalator." + record["type"].encode()
    assert names["ce_source"] == b"/escalator/test"
    assert names["ce_subject"] == b"T-10"
    assert names["ce_time"] == record["at"].encode()
    assert names["content-type"] == b"application/json"
    assert names["ce_dataschema"] == SLA_EVENT_SCHEMA_ID.encode()
    parsed = read_headers(headers, b"{}")
    assert parsed.get_id() == record["event_id"]
    assert parsed.get_subject() == "T-10"


def test_json_schemas_have_dialect_and_id() -> None:
    for schema in schemas().values():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].startswith("urn:escalator:schema:")
    assert schemas()["sla-event.schema.json"]["$id"] == SLA_EVENT_SCHEMA_ID
