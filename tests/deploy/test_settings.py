"""One configuration model: each service reads the same flag and environment names."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic.fields import FieldInfo

from base.settings import (
    Settings,
    SettingsError,
    env_names,
    flag,
    from_args,
    service_settings,
)
from deploy.cli import build_parser, main
from deploy.postgres_local import LocalPostgres
from deploy.settings import SECRETS, SERVICES, markdown_table
from projections.settings import ProjectionsSettings, QuerySettings
from streams.engine.settings import EngineSettings

REPO = Path(__file__).resolve().parents[2]

COMMANDS: dict[str, tuple[list[str], type[Settings]]] = {
    "run": (["run"], EngineSettings),
    "projections serve": (["projections", "serve"], ProjectionsSettings),
    "projections rebuild": (["projections", "rebuild"], SERVICES["projections rebuild"]),
    "publish": (["publish", "-"], SERVICES["publish, tail"]),
    "tail": (["tail"], SERVICES["publish, tail"]),
    "query tickets": (["query", "tickets"], QuerySettings),
    "ingest": (["ingest"], SERVICES["ingest"]),
    "notify": (["notify"], SERVICES["notify"]),
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine's environment."""
    for model in SERVICES.values():
        for field in model.model_fields.values():
            for name in env_names(field):
                monkeypatch.delenv(name, raising=False)


def _value(name: str, field: FieldInfo) -> str:
    """A valid, non-default value of a field, as text (flags and variables are text)."""
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        choices = [c for c in typing.get_args(annotation) if c != field.default]
        return str(choices[-1])
    if annotation is bool:
        return "true"
    if annotation is int:
        return "4096"
    if annotation is float:
        return "2.5"
    return f"value-of-{name}"


def _fields(model: type[Settings]) -> dict[str, FieldInfo]:
    """The settings of a model (internal fields have no environment name)."""
    return {name: field for name, field in model.model_fields.items() if env_names(field)}


def _flags(model: type[Settings]) -> list[str]:
    argv: list[str] = []
    for name, field in _fields(model).items():
        argv += [flag(name)] if field.annotation is bool else [flag(name), _value(name, field)]
    return argv


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_and_environment_give_the_same_settings(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, model = COMMANDS[command]
    from_flags = from_args(model, _parse([*argv, *_flags(model)]))
    defaults = from_args(model, _parse(argv))
    for name, field in _fields(model).items():
        monkeypatch.setenv(env_names(field)[0], _value(name, field))
    from_env = from_args(model, _parse(argv))
    assert from_flags.model_dump() == from_env.model_dump()
    # every field was really set (a flag or variable that is not read would leave the default)
    changed = {n for n in _fields(model) if getattr(from_env, n) != getattr(defaults, n)}
    assert changed == set(_fields(model))


def test_a_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("ESCALATOR_PORT", "9000")
    settings = from_args(EngineSettings, _parse(["run", "--broker", "flag-broker:9092"]))
    assert settings.broker == "flag-broker:9092"
    assert settings.port == 9000


def test_broker_topics_host_and_port_have_the_same_names_in_every_service() -> None:
    shared = ("broker", "ticket_topic", "sla_topic", "dlq_topic", "host", "port", "log_format",
              "consumer_group")  # fmt: skip
    for name in shared:
        users = [m for m in SERVICES.values() if name in m.model_fields]
        assert len(users) >= 2, name
        assert len({tuple(env_names(m.model_fields[name])) for m in users}) == 1, name
    assert env_names(EngineSettings.model_fields["broker"])[0] == "KAFKA_BOOTSTRAP_SERVERS"
    assert env_names(EngineSettings.model_fields["ticket_topic"])[0] == "ESCALATOR_TICKET_TOPIC"
    # each service keeps its own default port
    assert EngineSettings().port == 6066
    assert ProjectionsSettings().port == 8080
    assert SERVICES["ingest"]().port == 8090  # type: ignore[attr-defined]


def test_old_names_still_work_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["run", "--input-topic", "in", "--output-topic", "out", "--web-port", "7"])
    settings = service_settings(EngineSettings, args)
    assert (settings.ticket_topic, settings.sla_topic, settings.port) == ("in", "out", 7)
    assert "--input-topic is deprecated; use --ticket-topic" in capsys.readouterr().err
    # a service logging JSON says it in a JSON line
    args = _parse(["run", "--web-host", "::1", "--log-format", "json"])
    assert service_settings(EngineSettings, args).host == "::1"
    (line,) = capsys.readouterr().err.splitlines()
    assert orjson.loads(line)["event"] == "--web-host is deprecated; use --host"
    # plain commands say it on stderr
    assert service_settings(QuerySettings, _parse(["query", "tickets", "--db", "x"])).db == "x"
    assert not capsys.readouterr().err
    monkeypatch.setenv("ESCALATOR_INPUT_TOPIC", "old-env")
    monkeypatch.setenv("ESCALATOR_WEB_PORT", "6100")
    monkeypatch.setenv("ESCALATOR_PROJECTIONS_DB", "old.sqlite3")
    assert EngineSettings().ticket_topic == "old-env"
    assert EngineSettings().port == 6100
    assert QuerySettings().db == "old.sqlite3"


def test_an_invalid_value_is_refused_naming_the_flag_or_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsError, match="--port"):
        from_args(EngineSettings, _parse(["run", "--port", "http"]))
    monkeypatch.setenv("ESCALATOR_PORT", "99999")
    with pytest.raises(SettingsError, match="ESCALATOR_PORT"):
        from_args(EngineSettings, _parse(["run"]))
    # the command exits 2 before touching a broker
    assert main(["run", "--broker", "127.0.0.1:9"]) == 2
    assert "ESCALATOR_PORT" in capsys.readouterr().err
    monkeypatch.delenv("ESCALATOR_PORT")
    assert main(["projections", "serve", "--log-format", "xml"]) == 2
    assert "--log-format" in capsys.readouterr().err


def test_postgres_local_prints_the_variable_projections_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = "postgresql://postgres@127.0.0.1:5999/escalator"
    monkeypatch.setenv(LocalPostgres.ENV_VAR, dsn)
    assert from_args(ProjectionsSettings, _parse(["projections", "serve"])).db == dsn
    assert from_args(QuerySettings, _parse(["query", "tickets"])).db == dsn


def test_the_documented_table_lists_every_setting() -> None:
    """`python -m deploy.settings` prints the table; docs/operations.md carries it verbatim."""
    page = (REPO / "docs" / "operations.md").read_text()
    assert markdown_table() in page
    for model in SERVICES.values():
        for name in _fields(model):
            assert f"`{flag(name)}`" in markdown_table()


def test_every_service_command_takes_its_settings_flags() -> None:
    for argv, model in COMMANDS.values():
        args = _parse([*argv, *_flags(model)])
        assert set(_fields(model)) <= set(vars(args)), argv


def test_values_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESCALATOR_PARTITIONS", "12")
    monkeypatch.setenv("ESCALATOR_AT_LEAST_ONCE", "true")
    settings: Any = from_args(EngineSettings, _parse(["run"]))
    assert settings.partitions == 12 and settings.at_least_once is True


def test_compose_uses_the_current_names() -> None:
    """The containers are configured with names the model reads, none of them deprecated."""
    import re

    current = {
        env_names(field)[0] for model in SERVICES.values() for field in _fields(model).values()
    }
    compose = (REPO / "deploy" / "docker-compose.yml").read_text()
    services = compose.split("\n  engine:", 1)[1]  # the broker's own settings come before
    used = set(re.findall(r"^\s+((?:ESCALATOR|KAFKA)_[A-Z_]+):", services, re.M))
    assert used and used <= current | set(SECRETS), used - current - set(SECRETS)


def test_secrets_are_never_flags_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.ingest.settings import IngestSettings

    monkeypatch.setenv("ESCALATOR_ZENDESK_SECRET", "zendesk-secret-value")
    monkeypatch.setenv("secrets", "not-read")  # a field's own name is not a variable
    settings = from_args(IngestSettings, _parse(["ingest"]))
    assert settings.secrets == {"zendesk": "zendesk-secret-value"}
    assert "zendesk-secret-value" not in repr(settings) + markdown_table()
    with pytest.raises(SystemExit):
        _parse(["ingest", "--secrets", "x"])
    for name in SECRETS:
        assert f"`{name}`" in markdown_table()
