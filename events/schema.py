"""JSON Schemas of the contract, generated from the pydantic models.

A generated copy lives in `events/schemas/` so integrators can read it without installing
anything; a test keeps that copy equal to what the models generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from events.cloudevents import SCHEMA_BASE
from events.inbound import ClockTick, TicketEventPayload
from events.outbound import SlaEvent
from events.rollouts import PolicyActivated, PolicyRollout

SCHEMA_DIR = Path(__file__).with_name("schemas")
DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""pydantic generates JSON Schema draft 2020-12."""


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every record type on our topics."""
    inbound = TypeAdapter(TicketEventPayload).json_schema()
    inbound["title"] = "Escalator inbound ticket event"
    outbound = TypeAdapter(SlaEvent).json_schema()
    outbound["title"] = "Escalator outbound SLA event"
    tick = ClockTick.model_json_schema()
    tick["title"] = "Escalator clock tick (event-clock control record)"
    rollout = PolicyRollout.model_json_schema()
    rollout["title"] = "Escalator policy rollout (policy topic record)"
    activated = PolicyActivated.model_json_schema()
    activated["title"] = "Escalator policy.activated audit record (SLA topic)"
    named = {
        "ticket-event.schema.json": inbound,
        "sla-event.schema.json": outbound,
        "clock-tick.schema.json": tick,
        "policy-rollout.schema.json": rollout,
        "policy-activated.schema.json": activated,
    }
    # $id: a stable URN per record type (also the CloudEvents `dataschema` of SLA events).
    return {
        name: {"$schema": DIALECT, "$id": SCHEMA_BASE + name.removesuffix(".schema.json"), **body}
        for name, body in named.items()
    }


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_bytes(render(schema))
        written.append(path)
    return written
