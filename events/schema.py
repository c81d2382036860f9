"""JSON Schemas of the contract, generated from the pydantic models.

A generated copy lives in `events/schemas/` so integrators can read it without installing
anything; a test keeps that copy equal to what the models generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from events.inbound import ClockTick, TicketEventPayload
from events.outbound import SlaEvent

SCHEMA_DIR = Path(__file__).with_name("schemas")


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every record type on our topics."""
    inbound = TypeAdapter(TicketEventPayload).json_schema()
    inbound["title"] = "Escalator inbound ticket event"
    outbound = TypeAdapter(SlaEvent).json_schema()
    outbound["title"] = "Escalator outbound SLA event"
    tick = ClockTick.model_json_schema()
    tick["title"] = "Escalator clock tick (event-clock control record)"
    return {
        "ticket-event.schema.json": inbound,
        "sla-event.schema.json": outbound,
        "clock-tick.schema.json": tick,
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
