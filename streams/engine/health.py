"""Staying up through a broker outage: a broker probe for `/health`, and quiet repeated errors.

While the broker is down every client library retries and logs each failure (hundreds of lines
a second were seen); the worker itself keeps running and catches up once the broker is back.
`BrokerHealth` tells `/health` to report `degraded` meanwhile, and `RepeatFilter` lets one line
of each kind through per window and counts the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]

log = logging.getLogger("escalator.engine")


class BrokerHealth:
    """Whether the broker answered a metadata request lately (probed every few seconds)."""

    def __init__(self, bootstrap: list[str], timeout: float = 3.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.reachable = True
        """False from the first failed probe until the next successful one."""
        self.down_since: float | None = None
        """Wall-clock seconds of the first failed probe of the current outage."""
        self.error: str | None = None
        """The exception type of the last failed probe (never its text)."""
        self._client: AIOKafkaClient | None = None

    async def probe(self) -> bool:
        """Ask the broker for metadata; never raises. Returns (and records) whether it answered."""
        try:
            if self._client is None:
                client = AIOKafkaClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.timeout * 1000)
                )
                self._client = client
                await asyncio.wait_for(client.bootstrap(), self.timeout)
            await asyncio.wait_for(self._client.fetch_all_metadata(), self.timeout)
        except Exception as exc:
            await self.close()
            self.error = type(exc).__name__
            if self.reachable:
                self.reachable = False
                self.down_since = time.time()
                log.error("broker unreachable (%s); retrying, /health reports degraded", self.error)
            return False
        if not self.reachable:
            log.warning("broker reachable again after %.0f s", time.time() - (self.down_since or 0))
        self.reachable, self.down_since, self.error = True, None, None
        return True

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


@dataclass(slots=True)
class _Seen:
    start: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Let the first record of each kind (logger, level, message template) through per window.

    Later ones in the same window are counted and dropped; the first one after the window says
    how many were dropped. Applies to warnings and errors only: info lines are rare already.
    """

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.start < self.window:
            seen.suppressed += 1
            return False
        if seen is not None and seen.suppressed:
            record.msg = f"{record.getMessage()} (and {seen.suppressed} more like it in the last "
            record.msg += f"{now - seen.start:.0f} s, not logged)"
            record.args = ()
        if len(self._seen) > 10_000:  # bounded: message templates are few
            self._seen.clear()
        self._seen[key] = _Seen(now)
        return True


def quiet_repeats(window: float = 10.0) -> None:
    """Put a `RepeatFilter` on every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter(window))
