"""Real local receivers for the notifier's tests: the HTTP `Recorder` (deploy/), an SMTP sink
and a PagerDuty Events API v2 endpoint.

`SmtpSink` is an aiosmtpd server on 127.0.0.1 that keeps every message it is sent (with the
time it arrived, in `arrived`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller

from deploy.local_service import free_port, serve_app


class _Keep:
    def __init__(self, messages: list[Message], arrived: list[float]) -> None:
        self.messages = messages
        self.arrived = arrived

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        self.messages.append(message_from_bytes(raw, policy=default))  # headers unfolded
        self.arrived.append(time.monotonic())
        return "250 OK"


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived: list[float] = []
        self.port = free_port()
        keep = _Keep(self.messages, self.arrived)
        self._controller = Controller(keep, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@dataclass
class PagerDutyEvents:
    """A local Events API v2 endpoint (`POST /v2/enqueue`) applying PagerDuty's documented rules
    (developer docs, "Send an Alert Event" and "Events API Rate Limits"):

    - 400 for an event PagerDuty would refuse: `routing_key` and `event_action`
      (trigger/acknowledge/resolve) required; `dedup_key` a string of at most 255 characters
      (required to acknowledge or resolve); a trigger's `payload` with `summary` (at most 1024),
      `source` and `severity` (critical/error/warning/info); `timestamp`, `component`, `group`,
      `class` strings when present (a null is refused), `custom_details` an object;
    - 429 past `rate` events per `window` seconds per routing key (about 120 a minute);
    - alerts by (routing key, dedup_key): a trigger opens one (or adds to the open one), a
      resolve resolves the open one and is dropped when none is open; after a resolve a
      trigger opens a new alert.

    `log` keeps every accepted event in arrival order as (dedup_key, action, open after it),
    `accepted` the events themselves with their arrival time (time.monotonic); `refused` every
    refused one with its status.
    """

    rate: int = 120
    window: float = 60.0
    delay: float = 0.0
    """Seconds each request takes, one request at a time when set (a slow PagerDuty)."""
    log: list[tuple[str, str, bool]] = field(default_factory=list)
    accepted: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    refused: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(routing key, dedup_key) -> alerts opened so far; `open` holds the open ones."""
    open: set[tuple[str, str]] = field(default_factory=set)
    url: str = ""
    _calls: dict[str, list[float]] = field(default_factory=dict)
    _one: asyncio.Lock = field(default_factory=asyncio.Lock)
    _runner: web.AppRunner | None = None

    def problems(self, event: Any) -> list[str]:
        if not isinstance(event, dict):
            return ["the body is not a JSON object"]
        errors = []
        if not isinstance(event.get("routing_key"), str) or not event["routing_key"]:
            errors.append("routing_key missing")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("event_action must be trigger, acknowledge or resolve")
        key = event.get("dedup_key")
        if "dedup_key" in event and (not isinstance(key, str) or len(key) > 255):
            errors.append("dedup_key must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not isinstance(key, str):
            errors.append("dedup_key is required")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*errors, "payload is required"]
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                errors.append("payload.summary must be 1-1024 characters")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("payload.source is required")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("payload.severity is invalid")
            for name in ("timestamp", "component", "group", "class"):
                if name in payload and not isinstance(payload[name], str):
                    errors.append(f"payload.{name} must be a string")
            if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
                errors.append("payload.custom_details must be an object")
        return errors

    async def _enqueue(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            async with self._one:
                await asyncio.sleep(self.delay)
                return self._answer(body)
        return self._answer(body)

    def _answer(self, body: bytes) -> web.Response:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            event = None
        errors = self.problems(event)
        if errors:
            self.refused.append((400, event if isinstance(event, dict) else {}))
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid",
                 "errors": errors}, status=400)  # fmt: skip
        now = time.monotonic()
        calls = [t for t in self._calls.get(event["routing_key"], []) if now - t < self.window]
        if len(calls) >= self.rate:
            self._calls[event["routing_key"]] = calls
            self.refused.append((429, event))
            return web.json_response({"status": "throttle event"}, status=429)
        self._calls[event["routing_key"]] = [*calls, now]
        key = event.get("dedup_key") or f"generated-{len(self.log)}"
        alert = (event["routing_key"], key)
        action = event["event_action"]
        if action == "trigger" and alert not in self.open:
            self.open.add(alert)
            self.alerts[alert] = self.alerts.get(alert, 0) + 1
        elif action == "resolve":
            self.open.discard(alert)
        self.log.append((key, action, alert in self.open))
        self.accepted.append((time.monotonic(), event))
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )

    def actions(self, dedup_key: str) -> list[str]:
        """The accepted actions for one key, in arrival order."""
        return [action for key, action, _ in self.log if key == dedup_key]

    def open_keys(self) -> set[str]:
        return {key for _, key in self.open}

    async def start(self) -> PagerDutyEvents:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._runner, port = await serve_app(app)
        self.url = f"http://127.0.0.1:{port}/v2/enqueue"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
