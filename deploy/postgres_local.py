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
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

DEFAULT_DATABASE = "escalator"
DEFAULT_SUPERUSER = "postgres"
SERVICE_USER = "escalator"
STATE_FILE = "state.json"
SETUP_HINT = "run `bash deploy/setup.sh` (it installs Debian's `postgresql` package)"


class PostgresLocalError(RuntimeError):
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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _child_setup(user: pwd.struct_passwd | None) -> Callable[[], None]:
    """Child-side set-up for the postmaster: own session, then drop to ``user``."""

    def setup() -> None:  # pragma: no cover - runs in the child
        os.setsid()
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    return setup


def _spawn_watchdog(postmaster: int, remove_dir: Path | None) -> subprocess.Popen[bytes]:
    """Stop the postmaster (and remove its throwaway folder) once this process is gone.

    A parent-death signal cannot be used here: the kernel drops it when a process
    that changed its user executes a program.  So a small shell loop watches both
    pids and, when this process dies first (e.g. a killed test run), sends the
    postmaster SIGINT (fast shutdown), then SIGQUIT after 30 s.
    """
    parent = os.getpid()
    cleanup = f"rm -rf -- {shlex.quote(str(remove_dir))}" if remove_dir else ":"
    script = f"""
while kill -0 {parent} 2>/dev/null && kill -0 {postmaster} 2>/dev/null; do sleep 1; done
kill -0 {parent} 2>/dev/null && exit 0
if kill -0 {postmaster} 2>/dev/null; then
  kill -INT {postmaster} 2>/dev/null
  i=0
  while kill -0 {postmaster} 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
  kill -QUIT {postmaster} 2>/dev/null
  sleep 1
fi
{cleanup}
"""
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop_postmaster(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""

    def alive() -> bool:
        if proc is not None:
            return proc.poll() is None
        return _pid_alive(pid)

    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        if not alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive():
            time.sleep(0.05)


def _default_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"escalator-postgres-{os.getuid()}"


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(run_dir / STATE_FILE)


# ------------------------------------------------------------------------ server


class LocalPostgres:
    """A PostgreSQL server in its own folder, for tests and local runs.

    ``data_dir`` None: a temporary folder, removed by :meth:`stop`.  A given
    ``data_dir`` is kept (and reused by the next start).  ``detached`` leaves the
    server running after this Python process exits (the CLI's ``start``);
    otherwise it gets SIGTERM when the thread that started it dies.
    """

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
        self.requested_port = port
        self.database = database
        self.detached = detached
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.settings = dict(settings or {})
        self._owns_dir = data_dir is None
        self._dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self.start_seconds: float | None = None
        self.user: pwd.struct_passwd | None = None

    @property
    def run_dir(self) -> Path:
        if self._dir is None:
            raise PostgresLocalError("server not started")
        return self._dir

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "socket"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "postgres.log"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

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

    def start(self) -> LocalPostgres:
        """initdb (if new), launch, wait for connections, create the database."""
        if self._proc is not None:
            return self
        attempts = 1 if self.requested_port else 3
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(fresh_port=attempt > 1)
            except PostgresLocalError as exc:
                # The free port picked here may be taken before postgres binds it.
                self._stop_process()
                if attempt == attempts or "already in use" not in str(exc):
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, fresh_port: bool) -> LocalPostgres:
        started = time.monotonic()
        bindir = find_bindir()
        self.user = _service_user()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="escalator-pg-"))
        run_dir = self._dir
        if self.user:
            _check_reachable(run_dir, self.user)
        run_dir.mkdir(parents=True, exist_ok=True)
        state = _read_state(run_dir)
        if state and _pid_alive(int(state.get("pid", 0))):
            raise PostgresLocalError(
                f"a PostgreSQL server (pid {state['pid']}) already runs from {run_dir}"
            )
        data = run_dir / "data"
        self.socket_dir.mkdir(exist_ok=True)
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
            int(previous_port) if isinstance(previous_port, int) and not fresh_port else free_port()
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
        user = self.user
        with self.log_path.open("ab") as logf:
            if user:
                os.chown(self.log_path, user.pw_uid, user.pw_gid)
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=run_dir,
                env=self._env(),
                preexec_fn=_child_setup(user),
            )
        self.pid = self._proc.pid
        if not self.detached:
            self._watchdog = _spawn_watchdog(self.pid, run_dir if self._owns_dir else None)
        self._wait_ready(started)
        self._create_database()
        self.start_seconds = time.monotonic() - started
        _write_state(
            run_dir,
            {
                "pid": self.pid,
                "port": self.port,
                "dsn": self.dsn,
                "database": self.database,
                "run_dir": str(run_dir),
                "log": str(self.log_path),
                "throwaway": self._owns_dir,
                "started_at": time.time(),
            },
        )
        return self

    def _wait_ready(self, started: float) -> None:
        import psycopg

        assert self._proc is not None
        deadline = started + self.startup_timeout
        last: BaseException | None = None
        while True:
            if self._proc.poll() is not None:
                raise PostgresLocalError(
                    f"postgres exited with code {self._proc.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PostgresLocalError(
                    f"postgres did not accept connections within {self.startup_timeout:.0f} s "
                    f"(last error: {last!r}):\n{self.log_tail()}"
                )
            try:
                with psycopg.connect(self.dsn_for("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
            time.sleep(0.1)

    def _create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Fast shutdown; remove the folder when it is a throwaway one."""
        self._stop_process()
        if self._dir is not None:
            with contextlib.suppress(OSError):
                (self._dir / STATE_FILE).unlink()
            if self._owns_dir:
                shutil.rmtree(self._dir, ignore_errors=True)

    def _stop_process(self) -> None:
        if self._proc is not None:
            _stop_postmaster(self._proc.pid, self.stop_timeout, self._proc)
            self._proc = None
        if self._watchdog is not None:
            try:  # it sees the postmaster gone within a second and exits
                self._watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait(5)
            self._watchdog = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------- CLI


def _is_our_postmaster(pid: int, run_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "postgres" in cmdline and str(run_dir) in cmdline


def _cmd_start(args: argparse.Namespace) -> int:
    run_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else _default_dir()
    state = _read_state(run_dir)
    if state and _pid_alive(int(state.get("pid", 0))):
        print(f"already running (pid {state['pid']}, data {run_dir})", file=sys.stderr)
        print(f"ESCALATOR_POSTGRES_DSN={state['dsn']}")
        return 0
    pg = LocalPostgres(
        port=args.port,
        data_dir=run_dir,
        database=args.database,
        detached=not args.foreground,
    )
    pg.start()
    print(
        f"PostgreSQL ready in {pg.start_seconds or 0.0:.1f} s "
        f"(pid {pg.pid}, data {run_dir}, log {pg.log_path})",
        file=sys.stderr,
    )
    print(f"ESCALATOR_POSTGRES_DSN={pg.dsn}", flush=True)
    if not args.foreground:
        return 0
    stop_requested = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    proc = pg._proc
    try:
        while not stop_requested and proc is not None and proc.poll() is None:
            time.sleep(0.5)
    finally:
        pg.stop()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    run_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else _default_dir()
    state = _read_state(run_dir)
    if not state or not _pid_alive(int(state.get("pid", 0))):
        print(f"not running (data {run_dir})")
        return 1
    import psycopg

    try:
        with psycopg.connect(str(state["dsn"]), connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        print(f"pid {state['pid']} alive but the server does not answer: {exc}")
        return 1
    print(f"running: pid {state['pid']}, PostgreSQL {row[0] if row else '?'}, data {run_dir}")
    print(f"ESCALATOR_POSTGRES_DSN={state['dsn']}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    run_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else _default_dir()
    state = _read_state(run_dir)
    if state and _pid_alive(int(state.get("pid", 0))):
        pid = int(state["pid"])
        if not _is_our_postmaster(pid, run_dir):
            print(f"pid {pid} is not the server of {run_dir}; not touching it", file=sys.stderr)
            return 1
        _stop_postmaster(pid, 30.0, None)
        print(f"stopped PostgreSQL pid {pid}")
    else:
        print("not running")
    with contextlib.suppress(OSError):
        (run_dir / STATE_FILE).unlink()
    if (not args.data_dir or args.purge) and run_dir.exists():
        shutil.rmtree(run_dir)
        print(f"removed {run_dir}")
    return 0


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
    args = parser.parse_args(argv)
    commands = {"start": _cmd_start, "status": _cmd_status, "stop": _cmd_stop}
    try:
        return commands[args.command](args)
    except PostgresLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
