"""Staying up through a broker outage: a broker probe for `/health`, and quiet repeated errors.

While the broker is down every client library retries and logs each failure (hundreds of lines
a second were seen); the worker itself keeps running and catches up once the broker is back.
`BrokerHealth` tells `/health` to report `degraded` meanwhile, and `base.logs.RepeatFilter` (on
every service's log handler) lets one line of each kind through per window and counts the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

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
