"""Shared test infrastructure: a real Kafka broker and a real PostgreSQL server.

Fixtures (session-scoped unless said otherwise):

``kafka_bootstrap``  "host:port" of a real broker, chosen in this order:
    1. env ``KAFKA_BOOTSTRAP_SERVERS`` (a broker you run yourself, e.g. started
       with ``python -m deploy.kafka_local start``);
    2. testcontainers' Kafka module, when a Docker engine answers;
    3. the local broker from ``deploy/kafka_local.py``, started once for the
       session and stopped at its end.
    When none can be had, the tests that use it FAIL (never skip).

``postgres_dsn``  ``postgresql://`` DSN of a real server: env
    ``ESCALATOR_TEST_POSTGRES_DSN``, else a throwaway server from
    ``deploy/postgres_local.py``.  Same fail-not-skip rule.

``kafka_topics`` (function-scoped)  factory for uniquely named topics, deleted
    after the test::

        def test_x(kafka_topics):                     # sync or async test
            name = kafka_topics("tickets", partitions=3)

        async def test_y(kafka_topics):
            name = await kafka_topics.create("tickets", partitions=3)

Helpers to import in tests: ``from deploy.kafka_local import TopicFactory, unique_name``
(``unique_name(prefix)``: a name no other test of the session uses).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import pytest

from deploy.kafka_local import (
    KafkaLocalError,
    LocalKafka,
    TopicFactory,
    run_coroutine_sync,
)
from deploy.postgres_local import LocalPostgres, PostgresLocalError

DEFAULT_TEST_KAFKA_IMAGE = "confluentinc/cp-kafka:8.1.0"  # Apache Kafka 4.1 (KRaft only)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a stale build: the SLA core runs compiled (setup.py), not from its .py.

    After editing a compiled module, `pip install -e .` (or `bash deploy/setup.sh`) rebuilds
    it. An install made with ESCALATOR_PURE_PYTHON=1 (recorded by setup.py) tests the plain
    source instead.
    """
    problems = compiled_core_problems()
    if problems:
        pytest.exit("compiled SLA core: " + "; ".join(problems), returncode=3)


def compiled_core_problems() -> list[str]:
    root = Path(__file__).resolve().parent.parent
    with (root / "pyproject.toml").open("rb") as file:
        sources = tomllib.load(file)["tool"]["escalator"]["compiled"]
    manifest_path = root / ".compiled-core.json"
    manifest = orjson.loads(manifest_path.read_bytes()) if manifest_path.exists() else {}
    pure = bool(manifest.get("pure")) or os.environ.get("ESCALATOR_PURE_PYTHON", "") == "1"
    built = manifest.get("sources", {})
    problems = []
    for source in sources:
        module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
        loaded = Path(module.__file__ or "")
        if pure:
            if loaded.suffix != ".py":
                problems.append(
                    f"{source}: installed without compiling, but {loaded.name} is loaded"
                )
        elif loaded.suffix != ".so":
            problems.append(f"{source} is not compiled: run `pip install -e .`")
        elif built.get(source) != hashlib.sha256((root / source).read_bytes()).hexdigest():
            problems.append(f"{source} changed after it was compiled: run `pip install -e .`")
    return problems


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# ------------------------------------------------------------------------ docker


def docker_engine_answers(timeout: float = 1.0) -> bool:
    """True when a Docker engine answers ``GET /_ping`` within ``timeout`` seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
    try:
        if host.startswith("unix://"):
            path = host[len("unix://") :]
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(path)
        elif host.startswith("tcp://"):
            parsed = urlparse(host)
            sock = socket.create_connection(
                (parsed.hostname or "localhost", parsed.port or 2375), timeout=timeout
            )
            sock.settimeout(timeout)
        else:
            return False
        with sock:
            sock.sendall(request)
            reply = sock.recv(256)
    except OSError:
        return False
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _start_testcontainers_kafka() -> Any:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    image = os.environ.get("ESCALATOR_TEST_KAFKA_IMAGE", DEFAULT_TEST_KAFKA_IMAGE)
    container = (
        KafkaContainer(image)
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")
    )
    container.start(timeout=120)
    return container


# ------------------------------------------------------------------------- kafka


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        yield env
        return
    problems: list[str] = []
    if docker_engine_answers():
        try:
            container = _start_testcontainers_kafka()
        except Exception as exc:  # fall through to the local broker
            problems.append(f"testcontainers Kafka: {exc!r}")
        else:
            try:
                yield str(container.get_bootstrap_server())
            finally:
                container.stop()
            return
    else:
        problems.append("no Docker engine answers (testcontainers not used)")
    broker = LocalKafka()
    try:
        broker.start()
    except (KafkaLocalError, OSError) as exc:
        problems.append(f"local broker (deploy/kafka_local.py): {exc}")
        pytest.fail(
            "No Kafka broker for the tests"
            + (" (CI=true)" if in_ci() else "")
            + ":\n  - "
            + "\n  - ".join(problems)
            + "\nRun `bash deploy/setup.sh` (Java 17 + Maven resolve the Kafka jars), or set "
            "KAFKA_BOOTSTRAP_SERVERS to a running broker.",
            pytrace=False,
        )
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def kafka_topics(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    prefix = re.sub(r"^test_", "", request.node.name)[:60]
    factory = TopicFactory(kafka_bootstrap, prefix)
    yield factory
    with contextlib.suppress(Exception):
        run_coroutine_sync(factory.delete_all(), 60)


# ---------------------------------------------------------------------- postgres


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    env = os.environ.get("ESCALATOR_TEST_POSTGRES_DSN", "").strip()
    if env:
        yield env
        return
    server = LocalPostgres()
    try:
        server.start()
    except (PostgresLocalError, OSError) as exc:
        pytest.fail(
            "No PostgreSQL server for the tests"
            + (" (CI=true)" if in_ci() else "")
            + f": {exc}\nRun `bash deploy/setup.sh`, or set ESCALATOR_TEST_POSTGRES_DSN.",
            pytrace=False,
        )
    try:
        yield server.dsn
    finally:
        server.stop()
