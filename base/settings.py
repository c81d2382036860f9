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

The ground floor: the shared fields and their flags live here and import nothing of the
project; each service declares its own settings beside its code (streams/engine/settings.py,
streams/ingest/settings.py, streams/notify/settings.py, projections/settings.py), and
deploy/settings.py gathers them into the table of every setting (`python -m deploy.settings`).
Bases are listed last-first: pydantic orders fields from the last base on (broker first).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from base.errors import EscalatorError

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
