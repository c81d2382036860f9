"""The ingest service's OpenAPI 3.1 document (served at GET /openapi.json).

Describes what the handlers in streams.ingest.app accept and answer; the event body is the
contract's JSON Schema (events.inbound), generated from the same pydantic models the decoder
uses. OpenAPI 3.1 schemas are JSON Schema 2020-12, so it is embedded as generated, its
definitions moved to `components/schemas`.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from events.inbound import TicketEventPayload
from streams.ingest.settings import IngestSettings

_EVENT_REF = {"$ref": "#/components/schemas/TicketEvent"}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_RESULT = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "taken_lines": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"line": {"type": "integer"}, "error": {"type": "string"}},
                "required": ["line", "error"],
            },
        },
    },
    "required": ["accepted", "taken_lines", "errors"],
}


_CHALLENGE = {
    "description": "the scheme the route expects and its realm (RFC 9110 section 11.6.1)",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answers(ok: dict[str, Any], *extra: str) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}
    described = {
        "400": "malformed JSON or an empty body",
        "401": "missing or wrong credentials (WWW-Authenticate names the scheme); the body is "
        "not read",
        "404": "source not enabled (its secret is not set)",
        "408": "body not received within --body-timeout",
        "413": "body over --max-body-bytes, or an event over --max-record-bytes (named)",
        "422": "some lines invalid: each named with its field; the valid ones were taken",
        "500": "ingest cannot produce to its topic (topic or authorization misconfigured)",
        "503": "broker unavailable, or the producer being replaced; retry",
    }
    answers = dict(ok)
    for status in ("400", "401", "404", "408", "413", "500", "503", *extra):
        answers[status] = _json(_RESULT if status == "422" else error, described[status])
    answers["401"]["headers"] = {"WWW-Authenticate": _CHALLENGE}
    return answers


def document(settings: IngestSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this ingest (its limits as configured)."""
    event = TypeAdapter(TicketEventPayload).json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(event.pop("$defs", {}))
    components["TicketEvent"] = event
    components["Error"] = _ERROR
    components["Accepted"] = _RESULT
    webhook_body = {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    webhook_ok = {
        "200": _json(
            {"type": "object"},
            "mapped and on the broker (`taken`), `ignored`, or a Zammad or JSM delivery "
            "already taken (`duplicate_delivery`)",
        ),
        "202": _json({"type": "object"}, "unmappable: dead-lettered with the reason"),
    }
    webhooks = {
        "zendesk": ("Zendesk webhook", "zendeskSignature"),
        "jsm": ("Jira Service Management webhook (X-Hub-Signature sha256)", "hubSha256"),
        "zammad": ("Zammad webhook (X-Hub-Signature sha1)", "hubSha1"),
        "pagerduty": ("PagerDuty webhook v3: incident.acknowledged", "pagerdutySignature"),
    }
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": {
                "operationId": "postEvents",
                "summary": "Contract events: one JSON object, or JSONL (one per line)",
                "description": "Answered 200 only after the broker acknowledged every record; "
                f"body at most {settings.max_body_bytes} bytes, each event at most "
                f"{settings.max_record_bytes} bytes.",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TicketEvent"}
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "responses": _answers(
                    {"200": _json({"$ref": "#/components/schemas/Accepted"}, "all taken")},
                    "422",
                ),
            }
        },
        "/v1/ack": {
            "get": {
                "operationId": "ackPage",
                "summary": "A signed acknowledge link: a page whose button posts it (a link "
                "opened by a mail scanner acknowledges nothing)",
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                    for n in ("ticket", "level", "expires", "sig")
                ],
                "responses": {
                    "200": {
                        "description": "the confirmation page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "403": _json({"$ref": "#/components/schemas/Error"}, "bad or expired"),
                    "404": _json({"$ref": "#/components/schemas/Error"}, "links not enabled"),
                },
            },
            "post": {
                "operationId": "ack",
                "summary": "Acknowledge: ticket.escalation_acknowledged for the link's ticket "
                "and level (form fields ticket, level, expires, sig)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": {"type": "object"}}
                    },
                },
                "responses": _answers(
                    {
                        "200": _json({"type": "object"}, "on the broker (`taken`)"),
                        "403": _json({"$ref": "#/components/schemas/Error"}, "bad or expired"),
                    }
                ),
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "ok while a producer is usable; degraded (503) while it is replaced",
                "responses": {
                    "200": _json({"type": "object"}, "ok"),
                    "503": _json({"type": "object"}, "degraded, with the reason"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text: escalator_ingest_ignored_total, "
                "escalator_ingest_warnings_total (source, reason), "
                "escalator_ingest_dead_letters_total (source)",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }
    for source, (summary, scheme) in webhooks.items():
        paths[f"/v1/webhooks/{source}"] = {
            "post": {
                "operationId": f"webhook_{source}",
                "summary": summary,
                "security": [{scheme: []}],
                "requestBody": webhook_body,
                "responses": _answers(webhook_ok),
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Escalator ingest", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "zendeskSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Zendesk-Webhook-Signature",
                    "description": "base64 HMAC-SHA256 of the timestamp header and the body; "
                    "the timestamp is sent in X-Zendesk-Webhook-Signature-Timestamp (required, "
                    "within 300 s of the ingest's clock)",
                },
                "hubSha256": {"type": "apiKey", "in": "header", "name": "X-Hub-Signature"},
                "hubSha1": {"type": "apiKey", "in": "header", "name": "X-Hub-Signature"},
                "pagerdutySignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-PagerDuty-Signature",
                    "description": "v1=<hex HMAC-SHA256 of the body>, comma-separated",
                },
            },
        },
    }
