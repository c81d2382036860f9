"""The engine's settings (`escalator run`) and the Kafka clients' (`publish`, `tail`), from the
shared fields of base.settings: the same flag and environment names as every service.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from base.durations import parse_delay
from base.settings import (
    BrokerSettings,
    HttpSettings,
    KafkaSettings,
    LogSettings,
    PolicySettings,
    Settings,
    env,
    http_port,
)

# Bases are listed last-first: pydantic orders fields from the last base on (broker first).


class PolicyTopicSettings(Settings):
    """The policy topic: published policy versions (issue #22)."""

    policy_topic: str | None = Field(
        None,
        validation_alias=env("ESCALATOR_POLICY_TOPIC"),
        description="compacted topic of published policy versions (escalator policy publish), "
        "read before processing and followed while running (default: <app-id>-policies); "
        "'' for --policy alone",
    )

    def policy_topic_of(self, app_id: str) -> str:
        """The policy topic: as given, else `<app-id>-policies` ("": none)."""
        return f"{app_id}-policies" if self.policy_topic is None else self.policy_topic


class EngineSettings(PolicyTopicSettings, PolicySettings, LogSettings, HttpSettings, KafkaSettings):
    """`escalator run`: the stream-processing worker."""

    port: int = http_port(6066)
    clock: Literal["wall", "event"] = Field(
        "wall",
        validation_alias=env("ESCALATOR_CLOCK"),
        description="wall: timers fire by the wall clock; event: by event/tick time",
    )
    data_dir: str = Field(
        "escalator-data",
        validation_alias=env("ESCALATOR_DATA_DIR"),
        description="local table state (RocksDB/memory) folder",
    )
    app_id: str = Field(
        "escalator",
        validation_alias=env("ESCALATOR_APP_ID"),
        description="consumer group, transactional id and changelog prefix",
    )
    at_least_once: bool = Field(
        False,
        validation_alias=env("ESCALATOR_AT_LEAST_ONCE"),
        description="no Kafka transactions (duplicates possible after a crash)",
    )
    commit_interval: float = Field(
        0.2,
        gt=0,
        validation_alias=env("ESCALATOR_COMMIT_INTERVAL"),
        description="seconds between transaction commits (output latency)",
    )
    tick_interval: float = Field(
        0.2,
        gt=0,
        validation_alias=env("ESCALATOR_TICK_INTERVAL"),
        description="unused (timers fire at their instant); accepted for existing command lines",
    )
    storm_limit: int = Field(
        1000,
        ge=0,
        validation_alias=env("ESCALATOR_STORM_LIMIT"),
        description="timers a partition fires per turn at most before it takes input again "
        "(0: no limit)",
    )
    session_timeout: float = Field(
        10.0, gt=0, validation_alias=env("ESCALATOR_SESSION_TIMEOUT"),
        description="consumer group session timeout, seconds",
    )  # fmt: skip
    heartbeat_interval: float = Field(
        1.0, gt=0, validation_alias=env("ESCALATOR_HEARTBEAT_INTERVAL"),
        description="consumer group heartbeat interval, seconds",
    )  # fmt: skip
    rebalance_timeout: float = Field(
        20.0, gt=0, validation_alias=env("ESCALATOR_REBALANCE_TIMEOUT"),
        description="consumer group rebalance timeout, seconds",
    )  # fmt: skip
    max_delay: float = Field(
        900.0,
        ge=0,
        validation_alias=env("ESCALATOR_MAX_DELAY"),
        description="seconds (or a duration: 15m): bounded out-of-orderness of the event-time "
        "watermark (event clock; wall clock while a partition consumes a backlog)",
    )
    allowed_lateness: float = Field(
        0.1,
        ge=0,
        validation_alias=env("ESCALATOR_ALLOWED_LATENESS"),
        description="seconds: wall clock, how far the watermark trails the wall time on a "
        "caught-up partition (timers fire that long after their due time)",
    )

    @field_validator("max_delay", "allowed_lateness", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> Any:
        """Seconds, or a duration such as `15m` (ValueError naming what is wrong)."""
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return parse_delay(value) / 1_000_000
        return value


class ClientSettings(KafkaSettings):
    """`escalator publish` and `escalator tail`."""


class PolicyPublishSettings(PolicyTopicSettings, BrokerSettings):
    """`escalator policy publish`: the broker and the policy topic (of `app_id`'s workers)."""

    app_id: str = Field(
        "escalator",
        validation_alias=env("ESCALATOR_APP_ID"),
        description="the workers' app id: their policy topic is <app-id>-policies",
    )
