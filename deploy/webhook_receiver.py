"""A local HTTP receiver for webhooks: records, verifies and prints what arrives.

For trying `escalator notify` (docs/end-to-end.md) and for its tests and benchmark:

    HOOK_SECRET=... python -m deploy.webhook_receiver --port 9000 --secret-env HOOK_SECRET

prints one line per request: path, signature check (`events.signatures.verify_webhook`),
idempotency key and body. In tests, `Recorder` can also fail on purpose: answer given
statuses for the first requests to a path, or stall past the sender's timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

from aiohttp import web

from deploy.local_service import serve_app
from events.signatures import WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, verify_webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)
    """When it arrived (time.monotonic)."""


@dataclass
class Recorder:
    """An aiohttp server on 127.0.0.1 keeping every request.

    `fail[path]`: statuses to answer, one per request, before answering 202, with the header
    `Retry-After: retry_after[path]` when that is set.
    `stall[path]`: seconds to wait before answering, one per request.
    `received` holds the requests answered 2xx; `attempts` every request.
    """

    fail: dict[str, list[int]] = field(default_factory=dict)
    retry_after: dict[str, str] = field(default_factory=dict)
    stall: dict[str, list[float]] = field(default_factory=dict)
    delay: float = 0.0
    secret: str | None = None
    echo: bool = False
    received: list[Received] = field(default_factory=list)
    attempts: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        seen = Received(request.path, dict(request.headers), await request.read())
        self.attempts.append(seen)
        stalls = self.stall.get(request.path)
        if stalls:
            await asyncio.sleep(stalls.pop(0))
        if self.delay:
            await asyncio.sleep(self.delay)
        failures = self.fail.get(request.path)
        if failures:
            wait = self.retry_after.get(request.path)
            headers = {"Retry-After": wait} if wait is not None else None
            return web.Response(status=failures.pop(0), text="failing on purpose", headers=headers)
        self.received.append(seen)
        if self.echo:
            self._print(seen)
        return web.json_response({"status": "success"}, status=202)

    def _print(self, seen: Received) -> None:
        check = ""
        if self.secret is not None and WEBHOOK_SIGNATURE_HEADER in seen.headers:
            ok = verify_webhook(
                self.secret,
                seen.headers.get(WEBHOOK_TIMESTAMP_HEADER, ""),
                seen.body,
                seen.headers[WEBHOOK_SIGNATURE_HEADER],
                int(time.time()),
            )
            check = " signature ok" if ok else " SIGNATURE MISMATCH"
        key = seen.headers.get("Idempotency-Key", "-")
        print(f"POST {seen.path}{check} key={key} {seen.body.decode(errors='replace')}", flush=True)

    async def start(self, port: int | None = None) -> Recorder:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner, port = await serve_app(app, port)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


async def _serve(recorder: Recorder, port: int) -> None:
    await recorder.start(port)
    print(f"receiving on {recorder.url}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret-env", help="environment variable holding the webhook secret")
    args = parser.parse_args()
    secret = os.environ.get(args.secret_env) if args.secret_env else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(Recorder(secret=secret, echo=True), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
