"""One configuration model for every service: the same flag and environment names everywhere.

Each setting is a pydantic-settings field. Its command-line flag is the field name with dashes
(`ticket_topic` -> `--ticket-topic`); its environment variable is the field's first alias
(`ESCALATOR_TICKET_TOPIC`; the broker is the usual `KAFKA_BOOTSTRAP_SERVERS`). A flag beats
the environment, which beats the default. Older names stay readable as deprecated aliases
(`--input-topic`, `ESCALATOR_WEB_PORT`, ...): the flag prints a warning once.

A service composes the groups it needs and sets its own defaults::

    class IngestSettings(KafkaSettings, HttpSettings, LogSettings):
        port: int = http_port(8090)

    parser = subparsers.add_parser("ingest")
    add_flags(parser, IngestSettings)
    ...
    settings = from_args(IngestSettings, args)   # exits 2 naming the flag or variable

`python -m deploy.settings` prints the table of every setting of every service that
docs/operations.md carries; `python -m deploy.settings --update docs/operations.md` rewrites it
there (a test compares them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from base.durations import parse_delay
from base.errors import EscalatorError
from events.vendors.jsm import ORGANIZATIONS_FIELD

DB_ENV = "ESCALATOR_DB"
"""The read-model database (SQLite path or postgresql:// DSN); deploy.postgres_local prints it."""

DEPRECATED_FLAGS: dict[str, str] = {
    "--input-topic": "--ticket-topic",
    "--output-topic": "--sla-topic",
    "--web-port": "--port",
    "--web-host": "--host",
    "--loglevel": "--log-level",
    "--group": "--consumer-group",
}
"""Old flag -> its current name; still accepted, with a warning."""


def env(name: str, *deprecated: str) -> AliasChoices:
    """The environment variable of a setting, then older names still read."""
    return AliasChoices(name, *deprecated)


class _NamedEnvironment(EnvSettingsSource):
    """Reads only the fields that have an environment name (internal fields have none)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field.validation_alias is None:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
    """Base of every service's settings: flags (init values), then the environment; never a
    dotenv file or secrets dir. A field without an environment name is internal: no flag, no
    variable, not in the table (e.g. secrets read by the service itself).

    Unknown environment variables are ignored; an invalid value raises ValidationError naming
    the variable (see :func:`from_args`).
    """

    model_config = SettingsConfigDict(
        populate_by_name=True,  # from_args passes flags by field name
        extra="ignore",
        case_sensitive=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _NamedEnvironment(settings_cls)


class BrokerSettings(Settings):
    """Where the broker is (every Kafka client)."""

    broker: str = Field(
        "localhost:9092",
        validation_alias=env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers host:port[,host:port]",
    )
    partitions: int = Field(
        8,
        ge=1,
        validation_alias=env("ESCALATOR_PARTITIONS"),
        description="partitions of each topic when it is created",
    )
    connect_timeout: float = Field(
        30.0,
        gt=0,
        validation_alias=env("ESCALATOR_CONNECT_TIMEOUT"),
        description="seconds to keep retrying an unreachable broker before giving up",
    )


class TicketTopicSettings(Settings):
    ticket_topic: str = Field(
        "ticket-events",
        validation_alias=env("ESCALATOR_TICKET_TOPIC", "ESCALATOR_INPUT_TOPIC"),
        description="inbound ticket events, keyed by ticket id",
    )


class SlaTopicSettings(Settings):
    sla_topic: str = Field(
        "sla-events",
        validation_alias=env("ESCALATOR_SLA_TOPIC", "ESCALATOR_OUTPUT_TOPIC"),
        description="outbound SLA events, keyed by ticket id",
    )


class DlqTopicSettings(Settings):
    dlq_topic: str = Field(
        "ticket-events-dlq",
        validation_alias=env("ESCALATOR_DLQ_TOPIC"),
        description="dead letters: rejected input with its original bytes and the reason",
    )


class KafkaSettings(DlqTopicSettings, SlaTopicSettings, TicketTopicSettings, BrokerSettings):
    """The broker and all three topics."""


def consumer_group(default: str) -> Any:
    """The `consumer_group` field with a service's own default (same flag and variable)."""
    return Field(
        default,
        validation_alias=env("ESCALATOR_CONSUMER_GROUP"),
        description="consumer group id",
    )


class HttpSettings(Settings):
    """Where a service listens for HTTP (metrics, health, API). Loopback unless told otherwise."""

    host: str = Field(
        "127.0.0.1",
        validation_alias=env("ESCALATOR_HOST", "ESCALATOR_WEB_HOST"),
        description="HTTP listen address",
    )
    port: int = Field(
        8080,
        ge=0,
        le=65535,
        validation_alias=env("ESCALATOR_PORT", "ESCALATOR_WEB_PORT"),
        description="HTTP listen port (0: any free port)",
    )


def http_port(default: int) -> Any:
    """The `port` field with a service's own default (same flag and variable)."""
    field = HttpSettings.model_fields["port"]
    return Field(
        default,
        ge=0,
        le=65535,
        validation_alias=field.validation_alias,
        description=field.description,
    )


class LogSettings(Settings):
    """How a service logs: text for people, JSON lines for log shippers (see base.logs)."""

    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias=env("ESCALATOR_LOG_FORMAT"),
        description="text, or json: one JSON object per line",
    )
    log_level: Literal["debug", "info", "warning", "warn", "error", "critical"] = Field(
        "info",
        validation_alias=env("ESCALATOR_LOG_LEVEL", "ESCALATOR_LOGLEVEL"),
        description="debug, info, warning, error or critical",
    )


class PolicySettings(Settings):
    policy: str | None = Field(
        None,
        validation_alias=env("ESCALATOR_POLICY"),
        description="SLA policy TOML file (default: the shipped policy)",
    )


class DatabaseSettings(Settings):
    db: str = Field(
        "escalator-projections.sqlite3",
        validation_alias=env(DB_ENV, "ESCALATOR_PROJECTIONS_DB"),
        description="read-model database: SQLite file path or postgresql:// DSN",
    )


# Bases are listed last-first: pydantic orders fields from the last base on (broker first).


class EngineSettings(PolicySettings, LogSettings, HttpSettings, KafkaSettings):
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
        description="seconds between wall-clock timer checks",
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


INGEST_SECRETS: dict[str, str] = {
    "contract": "ESCALATOR_INGEST_TOKEN",
    "zendesk": "ESCALATOR_ZENDESK_SECRET",
    "jsm": "ESCALATOR_JSM_SECRET",
    "zammad": "ESCALATOR_ZAMMAD_SECRET",
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
    batch: int = 500
    environ: dict[str, str] = Field(
        default_factory=lambda: dict(os.environ), repr=False, exclude=True
    )
    """Where channel secrets are read from (the process environment)."""


class QuerySettings(PolicySettings, DatabaseSettings):
    """`escalator query ...`: reads the read-model database directly."""


class ClientSettings(KafkaSettings):
    """`escalator publish` and `escalator tail`."""


SECRETS: dict[str, str] = {
    "ESCALATOR_API_TOKEN": "bearer token the API, dashboard data and metrics require "
    "(projections serve; at least 16 characters)",
    "ESCALATOR_INGEST_TOKEN": "bearer token for POST /v1/events (ingest)",
    "ESCALATOR_ZENDESK_SECRET": "Zendesk webhook signing secret (ingest)",
    "ESCALATOR_JSM_SECRET": "Jira webhook secret, HMAC-SHA256 (ingest)",
    "ESCALATOR_ZAMMAD_SECRET": "Zammad webhook HMAC token (ingest)",
}
"""Secrets: read from the environment only (never a flag, never logged); name -> what."""


SERVICES: dict[str, type[Settings]] = {
    "run": EngineSettings,
    "projections serve": ProjectionsSettings,
    "projections rebuild": RebuildSettings,
    "publish, tail": ClientSettings,
    "query": QuerySettings,
    "ingest": IngestSettings,
    "notify": NotifySettings,
}
"""Every command's settings model, for the settings table (services add themselves here)."""


# ------------------------------------------------------------------------ flags


def flag(name: str) -> str:
    """The command-line flag of a field: `ticket_topic` -> `--ticket-topic`."""
    return "--" + name.replace("_", "-")


def env_names(field: FieldInfo) -> list[str]:
    """The environment variables a field reads, current name first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [] if alias is None else [str(alias)]


class _Deprecated(argparse.Action):
    """An old flag: store under the current name and note it (see :func:`service_settings`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        new = DEPRECATED_FLAGS.get(option_string or "", flag(self.dest))
        notes: list[str] = namespace.__dict__.setdefault(DEPRECATION_NOTES, [])
        notes.append(f"{option_string} is deprecated; use {new}")
        setattr(namespace, self.dest, values)


DEPRECATION_NOTES = "deprecated_flags"
"""Where the parsed arguments keep the deprecated flags used."""


def add_flags(parser: argparse.ArgumentParser, model: type[Settings]) -> None:
    """One flag per field of `model`; unset flags leave the value to the environment."""
    old_by_new = {new: old for old, new in DEPRECATED_FLAGS.items()}
    for name, field in model.model_fields.items():
        names = env_names(field)
        if not names:
            continue  # internal: not a setting
        where = f" (env {names[0]}; default {field.default})"
        help_text = (field.description or "") + where
        if field.annotation is bool:
            parser.add_argument(
                flag(name), dest=name, action="store_const", const=True,
                default=argparse.SUPPRESS, help=help_text,
            )  # fmt: skip
            continue
        parser.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, help=help_text)
        if flag(name) in old_by_new:
            parser.add_argument(
                old_by_new[flag(name)], dest=name, action=_Deprecated,
                default=argparse.SUPPRESS, help=argparse.SUPPRESS,
            )  # fmt: skip


S = TypeVar("S", bound=Settings)


def load(model: type[S], given: dict[str, Any]) -> S:
    """Settings from `given` (by field name), then the environment, then the defaults.

    Raises SettingsError naming the flag or environment variable of each invalid value.
    """
    try:
        return model(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            field = model.model_fields.get(name)
            if name in given or field is None:
                where = flag(name) if field is not None else name
            else:
                where = next(
                    (n for n in env_names(field) if n in os.environ),
                    flag(name),
                )
            problems.append(f"{where}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None


class SettingsError(EscalatorError, ValueError):
    """An invalid flag or environment value; the message names it."""


def from_args(model: type[S], args: argparse.Namespace) -> S:
    """The settings of a parsed command line (flags added by :func:`add_flags`)."""
    given = {
        name: getattr(args, name)
        for name, field in model.model_fields.items()
        if env_names(field) and hasattr(args, name)
    }
    return load(model, given)


def service_settings(model: type[S], args: argparse.Namespace) -> S:
    """:func:`from_args`, then set up logging (for a service with LogSettings) and warn about
    deprecated flags: through the log in its format, or on stderr for plain commands.
    """
    settings = from_args(model, args)
    notes: list[str] = getattr(args, DEPRECATION_NOTES, [])
    if isinstance(settings, LogSettings):
        from base.logs import configure_logging

        configure_logging(settings.log_format, settings.log_level)
        for note in notes:
            logging.getLogger("escalator.settings").warning(note)
    else:
        for note in notes:
            print(f"escalator: {note}", file=sys.stderr)
    return settings


# ---------------------------------------------------------------------- settings table


def rows() -> Iterator[tuple[str, str, str, str]]:
    """(flag, environment, default, commands) for every setting of every service."""
    seen: dict[str, tuple[str, str, dict[str, list[str]], set[str]]] = {}
    for command, model in SERVICES.items():
        for name, field in model.model_fields.items():
            names = env_names(field)
            if not names:
                continue
            env_text = " / ".join(f"`{n}`" for n in names[:1]) + "".join(
                f" (or `{n}`, deprecated)" for n in names[1:]
            )
            default = "" if field.default is None else f"`{field.default}`"
            if name not in seen:
                seen[name] = (env_text, field.description or "", {}, set())
            seen[name][2].setdefault(default, []).append(command)
            seen[name][3].add(command)
    for name, (env_text, description, defaults, commands) in seen.items():
        old = [o for o, n in DEPRECATED_FLAGS.items() if n == flag(name)]
        flag_text = f"`{flag(name)}`" + "".join(f" (or `{o}`, deprecated)" for o in old)
        ordered = [c for c in SERVICES if c in commands]
        default_text = (
            next(iter(defaults))
            if len(defaults) == 1
            else ", ".join(f"{value} ({', '.join(where)})" for value, where in defaults.items())
        )
        yield flag_text, env_text, default_text, f"{description} ({', '.join(ordered)})"


def markdown_table() -> str:
    lines = ["| flag | environment | default | what (commands) |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows()]
    lines += [f"| (none: secret) | `{name}` | | {what} |" for name, what in SECRETS.items()]
    return "\n".join(lines)


def update_readme(path: str) -> None:
    """Replace the settings table in the Markdown page at `path` by the current one."""
    readme = Path(path)
    text = readme.read_text(encoding="utf-8")
    start = text.index(markdown_table().splitlines()[0])
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end
    readme.write_text(text[:start] + markdown_table() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update_readme(sys.argv[2] if len(sys.argv) > 2 else "docs/operations.md")
    else:
        print(markdown_table())
