"""The OpenAPI 3.0 document of the projections API, served at /openapi.json.

Written by hand next to the handlers (no framework generates it), kept small: every path,
every parameter with its allowed values, and the response shapes that clients rely on.
"""

from __future__ import annotations

from typing import Any

from projections.queries import (
    GROUPINGS,
    MAX_LIMIT,
    SLA_EVENT_TYPES,
    SLA_STATES,
    SORTS,
    TICKET_STATUSES,
)


def _param(
    name: str, description: str, schema: dict[str, Any], where: str = "query"
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path",
            "description": description, "schema": schema}  # fmt: skip


_NOW = _param("now", "Evaluate as of this instant (RFC 3339) instead of the server clock.",
              {"type": "string"})  # fmt: skip
_LIMIT = _param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
_OFFSET = _param("offset", "Rows to skip (use next_offset of the previous page).",
                 {"type": "integer", "minimum": 0})  # fmt: skip
_TS = {"type": "string", "format": "date-time", "nullable": True}

_METRIC = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": list(SLA_STATES)},
        "due_at": _TS,
        "remaining_seconds": {
            "type": "number", "nullable": True,
            "description": "Time left on the metric's own clock (business or elapsed); "
            "negative once overdue; frozen while paused.",
        },
        "clock": {"type": "string", "enum": ["business", "elapsed"]},
    },
}  # fmt: skip

_TICKET = {
    "type": "object",
    "required": ["ticket_id", "status", "severity", "metrics"],
    "properties": {
        "ticket_id": {"type": "string"},
        "status": {"type": "string", "enum": list(TICKET_STATUSES)},
        "severity": {"type": "integer", "minimum": 1, "maximum": 4},
        "customer_id": {"type": "string", "nullable": True},
        "assignee": {"type": "string", "nullable": True},
        "group": {"type": "string", "nullable": True},
        "reported_at": _TS,
        "first_response_at": _TS,
        "resolved_at": _TS,
        "closed_at": _TS,
        "cycle": {"type": "integer"},
        "sla_state": {"type": "string", "nullable": True, "enum": [*SLA_STATES, None]},
        "next_due_at": _TS,
        "escalation_level": {"type": "integer"},
        "last_event_at": _TS,
        "metrics": {
            "type": "object",
            "properties": {"first_response": _METRIC, "resolution": _METRIC},
        },
    },
}


def _page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "now": {"type": "string", "format": "date-time"},
            "items": {"type": "array", "items": item},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {"type": "integer", "nullable": True},
        },
    }


_ERROR = {
    "description": "Invalid parameter",
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
    }}},
}  # fmt: skip


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    when = {"type": "string", "description": "RFC 3339 time, or a duration (e.g. 24h) before now"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Escalator projections",
            "version": "1",
            "description": "Read models of ticket SLAs: what is about to breach, what has "
            "breached, who was escalated, how we are doing against the SLA.",
        },
        "paths": {
            "/api/tickets": {"get": {
                "summary": "Tickets, filtered, sorted and paged",
                "parameters": [
                    _param("status", "Comma-separated ticket statuses.", {"type": "string"}),
                    _param("sla_state", "Comma-separated worst-metric states: "
                           + ", ".join(SLA_STATES), {"type": "string"}),
                    _param("severity", "Comma-separated severities 1-4.", {"type": "string"}),
                    _param("customer", "Customer id.", {"type": "string"}),
                    _param("group", "Assigned group.", {"type": "string"}),
                    _param("assignee", "Assignee.", {"type": "string"}),
                    _param("breaching_within", "Next running deadline within this wall-clock "
                           "window from now (e.g. 1h, 30m, 2d); includes overdue ones.",
                           {"type": "string", "pattern": "^[0-9]+[wdhms]$"}),
                    _param("sort", "Order.", {"type": "string", "enum": list(SORTS)}),
                    _LIMIT, _OFFSET, _NOW,
                ],
                "responses": {"200": _ok(_page(_TICKET)), "400": _ERROR},
            }},
            "/api/tickets/{ticket_id}": {"get": {
                "summary": "One ticket with its SLA timeline",
                "parameters": [_param("ticket_id", "Ticket id.", {"type": "string"}, "path"), _NOW],
                "responses": {
                    "200": _ok({"allOf": [_TICKET, {"type": "object", "properties": {
                        "timeline": {"type": "array", "items": {"type": "object", "properties": {
                            "at": {"type": "string"}, "type": {"type": "string"}}}},
                    }}]}),
                    "404": _ERROR, "400": _ERROR,
                },
            }},
            "/api/escalations": {"get": {
                "summary": "Escalations, newest first, with whether since resolved",
                "parameters": [
                    _param("since", "Start (default 24h).", when),
                    _param("open", "Only those whose ticket is not resolved since.",
                           {"type": "boolean"}),
                    _LIMIT, _OFFSET, _NOW,
                ],
                "responses": {"200": _ok(_page({"type": "object"})), "400": _ERROR},
            }},
            "/api/sla-events": {"get": {
                "summary": "SLA events fired in a period, newest first",
                "parameters": [
                    _param("since", "Start (default 24h).", when),
                    _param("until", "End, exclusive (default now).", when),
                    _param("type", "Comma-separated types: " + ", ".join(SLA_EVENT_TYPES),
                           {"type": "string"}),
                    _param("ticket_id", "Only this ticket.", {"type": "string"}),
                    _param("metric", "Only this metric.", {"type": "string", "enum": [
                        "first_response", "resolution", "escalation"]}),
                    _LIMIT, _OFFSET, _NOW,
                ],
                "responses": {"200": _ok(_page({"type": "object"})), "400": _ERROR},
            }},
            "/api/compliance": {"get": {
                "summary": "Compliance of tickets reported in a period, grouped",
                "parameters": [
                    _param("from", "Start (default 30d).", when),
                    _param("to", "End (default now).", when),
                    _param("group_by", "Grouping (days are the policy calendar's).",
                           {"type": "string", "enum": list(GROUPINGS)}),
                    _NOW,
                ],
                "responses": {"200": _ok({"type": "object"}), "400": _ERROR},
            }},
            "/api/dashboard": {"get": {
                "summary": "Open tickets by time to breach, last 24h escalations, 30-day "
                "compliance per severity: what the wall screen polls",
                "parameters": [_NOW],
                "responses": {"200": _ok({"type": "object"}), "400": _ERROR},
            }},
            "/api/stats": {"get": {
                "summary": "Projector counters and stored offsets",
                "responses": {"200": _ok({"type": "object"})},
            }},
        },
    }  # fmt: skip
