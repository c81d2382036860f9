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
`type`, `metric`, `severity`, `policy` (the policy name), `group`, `customer`, `agreement`
(the agreement's name: the policy's for the customer SLA, the OLA's), `agreement_kind` (`sla`
or `ola`; an event that names no agreement is the customer SLA's). An event goes
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

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from yarl import URL

from base.errors import EscalatorError
from events.outbound import SLA_EVENT_TYPES, Metric

CHANNEL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
"""Channel names become part of Kafka topic names (the per-channel dead-letter topic)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    """An absolute http or https URL with a host (a typo would otherwise fail every delivery)."""
    try:
        url = URL(value)
    except (ValueError, TypeError):
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Channel(_Strict):
    attempts: int = Field(5, ge=1, le=50, description="tries before the dead-letter topic")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds per try, at most 300")
    backoff: float = Field(
        0.5, ge=0, le=3600, description="first retry delay, seconds; doubles per try"
    )
    max_backoff: float = Field(30.0, ge=0, le=3600, description="longest retry delay, seconds")
    max_retry_after: float = Field(
        300.0,
        ge=0,
        le=3600,
        description="longest wait a receiver's Retry-After is granted, seconds",
    )


class WebhookChannel(_Channel):
    """POST the SLA event as JSON, signed (events.signatures: X-Escalator-Signature)."""

    kind: Literal["webhook"]
    url: HttpUrl
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
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"


_TAG = re.compile(r"^[A-Za-z0-9_./:-]{1,80}$")
"""A tag or label an action writes: letters, digits and `_./:-` (Zendesk and Zammad tags and
Jira labels hold no spaces; Jira labels at most 255 characters)."""


def _tags(value: list[str]) -> list[str]:
    for tag in value:
        if not _TAG.match(tag):
            raise ValueError(f"tag {tag!r}: 1-80 of letters, digits and _./:- only")
    return value


Tags = Annotated[list[str], AfterValidator(_tags)]


class _TicketActions(_Channel):
    """What a ticket-action channel does to the vendor's ticket for each routed SLA event
    (streams.notify.actions): an internal note (never a public reply), tags or labels to add
    or remove, a priority, a group, custom fields. Every value here is the operator's, never
    the ticket's: the note is built from the SLA event's ids and times only."""

    url: HttpUrl = Field(description="the vendor's base URL, e.g. https://acme.zendesk.com")
    token_env: str = Field(description="environment variable holding the API token")
    note: bool = Field(True, description="add an internal note naming the SLA event")
    add_tags: Tags = Field(default_factory=list)
    remove_tags: Tags = Field(default_factory=list)
    priority: str | None = Field(None, min_length=1, max_length=64)
    fields: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="custom field id -> value"
    )
    ack_url: HttpUrl | None = Field(
        None, description="`escalator ingest`'s /v1/ack URL: escalations get a signed link"
    )
    ack_secret_env: str | None = None
    ack_valid: float = Field(
        86400.0, gt=0, le=30 * 86400, description="seconds an acknowledge link is valid"
    )

    @model_validator(mode="after")
    def _something(self) -> _TicketActions:
        doing = (self.note, self.add_tags, self.remove_tags, self.priority, self.fields)
        if not any(doing) and not getattr(self, "group", None):
            raise ValueError("the channel does nothing: set note, tags, priority, group or fields")
        if (self.ack_url is None) != (self.ack_secret_env is None):
            raise ValueError("ack_url and ack_secret_env go together")
        return self


class ZendeskChannel(_TicketActions):
    """Zendesk Support: `PUT /api/v2/tickets/{id}` (API token auth: `email/token`)."""

    kind: Literal["zendesk"]
    email: str = Field(min_length=3, description="the agent the API token belongs to")
    group: int | None = Field(None, ge=1, description="group_id to reassign to")
    priority: Literal["urgent", "high", "normal", "low"] | None = None
    fields: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="custom field id (a number) -> value"
    )

    @field_validator("fields")
    @classmethod
    def _numeric_ids(
        cls, value: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        for key in value:
            if not key.isdigit():
                raise ValueError(f"custom field id {key!r}: Zendesk field ids are numbers")
        return value


class JsmChannel(_TicketActions):
    """Jira Service Management: internal comments by the Service Desk API, labels, priority
    and fields by `PUT /rest/api/3/issue/{key}` (basic auth: e-mail and API token)."""

    kind: Literal["jsm"]
    email: str = Field(min_length=3, description="the Atlassian account of the API token")


class ZammadChannel(_TicketActions):
    """Zammad: internal note articles, `PUT /api/v1/tickets/{id}` for priority, group and
    fields, `/api/v1/tags/add` and `/remove` (token auth)."""

    kind: Literal["zammad"]
    group: str | None = Field(None, min_length=1, max_length=160, description="group name")


TicketChannel = ZendeskChannel | JsmChannel | ZammadChannel
"""Channels that act on the vendor's ticket (streams.notify.actions)."""
MessageChannel = WebhookChannel | SlackChannel | EmailChannel | PagerDutyChannel
"""Channels that send a message (streams.notify.channels)."""

Channel = Annotated[
    WebhookChannel
    | SlackChannel
    | EmailChannel
    | PagerDutyChannel
    | ZendeskChannel
    | JsmChannel
    | ZammadChannel,
    Field(discriminator="kind"),
]
_Values = str | int | list[str] | list[int]


class Match(_Strict):
    """Values a rule wants; `type`, `metric` and `severity` must be ones the contract has
    (events.outbound), so a misspelt one is refused instead of never matching."""

    type: str | list[str] | None = None
    metric: str | list[str] | None = None
    severity: int | list[int] | None = None
    policy: _Values | None = None
    group: _Values | None = None
    customer: _Values | None = None
    agreement: _Values | None = None
    agreement_kind: str | list[str] | None = None

    @field_validator("agreement_kind")
    @classmethod
    def _kinds(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _known(value, ("sla", "ola"), "agreement kind")

    @field_validator("type")
    @classmethod
    def _types(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _known(value, SLA_EVENT_TYPES, "SLA event type")

    @field_validator("metric")
    @classmethod
    def _metrics(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _known(value, get_args(Metric), "metric")

    @field_validator("severity", mode="before")
    @classmethod
    def _severities(cls, value: object) -> object:
        for severity in value if isinstance(value, list) else [value]:
            if severity is not None and (
                type(severity) is not int or not 1 <= severity <= 4  # a bool is not one
            ):
                raise ValueError(f"severity {severity!r} is not one of the integers 1, 2, 3, 4")
        return value


def _known(
    value: str | list[str] | None, known: tuple[str, ...], what: str
) -> str | list[str] | None:
    for item in value if isinstance(value, list) else [value]:
        if item is not None and item not in known:
            raise ValueError(f"unknown {what} {item!r}; one of {', '.join(known)}")
    return value


class Rule(_Strict):
    name: str
    match: Match = Match()
    channels: list[str] = Field(min_length=1)


class Rules(_Strict):
    channels: dict[str, Channel]
    rules: list[Rule] = Field(min_length=1, description="at least one: else nothing is sent")

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
    name: object = policy.get("name") if isinstance(policy, dict) else None
    agreement = event.get("agreement")
    kind: object = "sla"
    if isinstance(agreement, dict):  # a file with OLAs (absent: the customer SLA)
        kind, name = agreement.get("kind"), agreement.get("name")
    return (
        _accepts(match.type, event.get("type"))
        and _accepts(match.metric, event.get("metric"))
        and _accepts(match.severity, event.get("severity"))
        and _accepts(match.policy, policy.get("name") if isinstance(policy, dict) else None)
        and _accepts(match.group, event.get("group"))
        and _accepts(match.customer, event.get("customer_id"))
        and _accepts(match.agreement, name)
        and _accepts(match.agreement_kind, kind)
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
        for name in (
            "secret_env",
            "url_env",
            "routing_key_env",
            "password_env",
            "token_env",
            "ack_secret_env",
        ):
            var = getattr(channel, name, None)
            if var and not env.get(var):
                needed.append(var)
    return needed
