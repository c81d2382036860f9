"""The notifier's settings (`escalator notify`), from the shared fields of base.settings: the
same flag and environment names as every service; channel secrets are named in the rules file
and read from `environ`.
"""

from __future__ import annotations

import os

from pydantic import Field

from base.settings import (
    BrokerSettings,
    LogSettings,
    SlaTopicSettings,
    TicketTopicSettings,
    consumer_group,
    env,
)

# Bases are listed last-first: pydantic orders fields from the last base on (broker first).


class NotifySettings(LogSettings, SlaTopicSettings, TicketTopicSettings, BrokerSettings):
    """`escalator notify`: SLA events to webhooks, Slack, e-mail and PagerDuty by rules."""

    rules: str | None = Field(
        None,
        validation_alias=env("ESCALATOR_NOTIFY_RULES"),
        description="routing rules TOML file (required; channel secrets are named there)",
    )
    consumer_group: str = consumer_group("escalator-notify")
    dlq_prefix: str = Field(
        "notify-dlq.",
        validation_alias=env("ESCALATOR_NOTIFY_DLQ_PREFIX"),
        description="dead-letter topic prefix, one topic per channel",
    )
    concurrency: int = 64
    """Tries in flight at once, per channel."""
    batch: int = 500
    backlog: int = 10_000
    """Deliveries one channel may have waiting before fetching pauses (bounds memory)."""
    environ: dict[str, str] = Field(
        default_factory=lambda: dict(os.environ), repr=False, exclude=True
    )
    """Where channel secrets are read from (the process environment)."""
