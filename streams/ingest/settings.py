"""The ingest service's settings (`escalator ingest`), from the shared fields of base.settings.

Same flag and environment names as every service (KAFKA_BOOTSTRAP_SERVERS,
ESCALATOR_TICKET_TOPIC, ESCALATOR_DLQ_TOPIC, ESCALATOR_HOST, ESCALATOR_PORT; the settings
table). Secrets only from the environment, one per source; a source without its secret is
disabled (INGEST_SECRETS: ESCALATOR_INGEST_TOKEN, ESCALATOR_ZENDESK_SECRET,
ESCALATOR_JSM_SECRET, ESCALATOR_ZAMMAD_SECRET, ESCALATOR_PAGERDUTY_SECRET, and
ESCALATOR_ACK_SECRET for the signed acknowledge links).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from base.settings import (
    BrokerSettings,
    DlqTopicSettings,
    HttpSettings,
    LogSettings,
    TicketTopicSettings,
    env,
    env_names,
    http_port,
)
from events.vendors.jsm import ORGANIZATIONS_FIELD

# Bases are listed last-first: pydantic orders fields from the last base on (broker first).


INGEST_SECRETS: dict[str, str] = {
    "contract": "ESCALATOR_INGEST_TOKEN",
    "zendesk": "ESCALATOR_ZENDESK_SECRET",
    "jsm": "ESCALATOR_JSM_SECRET",
    "zammad": "ESCALATOR_ZAMMAD_SECRET",
    "pagerduty": "ESCALATOR_PAGERDUTY_SECRET",
    "ack": "ESCALATOR_ACK_SECRET",
}
"""Ingest source -> the environment variable of its shared secret; unset disables it."""


def ingest_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Source -> secret for each source whose variable is set (and not empty)."""
    found = os.environ if environ is None else environ
    return {source: found[name] for source, name in INGEST_SECRETS.items() if found.get(name)}


class IngestSettings(LogSettings, HttpSettings, DlqTopicSettings, TicketTopicSettings,
                     BrokerSettings):  # fmt: skip
    """`escalator ingest`: HTTP ingest of contract events and vendor webhooks."""

    port: int = http_port(8090)
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        validation_alias=env("ESCALATOR_INGEST_MAX_BODY_BYTES"),
        description="largest request body accepted, bytes",
    )
    max_record_bytes: int = Field(
        1_000_000,
        ge=1024,
        validation_alias=env("ESCALATOR_INGEST_MAX_RECORD_BYTES"),
        description="largest event accepted, bytes as produced (413 above; keep it under the "
        "broker's message.max.bytes)",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        validation_alias=env("ESCALATOR_INGEST_HEADER_TIMEOUT"),
        description="seconds a connection may take to send a request's headers (closed after)",
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        validation_alias=env("ESCALATOR_INGEST_BODY_TIMEOUT"),
        description="seconds a client may take to send a request's body (408 after)",
    )
    max_connections: int = Field(
        256,
        ge=4,
        validation_alias=env("ESCALATOR_INGEST_MAX_CONNECTIONS"),
        description="open connections served at once (more get 503 and are closed)",
    )
    jsm_organizations_field: str = Field(
        ORGANIZATIONS_FIELD,
        validation_alias=env("ESCALATOR_JSM_ORGANIZATIONS_FIELD"),
        description="the Jira Service Management field that holds the customer organisation",
    )
    zammad_state: str = Field(
        "escalator-ingest-zammad.sqlite3",
        min_length=1,
        validation_alias=env("ESCALATOR_ZAMMAD_STATE"),
        description="SQLite file of the Zammad tickets' states and delivery ids seen (kept "
        "across restarts; one ingest process per file)",
    )
    secrets: dict[str, str] = Field(default_factory=ingest_secrets, repr=False, exclude=True)
    """Source -> shared secret (INGEST_SECRETS); never printed nor logged."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> IngestSettings:
        """Settings from `environ` (default: the process environment), then `given` values."""
        found = os.environ if environ is None else environ
        values: dict[str, Any] = {"secrets": ingest_secrets(found)}
        for name, field in cls.model_fields.items():
            for variable in reversed(env_names(field)):  # the current name wins
                if variable in found:
                    values[name] = found[variable]
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)
