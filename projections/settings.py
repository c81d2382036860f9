"""The read models' settings (`projections serve`, `projections rebuild`, `query`), from the
shared fields of base.settings: the same flag and environment names as every service.
"""

from __future__ import annotations

from pydantic import Field

from base.settings import (
    BrokerSettings,
    DatabaseSettings,
    HttpSettings,
    LogSettings,
    PolicySettings,
    SlaTopicSettings,
    TicketTopicSettings,
    consumer_group,
    env,
    http_port,
)

# Bases are listed last-first: pydantic orders fields from the last base on (broker first).


class RebuildSettings(
    DatabaseSettings, PolicySettings, LogSettings, SlaTopicSettings, TicketTopicSettings,
    BrokerSettings,
):  # fmt: skip
    """`escalator projections rebuild`: fresh read models from both topics (no group, no HTTP)."""


class ProjectionsSettings(RebuildSettings, HttpSettings):
    """`escalator projections serve`: the projector, HTTP API and dashboard."""

    port: int = http_port(8080)
    consumer_group: str = consumer_group("escalator-projections")
    ready_max_lag: int = Field(
        1000,
        ge=0,
        validation_alias=env("ESCALATOR_READY_MAX_LAG"),
        description="/ready fails while the projector is more records than this behind on "
        "any partition",
    )


class QuerySettings(PolicySettings, DatabaseSettings):
    """`escalator query ...`: reads the read-model database directly."""
