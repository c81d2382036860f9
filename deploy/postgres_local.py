"""A throwaway real PostgreSQL server from the machine's PostgreSQL packages.

``initdb`` into a fresh folder, ``postgres`` on a free loopback port (its unix
socket in that folder too), a database created, a DSN handed back; stop removes
everything.  PostgreSQL refuses to run as root, so as root the server runs as the
unprivileged system user ``escalator`` (created when missing; ``nobody`` when it
cannot be created), and the folder is handed to that user.

Python API::

    with LocalPostgres() as pg:
        print(pg.dsn)  # postgresql://postgres@127.0.0.1:PORT/escalator

CLI::

    python -m deploy.postgres_local start [--port N] [--data-dir D] [--foreground]
    python -m deploy.postgres_local status [--data-dir D]
    python -m deploy.postgres_local stop [--data-dir D]

Binaries are searched in ``$ESCALATOR_PG_BIN``, ``/usr/lib/postgresql/<newest>/bin``,
``pg_config --bindir`` and PATH.  Missing server: run ``bash deploy/setup.sh``
(which runs ``apt-get install postgresql``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from base.errors import EscalatorError
from base.settings import DB_ENV
from deploy.local_service import (
    STATE_FILE,
    LocalService,
    cli_already_running,
    cli_run,
    cli_run_dir,
    cli_serve,
    cli_status,
    cli_stop,
    free_port,
    live_state,
    read_json,
)

DEFAULT_DATABASE = "escalator"
DEFAULT_SUPERUSER = "postgres"
SERVICE_USER = "escalator"
SETUP_HINT = "run `bash deploy/setup.sh` (it installs Debian's `postgresql` package)"


class PostgresLocalError(EscalatorError, RuntimeError):
    """The local PostgreSQL server could not be found, started or reached."""


# --------------------------------------------------------------------- binaries


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``."""
    candidates: list[Path] = []
    env = os.environ.get("ESCALATOR_PG_BIN")
    if env:
        candidates.append(Path(env))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if p.is_dir()), key=_version_key)
        candidates += [v / "bin" for v in reversed(versions)]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(found).resolve().parent)
    for cand in candidates:
        if all(os.access(cand / exe, os.X_OK) for exe in ("postgres", "initdb")):
            return cand
    raise PostgresLocalError(
        "no PostgreSQL server binaries (postgres, initdb) found in "
        f"{', '.join(str(c) for c in candidates) or '/usr/lib/postgresql/*/bin or PATH'}; "
        f"{SETUP_HINT}, or set ESCALATOR_PG_BIN to the folder holding them."
    )


# ------------------------------------------------------------------------- user


def _service_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                SERVICE_USER,
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return pwd.getpwnam("nobody")


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Fail clearly when the service user cannot reach ``path`` (e.g. under /root)."""
    for parent in reversed(path.parents):
        if not parent.exists():
            break
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            continue
        if not (st.st_mode & 0o001 or (st.st_gid == user.pw_gid and st.st_mode & 0o010)):
            raise PostgresLocalError(
                f"PostgreSQL runs as user {user.pw_name!r}, which cannot enter {parent}; "
                f"choose a data dir it can reach (e.g. under {tempfile.gettempdir()})"
            )


# ------------------------------------------------------------------------ helpers


def _child_setup(user: pwd.struct_passwd | None) -> Callable[[], None]:
    """Child-side set-up for the postmaster: own session, then drop to ``user``."""

    def setup() -> None:  # pragma: no cover - runs in the child
        os.setsid()
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    return setup


def _default_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"escalator-postgres-{os.getuid()}"


# ------------------------------------------------------------------------ server


class LocalPostgres(LocalService):
    """A PostgreSQL server in its own folder (see :class:`LocalService`).

    Not detached, the watchdog gives it a fast shutdown once this process is gone.
    """

    NAME = "PostgreSQL"
    NOUN = "server"
    ERROR = PostgresLocalError
    CMDLINE_MARK = "postgres"
    # fast shutdown, then immediate, then SIGKILL
    STOP_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL)
    ENV_VAR = DB_ENV  # what `projections serve` and `query` read
    ADDRESS_KEY = "dsn"
    LOG_NAME = "postgres.log"
    TEMP_PREFIX = "escalator-pg-"
    STOPPED = "stopped PostgreSQL pid {pid}"

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        database: str = DEFAULT_DATABASE,
        detached: bool = False,
        startup_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            port=port,
            data_dir=data_dir,
            detached=detached,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self.database = database
        self.settings = dict(settings or {})
        self.user: pwd.struct_passwd | None = None

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "socket"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    @property
    def address(self) -> str:
        return self.dsn

    def dsn_for(self, database: str) -> str:
        if self.port is None:
            raise PostgresLocalError("server not started")
        return f"postgresql://{DEFAULT_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run_as(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        user = self.user
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.run_dir,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            env=self._env(),
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"})
        if self.user:
            env.update({"HOME": str(self.run_dir), "USER": self.user.pw_name})
        return env

    def _start_once(self, retry: bool) -> LocalPostgres:
        """initdb (if new), launch, wait for connections, create the database."""
        started = time.monotonic()
        bindir = find_bindir()
        self.user = _service_user()
        if self.user and self._dir is not None:
            _check_reachable(self._dir, self.user)
        run_dir = self._prepare_dir()
        state = read_json(run_dir / STATE_FILE)
        data = run_dir / "data"
        self.socket_dir.mkdir(exist_ok=True)
        self.log_path.touch()
        if self.user:
            _chown_tree(run_dir, self.user)
        os.chmod(run_dir, 0o700)
        if not (data / "PG_VERSION").is_file():
            init = self._run_as(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    DEFAULT_SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                timeout=120,
            )
            if init.returncode != 0:
                raise PostgresLocalError(
                    f"initdb failed (exit {init.returncode}):\n{init.stdout}{init.stderr}"
                )
        previous_port = state.get("port") if state else None
        self.port = self.requested_port or (
            int(previous_port) if isinstance(previous_port, int) and not retry else free_port()
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "timezone": "UTC",
            "log_min_messages": "warning",
        }
        settings.update(self.settings)
        args = [str(bindir / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        self._launch(args, env=self._env(), preexec_fn=_child_setup(self.user))
        import psycopg

        self._wait_until(started, self._accepts_connections, (psycopg.OperationalError,), 0.1)
        self._create_database()
        return self._ready(started, database=self.database, throwaway=self._owns_dir)

    def _accepts_connections(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn_for("postgres"), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def _create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    @classmethod
    def probe(cls, state: Mapping[str, Any]) -> str:
        import psycopg

        try:
            with psycopg.connect(str(state["dsn"]), connect_timeout=3) as conn:
                row = conn.execute("SHOW server_version").fetchone()
        except psycopg.Error as exc:
            raise PostgresLocalError(str(exc)) from exc
        return f"PostgreSQL {row[0] if row else '?'}"


# ---------------------------------------------------------------------------- CLI


def _cmd_start(args: argparse.Namespace) -> int:
    run_dir = cli_run_dir(args.data_dir, _default_dir())
    state = live_state(run_dir)
    if state:
        return cli_already_running(LocalPostgres, state, run_dir)
    pg = LocalPostgres(
        port=args.port,
        data_dir=run_dir,
        database=args.database,
        detached=not args.foreground,
    )
    pg.start()
    return cli_serve(pg, "PostgreSQL", args.foreground)


def _cmd_status(args: argparse.Namespace) -> int:
    return cli_status(LocalPostgres, cli_run_dir(args.data_dir, _default_dir()))


def _cmd_stop(args: argparse.Namespace) -> int:
    run_dir = cli_run_dir(args.data_dir, _default_dir())
    return cli_stop(LocalPostgres, run_dir, 30.0, purge=not args.data_dir or args.purge)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.postgres_local",
        description="Run a throwaway PostgreSQL server from the machine's packages.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start the server (detached unless --foreground)")
    p_start.add_argument("--port", type=int, default=None)
    p_start.add_argument(
        "--data-dir", default=None, help=f"folder to use (default {_default_dir()}, throwaway)"
    )
    p_start.add_argument("--database", default=DEFAULT_DATABASE)
    p_start.add_argument("--foreground", action="store_true", help="run until Ctrl-C")
    p_status = sub.add_parser("status")
    p_status.add_argument("--data-dir", default=None)
    p_stop = sub.add_parser("stop", help="stop; the default folder is removed")
    p_stop.add_argument("--data-dir", default=None)
    p_stop.add_argument("--purge", action="store_true", help="also remove a given --data-dir")
    commands = {"start": _cmd_start, "status": _cmd_status, "stop": _cmd_stop}
    return cli_run(commands, parser.parse_args(argv), PostgresLocalError)


if __name__ == "__main__":
    sys.exit(main())
