"""An `escalator ingest` process for the edge tests: real sockets, its own file limit, log."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

from deploy.kafka_local import unique_name
from deploy.local_service import free_port
from events.signatures import sign_hub, sign_zendesk
from events.vendors import zendesk

REPO = Path(__file__).resolve().parents[2]
TOKEN = "contract-token-123"
SECRETS = {"zendesk": "zendesk-secret-1", "jsm": "jsm-secret-2", "zammad": "zammad-secret-3"}


def vendor_secrets() -> dict[str, str]:
    """The environment that enables the three webhooks with SECRETS."""
    return {f"ESCALATOR_{source.upper()}_SECRET": secret for source, secret in SECRETS.items()}


class Credentials(requests.auth.AuthBase):
    """What each route requires, computed over the exact bytes sent: the bearer token for
    /v1/events; Zendesk's timestamped signature; X-Hub-Signature sha256 (JSM), sha1 (Zammad)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        url = request.url or ""
        if "/v1/webhooks/zendesk" in url:
            stamp = str(int(time.time()))
            request.headers[zendesk.TIMESTAMP_HEADER] = stamp
            request.headers[zendesk.SIGNATURE_HEADER] = sign_zendesk(SECRETS["zendesk"], stamp, raw)
        elif "/v1/webhooks/jsm" in url:
            request.headers["X-Hub-Signature"] = sign_hub(SECRETS["jsm"], raw, "sha256")
        elif "/v1/webhooks/zammad" in url:
            request.headers["X-Hub-Signature"] = sign_hub(SECRETS["zammad"], raw, "sha1")
        else:
            request.headers["Authorization"] = f"Bearer {TOKEN}"
        return request


@dataclass
class IngestProcess:
    broker: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    open_files: int | None = None
    port: int = field(default_factory=free_port)
    topic: str = field(default_factory=lambda: unique_name("ingest-in"))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> IngestProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "KAFKA_BOOTSTRAP_SERVERS": self.broker,
            "ESCALATOR_INGEST_TOKEN": TOKEN,
            "ESCALATOR_TICKET_TOPIC": self.topic,
            "ESCALATOR_DLQ_TOPIC": self.topic + "-dlq",
            "ESCALATOR_PORT": str(self.port),
            **self.env,
        }
        limit = self.open_files

        def limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "ingest"],
            cwd=REPO,
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=limits,
        )
        deadline = time.monotonic() + timeout
        while self.health() is None:
            assert self.proc.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, self.log_tail()
            time.sleep(0.2)
        return self

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """/health's body (200 or 503), or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=timeout) as response:
                body: dict[str, Any] = orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return dict(orjson.loads(error.read()), http=error.code)
        except (OSError, ValueError):
            return None
        return dict(body, http=200)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log_lines(self) -> int:
        return len(self.log_path.read_text(errors="replace").splitlines())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
