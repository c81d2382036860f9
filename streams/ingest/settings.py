"""The ingest service's settings (to fold into the shared configuration model, deploy/).

Same flag and environment names as every service: KAFKA_BOOTSTRAP_SERVERS,
ESCALATOR_TICKET_TOPIC, ESCALATOR_DLQ_TOPIC, ESCALATOR_HOST, ESCALATOR_PORT. Secrets only
from the environment, one per source; a source without its secret is disabled:

    ESCALATOR_INGEST_TOKEN      bearer token for POST /v1/events (Escalator's contract)
    ESCALATOR_ZENDESK_SECRET    Zendesk webhook signing secret
    ESCALATOR_JSM_SECRET        Jira webhook secret (X-Hub-Signature, HMAC-SHA256)
    ESCALATOR_ZAMMAD_SECRET     Zammad webhook HMAC token (X-Hub-Signature, HMAC-SHA1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from events.vendors.jsm import ORGANIZATIONS_FIELD

SECRET_ENV: dict[str, str] = {
    "contract": "ESCALATOR_INGEST_TOKEN",
    "zendesk": "ESCALATOR_ZENDESK_SECRET",
    "jsm": "ESCALATOR_JSM_SECRET",
    "zammad": "ESCALATOR_ZAMMAD_SECRET",
}


@dataclass(frozen=True)
class IngestSettings:
    broker: str = "localhost:9092"
    ticket_topic: str = "ticket-events"
    dlq_topic: str = "ticket-events-dlq"
    host: str = "127.0.0.1"
    port: int = 8090
    max_body_bytes: int = 32 * 1024 * 1024
    jsm_organizations_field: str = ORGANIZATIONS_FIELD
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Source -> shared secret; never printed (repr=False) nor logged."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: object) -> IngestSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "broker": env.get("KAFKA_BOOTSTRAP_SERVERS", cls.broker),
            "ticket_topic": env.get(
                "ESCALATOR_TICKET_TOPIC", env.get("ESCALATOR_INPUT_TOPIC", cls.ticket_topic)
            ),
            "dlq_topic": env.get("ESCALATOR_DLQ_TOPIC", cls.dlq_topic),
            "host": env.get("ESCALATOR_HOST", cls.host),
            "port": int(env.get("ESCALATOR_PORT", cls.port)),
            "jsm_organizations_field": env.get(
                "ESCALATOR_JSM_ORGANIZATIONS_FIELD", cls.jsm_organizations_field
            ),
            "secrets": {s: env[name] for s, name in SECRET_ENV.items() if env.get(name)},
        }
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
