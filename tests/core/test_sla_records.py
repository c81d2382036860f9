"""The core's typed SLA events (`events.sla_records`) mirror the contract (`events.outbound`):
the same fields, the same required ones, and every event the fold emits is of its type."""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

import orjson
import pytest
from pydantic import BaseModel

from events import outbound, sla_records
from streams.sla.policy import load_policy
from streams.sla.replay import replay_lines
from tests.golden.regenerate import HERE, REPO

EXAMPLES = REPO / "deploy" / "examples"

PAIRS: list[tuple[Any, type[BaseModel]]] = [
    (sla_records.SlaWarning, outbound.SlaWarning),
    (sla_records.SlaBreached, outbound.SlaBreached),
    (sla_records.SlaMet, outbound.SlaMet),
    (sla_records.TicketEscalated, outbound.TicketEscalated),
    (sla_records.CustomerNotificationRequired, outbound.CustomerNotificationRequired),
    (sla_records.SlaRetracted, outbound.SlaRetracted),
    (sla_records.SlaStopped, outbound.SlaStopped),
]
NEVER_WRITTEN = {"round"}
"""Optional fields of the contract's base that the core writes only on some types (warnings,
breaches and met of a rounded metric)."""


@pytest.mark.parametrize(("typed", "model"), PAIRS, ids=[m.__name__ for _, m in PAIRS])
def test_each_typed_event_has_the_contracts_fields(typed: Any, model: type[BaseModel]) -> None:
    fields = model.model_fields
    keys = set(get_type_hints(typed))
    assert keys <= set(fields), keys - set(fields)
    assert set(fields) - keys <= NEVER_WRITTEN
    required = typed.__required_keys__
    contract_required = {name for name, field in fields.items() if field.is_required()}
    assert contract_required <= required  # (`type` has a default in the contract)
    assert required - contract_required <= {"type"}
    kind = get_args(get_type_hints(typed)["type"])
    assert kind == (fields["type"].default,)


def test_policy_ref_mirrors_the_contract() -> None:
    assert set(get_type_hints(sla_records.PolicyRef)) == set(outbound.PolicyRef.model_fields)


@pytest.mark.parametrize(
    ("sample", "policy_file"),
    [("sample.jsonl", ""), ("late.jsonl", ""), ("sample.jsonl", "vendor-policy.toml")],
)
def test_every_emitted_event_is_of_its_typed_dict(sample: str, policy_file: str) -> None:
    """Over the stored histories (the late one reaches the retractions, the vendor policy the
    rounds, repeats and lead-time warnings): each event has the required keys of its type's
    TypedDict and no key outside it, and validates."""
    by_type = {get_args(get_type_hints(t)["type"])[0]: t for t, _ in PAIRS}
    lines = (HERE / sample).read_bytes().splitlines()
    seen = set()
    policy = load_policy(str(EXAMPLES / policy_file)) if policy_file else load_policy()
    for record in replay_lines(lines, policy):
        typed = by_type[record["type"]]
        keys = set(record)
        assert typed.__required_keys__ <= keys, record["type"]
        assert keys <= set(get_type_hints(typed)), record["type"]
        outbound.sla_event_adapter.validate_json(orjson.dumps(record))
        seen.add((record["type"], *sorted(keys & {"round", "repeat", "before_seconds"})))
    assert len(seen) >= 4
