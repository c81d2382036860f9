"""A real single-node Apache Kafka broker (KRaft mode) without Docker.

The broker is the genuine Apache Kafka server: its jars are resolved from Maven
Central with Maven (``deploy/kafka/pom.xml``) into a cache folder, and it runs as
``java -cp 'libs/*' kafka.Kafka server.properties`` on loopback ports chosen at
start.  Requires Java 17+ and, for the first resolve only, Maven.

Kafka version: 4.1.1 (override with ``ESCALATOR_KAFKA_VERSION``).  Checked with
aiokafka 0.14.0: admin client, plain and transactional producers (commit and abort),
transactional offset commits and read_committed consumers in a group all work against
it (tests/test_infra_kafka.py), so no fall-back to 3.9 is needed.

Python API::

    with LocalKafka() as kafka:
        print(kafka.bootstrap_servers)  # "127.0.0.1:PORT"

CLI::

    python -m deploy.kafka_local fetch               # resolve the jars (idempotent)
    python -m deploy.kafka_local start [--port N] [--data-dir D] [--foreground]
    python -m deploy.kafka_local status [--data-dir D]
    python -m deploy.kafka_local stop [--data-dir D] [--purge]

Environment: ``ESCALATOR_KAFKA_HOME`` (cache folder, default
``~/.cache/escalator/kafka-<version>``), ``ESCALATOR_KAFKA_VERSION``,
``ESCALATOR_KAFKA_HEAP`` (default ``512m``), ``ESCALATOR_KAFKA_CDS=0`` (no class-data
sharing archive), ``JAVA_HOME``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from base.errors import EscalatorError
from deploy.local_service import (
    LocalService,
    clear_state,
    cli_already_running,
    cli_run,
    cli_run_dir,
    cli_serve,
    cli_status,
    cli_stop,
    free_port,
    is_ours,
    live_state,
    read_json,
    write_json,
)

DEFAULT_KAFKA_VERSION = "4.1.1"
DEFAULT_HEAP = "512m"
READINESS_TOPIC = "escalator-readiness"
POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
PORTS_FILE = "ports.json"  # kept after stop, so a restart reuses the same ports
_COMPLETE_MARKER = ".resolved"

_T = TypeVar("_T")


class KafkaLocalError(EscalatorError, RuntimeError):
    """The local broker could not be resolved, started or reached."""


# --------------------------------------------------------------------------- paths


def kafka_version() -> str:
    return os.environ.get("ESCALATOR_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def kafka_home(version: str | None = None) -> Path:
    env = os.environ.get("ESCALATOR_KAFKA_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "escalator" / f"kafka-{version or kafka_version()}"


def default_run_dir(version: str | None = None) -> Path:
    """Where the CLI keeps a long-running broker's data, config, log and state."""
    return kafka_home(version) / "run"


# ------------------------------------------------------------------------ resolve


@dataclass(frozen=True)
class Resolved:
    libs: Path
    version: str
    seconds: float
    cached: bool
    jar_count: int


def _is_resolved(libs: Path, version: str) -> bool:
    marker = libs / _COMPLETE_MARKER
    return (
        marker.is_file()
        and marker.read_text().strip() == version
        and (libs / f"kafka_2.13-{version}.jar").is_file()
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_jars(version: str | None = None, home: Path | None = None) -> Resolved:
    """Resolve kafka_2.13 and its runtime dependencies into ``<home>/libs``.

    Idempotent: returns at once when the folder already holds a complete resolve.
    Safe against concurrent callers (file lock) and interrupted runs (the jars are
    copied into a temporary folder which is renamed when complete).
    """
    version = version or kafka_version()
    home = home or kafka_home(version)
    libs = home / "libs"
    started = time.monotonic()
    if _is_resolved(libs, version):
        return Resolved(libs, version, time.monotonic() - started, True, _jar_count(libs))
    with _file_lock(home / ".resolve.lock"):
        if _is_resolved(libs, version):
            return Resolved(libs, version, time.monotonic() - started, True, _jar_count(libs))
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError(
                "Maven (mvn) is needed once to resolve the Kafka jars and was not found on "
                "PATH; run `bash deploy/setup.sh` or install Maven (apt-get install maven)."
            )
        if not POM_PATH.is_file():
            raise KafkaLocalError(f"missing {POM_PATH}")
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=home))
        cmd = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
            f"-Dkafka.version={version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (tmp / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            errors = [line for line in lines if line.startswith("[ERROR]") and line[7:].strip()]
            tail = "\n".join((errors or lines)[:8])
            raise KafkaLocalError(
                f"resolving org.apache.kafka:kafka_2.13:{version} with Maven failed "
                f"(exit {proc.returncode}):\n{tail}"
            )
        (tmp / _COMPLETE_MARKER).write_text(version + "\n")
        if libs.exists():
            shutil.rmtree(libs)
        tmp.rename(libs)
    return Resolved(libs, version, time.monotonic() - started, False, _jar_count(libs))


def _jar_count(libs: Path) -> int:
    return sum(1 for _ in libs.glob("*.jar"))


# --------------------------------------------------------------------------- java


def find_java() -> str:
    """Path of a Java 17+ ``java``: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    candidates: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    for cand in candidates:
        if not os.access(cand, os.X_OK):
            continue
        major = _java_major(cand)
        if major is not None and major >= 17:
            return cand
    raise KafkaLocalError(
        "Kafka 4 needs Java 17 or newer and none was found (JAVA_HOME or java on PATH); "
        "install it, e.g. `apt-get install --no-install-recommends openjdk-17-jre-headless`."
    )


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_x"
        major = int(match.group(2))
    return major


# ----------------------------------------------------------- class-data sharing

# A dynamic AppCDS archive of the broker's classes halves the JVM's start-up (4.4 s
# to 2.3 s measured on a loaded 2-core machine).  The first broker of a given java
# and jar set writes the archive when it exits; later ones map it.  A mismatched or
# broken archive only makes the JVM print a warning and start without it.


def _classpath(libs: Path) -> str:
    """Explicit, sorted jar list: a CDS archive needs the same class path each time."""
    return os.pathsep.join(str(jar) for jar in sorted(libs.glob("*.jar")))


def _cds_archive(home: Path, java: str, classpath: str) -> Path:
    real = Path(java).resolve()
    try:
        stamp = str(real.stat().st_mtime_ns)
    except OSError:
        stamp = ""
    key = hashlib.sha256(f"{real}|{stamp}|{classpath}".encode()).hexdigest()[:16]
    return home / "cds" / f"kafka-{key}.jsa"


def _adopt_cds_dumps(final: Path) -> None:
    """Turn a finished dump (its JVM gone) into the archive; drop spare dumps."""
    cds_dir = final.parent
    if not cds_dir.is_dir():
        return
    for dump in cds_dir.glob(f"{final.name}.tmp-*"):
        if _file_in_use_by_a_process(dump):
            continue
        try:
            if not final.exists() and dump.stat().st_size > 0:
                dump.replace(final)
            else:
                dump.unlink()
        except OSError:
            pass


def _file_in_use_by_a_process(path: Path) -> bool:
    needle = str(path).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _adopt_cds_dumps_from(options: list[str]) -> None:
    for opt in options:
        if opt.startswith("-XX:ArchiveClassesAtExit="):
            dump = Path(opt.split("=", 1)[1])
            _adopt_cds_dumps(dump.with_name(dump.name.split(".tmp-")[0]))


def _cds_options(home: Path, java: str, classpath: str) -> list[str]:
    if os.environ.get("ESCALATOR_KAFKA_CDS", "1") == "0":
        return []
    final = _cds_archive(home, java, classpath)
    _adopt_cds_dumps(final)
    if final.is_file():
        return [f"-XX:SharedArchiveFile={final}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    final.parent.mkdir(parents=True, exist_ok=True)
    dump = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:12]}")
    return [f"-XX:ArchiveClassesAtExit={dump}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]


# ------------------------------------------------------------------------ helpers


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the JVM does: connections in TIME_WAIT do not keep a listener off
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_coroutine_sync(coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
    """Run a coroutine to completion in a private event loop on a helper thread.

    Works whether or not the caller is itself inside a running event loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-local") as pool:
        return pool.submit(asyncio.run, coro).result(timeout=timeout)


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Never starting with "-", which the storage tool's argument parser would take for
    an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Child-side: get SIGTERM when the parent (thread) that started us dies."""
    os.setsid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


# ------------------------------------------------------------------ broker checks


async def _describe_cluster(bootstrap: str, timeout_ms: int = 5000) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=timeout_ms,
        client_id="escalator-kafka-local",
    )
    await admin.start()
    try:
        cluster: dict[str, Any] = await admin.describe_cluster()
    finally:
        await admin.close()
    return cluster


async def _warm_up(bootstrap: str) -> None:
    """Exercise what the engine relies on so that the first real client is fast.

    Creates the readiness topic, commits one record through a transactional
    producer (creates ``__transaction_state``) and commits an offset for a consumer
    group reading with read_committed (creates ``__consumer_offsets``).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(READINESS_TOPIC, 1, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"escalator-readiness-{uuid.uuid4().hex[:12]}",
        request_timeout_ms=15000,
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(READINESS_TOPIC, b"ready")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        READINESS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id="escalator-readiness",
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            if any(batches.values()):
                await consumer.commit()
                return
        raise KafkaLocalError("warm-up consumer read nothing from the readiness topic in 30 s")
    finally:
        await consumer.stop()


def check_broker(bootstrap: str, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the broker for its cluster description (a real Kafka request)."""
    return run_coroutine_sync(_describe_cluster(bootstrap, int(timeout * 1000)), timeout + 5)


# ------------------------------------------------------------------- test helpers


def unique_name(prefix: str) -> str:
    """``<prefix>-<12 hex>``, unique per call, in the characters topic names allow."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip("-") or "t"
    return f"{clean[:180]}-{uuid.uuid4().hex[:12]}"


class TopicFactory:
    """Creates uniquely named topics on the test broker; deletes them afterwards."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.created: list[str] = []

    def __call__(
        self,
        name_prefix: str = "",
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> str:
        """Create a topic (blocking; usable from sync and async tests); return its name."""
        return run_coroutine_sync(self.create(name_prefix, partitions, config), 90)

    async def create(
        self,
        name_prefix: str = "",
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> str:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        name = unique_name(f"{self.prefix}-{name_prefix}" if name_prefix else self.prefix)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, partitions, 1, topic_configs=dict(config or {}))]
            )
            for _topic, code, message in _topic_errors(response):
                if code:
                    raise RuntimeError(f"creating topic {name} failed: {code} {message}")
            self.created.append(name)
            deadline = time.monotonic() + 30
            while True:  # until every partition has a leader
                (meta,) = await admin.describe_topics([name])
                parts = meta.get("partitions") or []
                if (
                    meta.get("error_code") == 0
                    and len(parts) == partitions
                    and all(p.get("leader", -1) >= 0 for p in parts)
                ):
                    return name
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {name} has no leaders after 30 s: {meta!r}")
                await asyncio.sleep(0.1)
        finally:
            await admin.close()

    async def delete_all(self) -> None:
        if not self.created:
            return
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            await admin.delete_topics(self.created)
        finally:
            await admin.close()
        self.created.clear()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out: list[tuple[str, int, str | None]] = []
    for item in getattr(response, "topic_errors", []):
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((str(topic), int(code), message))
    return out


# ------------------------------------------------------------------------- config


LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def server_properties(
    *, port: int, controller_port: int, log_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "24",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "num.recovery.threads.per.data.dir": "1",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    props.update(extra or {})
    return props


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    lines = ["# written by deploy/kafka_local.py"]
    lines += [f"{key}={value}" for key, value in props.items()]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------- broker


class LocalKafka(LocalService):
    """A single-node KRaft Kafka broker running as a child ``java`` process.

    See :class:`LocalService`.  With a ``data_dir`` a later start also reuses the
    ports when they are still free.  Not detached, the broker also gets SIGTERM
    when the thread that started it dies, so a crashed test run leaves no broker
    behind.
    """

    NAME = "Kafka"
    NOUN = "broker"
    ERROR = KafkaLocalError
    CMDLINE_MARK = "kafka.Kafka"
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGKILL)
    ENV_VAR = "KAFKA_BOOTSTRAP_SERVERS"
    ADDRESS_KEY = "bootstrap_servers"
    LOG_NAME = "broker.log"
    TEMP_PREFIX = "escalator-kafka-"
    STOPPED = "stopped broker pid {pid} in {seconds:.1f} s"

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        version: str | None = None,
        home: str | os.PathLike[str] | None = None,
        heap: str | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        detached: bool = False,
        warm_up: bool = True,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            port=port,
            data_dir=data_dir,
            detached=detached,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self.version = version or kafka_version()
        self.home = Path(home) if home else kafka_home(self.version)
        self.heap = heap or os.environ.get("ESCALATOR_KAFKA_HEAP", DEFAULT_HEAP)
        self.warm_up = warm_up
        self.extra_config = dict(extra_config or {})
        self._requested_controller_port = controller_port
        self.controller_port: int | None = None
        self.resolved: Resolved | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise KafkaLocalError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return self.bootstrap_servers

    def _start_once(self, retry: bool) -> LocalKafka:
        """Resolve (if needed), format (if new), launch, wait until it serves."""
        started = time.monotonic()
        self.resolved = resolve_jars(self.version, self.home)
        java = find_java()
        if retry:  # the last ports clashed: pick new ones
            self._requested_controller_port = None
            with contextlib.suppress(OSError):
                (self.run_dir / PORTS_FILE).unlink()
        run_dir = self._prepare_dir()
        kafka_data = run_dir / "kafka-data"
        previous = read_json(run_dir / PORTS_FILE)
        self.port = self._pick_port(self.requested_port, previous, "port")
        self.controller_port = self._pick_port(
            self._requested_controller_port, previous, "controller_port", avoid=self.port
        )
        props = server_properties(
            port=self.port,
            controller_port=self.controller_port,
            log_dir=kafka_data,
            extra=self.extra_config,
        )
        _write_properties(run_dir / "server.properties", props)
        write_json(
            run_dir / PORTS_FILE, {"port": self.port, "controller_port": self.controller_port}
        )
        (run_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        classpath = _classpath(self.resolved.libs)
        cds = _cds_options(self.home, java, classpath)
        jvm = [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile=file:{run_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={run_dir / 'logs'}",
            "-cp",
            classpath,
        ]
        if not (kafka_data / "meta.properties").is_file():
            fmt = subprocess.run(
                [
                    *jvm,
                    *(o for o in cds if o.startswith("-XX:SharedArchiveFile")),
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    _new_cluster_id(),
                    "-c",
                    str(run_dir / "server.properties"),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if fmt.returncode != 0:
                raise KafkaLocalError(
                    f"kafka storage format failed (exit {fmt.returncode}):\n"
                    + "\n".join((fmt.stdout + fmt.stderr).strip().splitlines()[-20:])
                )
        self._launch(
            [*jvm, *cds, "kafka.Kafka", str(run_dir / "server.properties")],
            start_new_session=self.detached,
            preexec_fn=None if self.detached else _set_pdeathsig,
        )
        self._wait_ready(started)
        return self._ready(started, controller_port=self.controller_port, version=self.version)

    def _pick_port(
        self,
        requested: int | None,
        previous: Mapping[str, Any] | None,
        key: str,
        avoid: int | None = None,
    ) -> int:
        if requested:
            if not _port_is_free(requested):
                raise KafkaLocalError(f"port {requested} on 127.0.0.1 is in use")
            return requested
        if previous and isinstance(previous.get(key), int):
            old = int(previous[key])
            if old != avoid and _port_is_free(old):
                return old
        while True:
            port = free_port()
            if port != avoid:
                return port

    def _serves(self) -> bool:
        assert self.port is not None
        if not _tcp_open("127.0.0.1", self.port):
            return False
        cluster = check_broker(self.bootstrap_servers, timeout=5.0)
        if cluster.get("brokers") and cluster.get("controller_id", -1) >= 0:
            return True
        raise KafkaLocalError(f"cluster not ready: {cluster!r}")

    def _wait_ready(self, started: float) -> None:
        # aiokafka raises many kinds of errors while the broker boots
        self._wait_until(started, self._serves, (Exception,), 0.25)
        deadline = started + self.startup_timeout
        if self.warm_up:
            remaining = max(10.0, deadline - time.monotonic())
            # The first group-coordinator look-up fails while __consumer_offsets is
            # being created; aiokafka logs that at ERROR level and retries. Quiet.
            aiokafka_log = logging.getLogger("aiokafka")
            level = aiokafka_log.level
            aiokafka_log.setLevel(logging.CRITICAL)
            try:
                run_coroutine_sync(_warm_up(self.bootstrap_servers), remaining)
            finally:
                aiokafka_log.setLevel(level)

    @classmethod
    def _stopped(cls, args: list[str]) -> None:
        _adopt_cds_dumps_from(args)

    @classmethod
    def probe(cls, state: Mapping[str, Any]) -> str:
        try:
            cluster = check_broker(str(state["bootstrap_servers"]), timeout=5.0)
        except Exception as exc:
            raise KafkaLocalError(repr(exc)) from exc
        return f"Kafka {state.get('version')}, cluster {cluster.get('cluster_id')}"


# ---------------------------------------------------------------------------- CLI


def _cmd_fetch(args: argparse.Namespace) -> int:
    res = resolve_jars(args.version)
    if res.cached:
        print(f"Kafka {res.version}: {res.jar_count} jars already resolved in {res.libs}")
    else:
        print(
            f"Kafka {res.version}: resolved {res.jar_count} jars into {res.libs} "
            f"in {res.seconds:.1f} s"
        )
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    run_dir = cli_run_dir(args.data_dir, default_run_dir(args.version))
    state = live_state(run_dir)
    if state and is_ours(LocalKafka, int(state["pid"]), run_dir):
        if args.port and int(state["port"]) != args.port:
            print(
                f"a broker already runs from {run_dir} on port {state['port']}; "
                "stop it first to change the port",
                file=sys.stderr,
            )
            return 1
        return cli_already_running(LocalKafka, state, run_dir)
    clear_state(run_dir)  # stale: from a broker that is gone
    resolve_started = time.monotonic()
    res = resolve_jars(args.version)
    if not res.cached:
        print(
            f"resolved {res.jar_count} Kafka {res.version} jars in "
            f"{time.monotonic() - resolve_started:.1f} s",
            file=sys.stderr,
        )
    kafka = LocalKafka(
        port=args.port,
        data_dir=run_dir,
        version=args.version,
        detached=not args.foreground,
        startup_timeout=args.timeout,
    )
    kafka.start()
    return cli_serve(kafka, f"Kafka {kafka.version}", args.foreground)


def _cmd_status(args: argparse.Namespace) -> int:
    return cli_status(LocalKafka, cli_run_dir(args.data_dir, default_run_dir(args.version)))


def _cmd_stop(args: argparse.Namespace) -> int:
    run_dir = cli_run_dir(args.data_dir, default_run_dir(args.version))
    return cli_stop(LocalKafka, run_dir, args.timeout, purge=args.purge)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.kafka_local",
        description="Run a real single-node Apache Kafka (KRaft) broker without Docker.",
    )
    parser.add_argument(
        "--version", default=None, help=f"Kafka version (default {kafka_version()})"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the Kafka jars with Maven (idempotent)")
    p_start = sub.add_parser("start", help="start the broker (detached unless --foreground)")
    p_start.add_argument("--port", type=int, default=None, help="broker port (default: free)")
    p_start.add_argument("--data-dir", default=None, help="data/config/log folder")
    p_start.add_argument("--foreground", action="store_true", help="run until Ctrl-C")
    p_start.add_argument("--timeout", type=float, default=120.0, help="start-up timeout (s)")
    p_status = sub.add_parser("status", help="is the broker running and answering?")
    p_status.add_argument("--data-dir", default=None)
    p_stop = sub.add_parser("stop", help="stop the broker (SIGTERM, SIGKILL after timeout)")
    p_stop.add_argument("--data-dir", default=None)
    p_stop.add_argument("--timeout", type=float, default=30.0)
    p_stop.add_argument("--purge", action="store_true", help="also delete the data folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    commands = {
        "fetch": _cmd_fetch,
        "start": _cmd_start,
        "status": _cmd_status,
        "stop": _cmd_stop,
    }
    return cli_run(commands, args, KafkaLocalError)


if __name__ == "__main__":
    sys.exit(main())
