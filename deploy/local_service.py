"""A throwaway local server process: state file, start/stop, watchdog, CLI plumbing.

What ``deploy/kafka_local.py`` and ``deploy/postgres_local.py`` share: a server
runs as a child process from its own folder, which holds its log and a
``state.json`` naming its pid and address, so that a later CLI call (``status``,
``stop``) finds it.  A subclass of :class:`LocalService` supplies only how to
launch its server and check that it answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from aiohttp import web

STATE_FILE = "state.json"


# ------------------------------------------------------------------------ helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (it may be taken before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def serve_app(app: web.Application, port: int | None = None) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1, on `port` or a free one: the local receivers' one start-up.
    Returns the runner (`cleanup()` stops it) and the port."""
    from aiohttp import web  # only the receivers need it

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write through a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def live_state(run_dir: Path) -> dict[str, Any] | None:
    """The state file of ``run_dir`` while the pid it names is still alive."""
    state = read_json(run_dir / STATE_FILE)
    return state if state and pid_alive(int(state.get("pid", 0))) else None


def clear_state(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / STATE_FILE).unlink()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie is dead for our purposes."""
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


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_pid(
    pid: int,
    signals: Sequence[signal.Signals],
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Send each signal in turn until the process is gone.

    The first one gets ``timeout`` seconds, the later ones 10 s each.  With ``proc``
    (our own child) it is also reaped.
    """

    def alive() -> bool:
        return proc.poll() is None if proc is not None else pid_alive(pid)

    for i, sig in enumerate(signals):
        if not alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if i == 0 else 10.0)
        while time.monotonic() < deadline and alive():
            time.sleep(0.05)


def spawn_watchdog(
    child: int, remove_dir: Path | None, signals: Sequence[signal.Signals]
) -> subprocess.Popen[bytes]:
    """Stop ``child`` (and remove its throwaway folder) once this process is gone.

    A shell loop watches both pids: when this process dies first (e.g. a killed
    test run) it sends ``signals[0]``, then ``signals[1]`` after 30 s.  A
    parent-death signal alone cannot do this: it cannot remove the folder, and the
    kernel drops it when a process that changed its user executes a program.
    """
    parent = os.getpid()
    first, last = (sig.name.removeprefix("SIG") for sig in signals[:2])
    cleanup = f"rm -rf -- {shlex.quote(str(remove_dir))}" if remove_dir else ":"
    script = f"""
while kill -0 {parent} 2>/dev/null && kill -0 {child} 2>/dev/null; do sleep 1; done
kill -0 {parent} 2>/dev/null && exit 0
if kill -0 {child} 2>/dev/null; then
  kill -{first} {child} 2>/dev/null
  i=0
  while kill -0 {child} 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
  kill -{last} {child} 2>/dev/null
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


# ------------------------------------------------------------------------ service


class LocalService:
    """A server child process in its own folder, for tests and local runs.

    ``data_dir`` None: a temporary folder, removed by :meth:`stop`.  A given
    ``data_dir`` is kept (and reused by the next start).  ``detached`` leaves the
    server running after this Python process exits (the CLI's ``start``);
    otherwise a watchdog stops it once this process is gone.
    """

    NAME: ClassVar[str]  # "Kafka", "PostgreSQL"
    NOUN: ClassVar[str]  # "broker", "server"
    ERROR: ClassVar[type[RuntimeError]]
    CMDLINE_MARK: ClassVar[str]  # in the child's command line, with its folder
    STOP_SIGNALS: ClassVar[tuple[signal.Signals, ...]]  # graceful first
    ENV_VAR: ClassVar[str]  # the CLI prints ``ENV_VAR=<address>``
    ADDRESS_KEY: ClassVar[str]  # where the state file keeps the address
    LOG_NAME: ClassVar[str]
    TEMP_PREFIX: ClassVar[str]
    STOPPED: ClassVar[str]  # CLI message; fields pid, seconds

    def __init__(
        self,
        *,
        port: int | None,
        data_dir: str | os.PathLike[str] | None,
        detached: bool,
        startup_timeout: float,
        stop_timeout: float,
    ) -> None:
        self.requested_port = port
        self.detached = detached
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._owns_dir = data_dir is None
        self._dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._args: list[str] = []
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self.start_seconds: float | None = None

    @property
    def run_dir(self) -> Path:
        if self._dir is None:
            raise self.ERROR(f"{self.NOUN} not started")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.run_dir / self.LOG_NAME

    @property
    def address(self) -> str:
        """What clients connect to (printed as ``ENV_VAR=...``)."""
        raise NotImplementedError

    def start(self) -> Self:
        if self._proc is not None:
            return self
        attempts = 1 if self.requested_port else 3
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(retry=attempt > 1)
            except self.ERROR as exc:
                # A free port picked here can be taken by someone else before the
                # server binds it: pick new ports and try again.
                self._stop_process()
                if attempt == attempts or "already in use" not in str(exc):
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, retry: bool) -> Self:
        raise NotImplementedError

    def _prepare_dir(self) -> Path:
        """Create the folder; fail when a server already runs from it."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=self.TEMP_PREFIX))
        self._dir.mkdir(parents=True, exist_ok=True)
        running = live_state(self._dir)
        if running:
            raise self.ERROR(
                f"a {self.NAME} {self.NOUN} (pid {running['pid']}) already runs from "
                f"{self._dir} on {running.get(self.ADDRESS_KEY)}"
            )
        return self._dir

    def _launch(self, args: list[str], **popen: Any) -> None:
        """Start the server with its output in the log; watch it unless detached."""
        with self.log_path.open("ab") as logf:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
                **popen,
            )
        self._args = args
        self.pid = self._proc.pid
        if not self.detached:
            remove = self.run_dir if self._owns_dir else None
            self._watchdog = spawn_watchdog(self.pid, remove, self.STOP_SIGNALS)

    def _wait_until(
        self,
        started: float,
        serves: Callable[[], bool],
        retry_on: tuple[type[BaseException], ...],
        interval: float,
    ) -> None:
        """Poll ``serves`` until it is true; fail once the server exits or time is up.

        ``retry_on``: what ``serves`` raises while the server is still booting.
        """
        assert self._proc is not None
        deadline = started + self.startup_timeout
        last: BaseException | None = None
        while True:
            if self._proc.poll() is not None:
                raise self.ERROR(
                    f"the {self.NAME} {self.NOUN} exited with code {self._proc.returncode} "
                    f"during start-up; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise self.ERROR(
                    f"the {self.NAME} {self.NOUN} did not answer within "
                    f"{self.startup_timeout:.0f} s (last error: {last!r}); last lines of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            try:
                if serves():
                    return
            except retry_on as exc:
                last = exc
            time.sleep(interval)

    def _ready(self, started: float, **state: Any) -> Self:
        """Record the start time and write the state file the CLI reads."""
        self.start_seconds = time.monotonic() - started
        write_json(
            self.run_dir / STATE_FILE,
            {
                "pid": self.pid,
                self.ADDRESS_KEY: self.address,
                "port": self.port,
                **state,
                "run_dir": str(self.run_dir),
                "log": str(self.log_path),
                "started_at": time.time(),
            },
        )
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server; remove the folder when it is a throwaway one."""
        self._stop_process()
        if self._dir is not None:
            clear_state(self._dir)
            if self._owns_dir:
                shutil.rmtree(self._dir, ignore_errors=True)

    def _stop_process(self) -> None:
        if self._proc is not None:
            stop_pid(self._proc.pid, self.STOP_SIGNALS, self.stop_timeout, self._proc)
            self._proc = None
            self._stopped(self._args)
        if self._watchdog is not None:
            try:  # it sees the server gone within a second and exits
                self._watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait(5)
            self._watchdog = None

    @classmethod
    def _stopped(cls, args: list[str]) -> None:
        """Hook: the server launched with ``args`` has exited."""

    @classmethod
    def probe(cls, state: Mapping[str, Any]) -> str:
        """Ask the recorded server who it is; raise ``ERROR`` when it does not answer."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------- CLI


def cli_run_dir(data_dir: str | None, default: Path) -> Path:
    return Path(data_dir).expanduser().resolve() if data_dir else default


def cli_serve(service: LocalService, label: str, foreground: bool) -> int:
    """Report a started server; with ``foreground`` run until SIGTERM/SIGINT, then stop it."""
    print(
        f"{label} ready in {service.start_seconds or 0.0:.1f} s "
        f"(pid {service.pid}, data {service.run_dir}, log {service.log_path})",
        file=sys.stderr,
    )
    print(f"{service.ENV_VAR}={service.address}", flush=True)
    if not foreground:
        return 0
    stop_requested = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    proc = service._proc
    try:
        while not stop_requested and proc is not None and proc.poll() is None:
            time.sleep(0.5)
    finally:
        service.stop()
    return 0


def cli_already_running(kind: type[LocalService], state: Mapping[str, Any], run_dir: Path) -> int:
    print(f"already running (pid {state['pid']}, data {run_dir})", file=sys.stderr)
    print(f"{kind.ENV_VAR}={state[kind.ADDRESS_KEY]}")
    return 0


def cli_status(kind: type[LocalService], run_dir: Path) -> int:
    state = live_state(run_dir)
    if not state:
        print(f"not running (data {run_dir})")
        return 1
    try:
        what = kind.probe(state)
    except kind.ERROR as exc:
        print(f"pid {state['pid']} alive but the {kind.NOUN} does not answer: {exc}")
        return 1
    print(f"running: pid {state['pid']}, {what}, data {run_dir}")
    print(f"{kind.ENV_VAR}={state[kind.ADDRESS_KEY]}")
    return 0


def is_ours(kind: type[LocalService], pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` is ``kind``'s server of ``run_dir`` (not a reused pid)."""
    cmdline = pid_cmdline(pid)
    return kind.CMDLINE_MARK in cmdline and str(run_dir) in cmdline


def cli_stop(kind: type[LocalService], run_dir: Path, timeout: float, purge: bool) -> int:
    """Stop the server recorded in ``run_dir``, if it is still ours; forget it."""
    state = live_state(run_dir)
    if state:
        pid = int(state["pid"])
        if not is_ours(kind, pid, run_dir):
            print(
                f"pid {pid} is not the {kind.NOUN} of {run_dir}; not touching it", file=sys.stderr
            )
            return 1
        began = time.monotonic()
        args = pid_cmdline(pid).split()
        stop_pid(pid, kind.STOP_SIGNALS, timeout)
        kind._stopped(args)
        print(kind.STOPPED.format(pid=pid, seconds=time.monotonic() - began))
    else:
        print("not running")
    clear_state(run_dir)
    if purge and run_dir.exists():
        shutil.rmtree(run_dir)
        print(f"removed {run_dir}")
    return 0


def cli_run(
    commands: Mapping[str, Callable[[argparse.Namespace], int]],
    args: argparse.Namespace,
    error: type[Exception],
) -> int:
    """Run the chosen sub-command; an expected failure is one line and exit code 2."""
    try:
        return commands[args.command](args)
    except error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
