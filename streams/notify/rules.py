"""Routing rules: which SLA events go to which channels (a TOML file; pure code).

    [channels.ops-hook]
    kind = "webhook"
    url = "http://127.0.0.1:9000/escalations"
    secret_env = "OPS_HOOK_SECRET"            # the secret itself only in the environment

    [[rules]]
    name = "sev1-2 escalations"
    match = { type = "ticket.escalated", severity = [1, 2] }
    channels = ["ops-hook", "oncall-mail"]

A rule matches when every key it gives matches (a value or a list of values; absent: any):
`type`, `metric`, `severity`, `policy` (the policy name), `group`, `customer`. An event goes
to the union of the channels of every matching rule, each once. Secrets are never in this
file: a channel names the environment variable that holds it, and unknown keys (such as
`secret` or `routing_key`) are refused.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from base.errors import EscalatorError
from events.outbound import Metric

CHANNEL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
"""Channel names become part of Kafka topic names (the per-channel dead-letter topic)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Channel(_Strict):
    attempts: int = Field(5, ge=1, le=50, description="tries before the dead-letter topic")
    timeout: float = Field(10.0, gt=0, description="seconds per try")
    backoff: float = Field(0.5, ge=0, description="first retry delay, seconds; doubles per try")
    max_backoff: float = Field(30.0, ge=0, description="longest retry delay, seconds")


class WebhookChannel(_Channel):
    """POST the SLA event as JSON, signed (events.signatures: X-Escalator-Signature)."""

    kind: Literal["webhook"]
    url: str
    secret_env: str


class SlackChannel(_Channel):
    """A Slack incoming webhook (its URL is the secret: from the environment)."""

    kind: Literal["slack"]
    url_env: str


class EmailChannel(_Channel):
    kind: Literal["email"]
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    sender: str
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = None
    starttls: bool = False


class PagerDutyChannel(_Channel):
    """PagerDuty Events API v2: trigger on routed events, resolve when the ticket resolves."""

    kind: Literal["pagerduty"]
    routing_key_env: str
    url: str = "https://events.pagerduty.com/v2/enqueue"


Channel = Annotated[
    WebhookChannel | SlackChannel | EmailChannel | PagerDutyChannel, Field(discriminator="kind")
]
_Values = str | int | list[str] | list[int]


class Match(_Strict):
    type: _Values | None = None
    metric: _Values | None = None
    severity: _Values | None = None
    policy: _Values | None = None
    group: _Values | None = None
    customer: _Values | None = None


class Rule(_Strict):
    name: str
    match: Match = Match()
    channels: list[str] = Field(min_length=1)


class Rules(_Strict):
    channels: dict[str, Channel]
    rules: list[Rule]

    @field_validator("channels")
    @classmethod
    def _names(cls, channels: dict[str, Channel]) -> dict[str, Channel]:
        for name in channels:
            if not CHANNEL_NAME.match(name):
                raise ValueError(f"channel name {name!r}: letters, digits, '.', '_', '-' only")
        return channels

    @model_validator(mode="after")
    def _known_channels(self) -> Rules:
        for index, rule in enumerate(self.rules):
            for name in rule.channels:
                if name not in self.channels:
                    raise ValueError(f"rules[{index}] ({rule.name!r}): unknown channel {name!r}")
        return self


class RulesError(EscalatorError, ValueError):
    """An invalid rules file; the message names the file and the key."""


def parse_rules(text: str, origin: str = "<rules>") -> Rules:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{origin}: {exc}") from None
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        parts = []
        for item in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in item["loc"]) or "(file)"
            parts.append(f"{where}: {item['msg']}")
        raise RulesError(f"{origin}: " + "; ".join(parts)) from None


def load_rules(path: str | Path) -> Rules:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RulesError(f"{path}: {exc.strerror}") from None
    return parse_rules(text, str(path))


def _accepts(wanted: _Values | None, value: object) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, list):
        return value in wanted or str(value) in [str(w) for w in wanted]
    return value == wanted or str(value) == str(wanted)


def matches(match: Match, event: dict[str, Any]) -> bool:
    policy = event.get("policy")
    return (
        _accepts(match.type, event.get("type"))
        and _accepts(match.metric, event.get("metric"))
        and _accepts(match.severity, event.get("severity"))
        and _accepts(match.policy, policy.get("name") if isinstance(policy, dict) else None)
        and _accepts(match.group, event.get("group"))
        and _accepts(match.customer, event.get("customer_id"))
    )


def route(rules: Rules, event: dict[str, Any]) -> list[str]:
    """Channel names for one SLA event, each once, in rule order."""
    names: dict[str, None] = {}
    for rule in rules.rules:
        if matches(rule.match, event):
            names.update(dict.fromkeys(rule.channels))
    return list(names)


ALL_METRICS: tuple[str, ...] = get_args(Metric)
"""Every metric of the outbound contract (a PagerDuty incident per ticket and metric)."""


def pagerduty_metrics(rules: Rules, channel: str) -> list[str]:
    """Metrics whose incidents a PagerDuty channel may hold (to resolve them on resolution)."""
    metrics: dict[str, None] = {}
    for rule in rules.rules:
        if channel not in rule.channels:
            continue
        wanted = rule.match.metric
        types = rule.match.type
        if wanted is not None:
            metrics.update(
                dict.fromkeys(str(m) for m in (wanted if isinstance(wanted, list) else [wanted]))
            )
        elif types is not None and {
            str(t) for t in (types if isinstance(types, list) else [types])
        } == {"ticket.escalated"}:
            metrics["escalation"] = None
        else:
            metrics.update(dict.fromkeys(ALL_METRICS))
    return [m for m in ALL_METRICS if m in metrics]


def missing_secrets(rules: Rules, environ: dict[str, str] | None = None) -> list[str]:
    """Environment variables the channels need that are not set (checked at start-up)."""
    env = dict(os.environ) if environ is None else environ
    needed: list[str] = []
    for channel in rules.channels.values():
        for name in ("secret_env", "url_env", "routing_key_env", "password_env"):
            var = getattr(channel, name, None)
            if var and not env.get(var):
                needed.append(var)
    return needed
