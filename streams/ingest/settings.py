"""The ingest service's settings: the shared configuration model (deploy.settings).

Same flag and environment names as every service (KAFKA_BOOTSTRAP_SERVERS,
ESCALATOR_TICKET_TOPIC, ESCALATOR_DLQ_TOPIC, ESCALATOR_HOST, ESCALATOR_PORT; the README's
table). Secrets only from the environment, one per source; a source without its secret is
disabled (SECRET_ENV: ESCALATOR_INGEST_TOKEN, ESCALATOR_ZENDESK_SECRET, ESCALATOR_JSM_SECRET,
ESCALATOR_ZAMMAD_SECRET).
"""

from __future__ import annotations

from deploy.settings import INGEST_SECRETS as SECRET_ENV
from deploy.settings import IngestSettings

__all__ = ["SECRET_ENV", "IngestSettings"]
