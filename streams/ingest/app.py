"""The ingest HTTP service: contract events and vendor webhooks -> `ticket-events`.

    POST /v1/events              Escalator's contract: one JSON event, or JSONL (bearer token)
    POST /v1/webhooks/zendesk    Zendesk webhook (signed: X-Zendesk-Webhook-Signature)
    POST /v1/webhooks/jsm        Jira Service Management webhook (X-Hub-Signature sha256)
    POST /v1/webhooks/zammad     Zammad webhook (X-Hub-Signature sha1)
    GET  /health

Records are keyed by ticket id and produced with an idempotent producer and acks=all; a
request is answered only after the broker has acknowledged all of its records. What is
produced is the contract's fields only (free text an upstream sends along is dropped here).
A vendor payload that cannot be mapped goes to the dead-letter topic with the reason, its
free text scrubbed (`events.vendors.common.scrub`), and is answered 202.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from events.codec import InvalidEvent, decode_json, ticket_event_from_obj
from events.inbound import ticket_event_adapter
from events.signatures import verify_bearer, verify_hub, verify_zendesk
from events.vendors import jsm, zammad, zendesk
from events.vendors.common import Mapped, StatusMemory, Unmappable, scrub
from streams.ingest.settings import SECRET_ENV, IngestSettings

log = logging.getLogger("escalator.ingest")

REASON_HEADER = "escalator.reason"
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


class Sink:
    """The Kafka side: produce records and wait until the broker has them all."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.broker,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=512 * 1024,
            request_timeout_ms=30_000,
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def produce(self, topic: str, records: list[Record]) -> None:
        """Send all, then wait for every acknowledgement (raises if any failed)."""
        assert self.producer is not None, "Sink.start() first"
        pending = [
            await self.producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await asyncio.gather(*pending)


def slim(obj: dict[str, Any]) -> bytes:
    """A validated contract event re-encoded with the contract's fields only."""
    declared = ticket_event_adapter.validate_python(obj)
    return orjson.dumps({k: obj[k] for k in declared})


def contract_record(obj: Any) -> Record:
    """Validate one contract event (InvalidEvent names the field) into a Kafka record."""
    event = ticket_event_from_obj(obj)
    return event.ticket_id.encode(), slim(obj), []


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class Ingest:
    """Request handlers around a `Sink`; the vendor mapping itself is pure (events.vendors)."""

    def __init__(self, settings: IngestSettings, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink
        self.zammad_memory = StatusMemory()
        self.mappers: dict[str, Callable[[Any], Mapped]] = {
            "zendesk": zendesk.map_payload,
            "jsm": lambda p: jsm.map_payload(p, settings.jsm_organizations_field),
            "zammad": lambda p: zammad.map_payload(p, self.zammad_memory),
        }

    # -- authentication

    def _authentic(self, source: str, request: web.Request, body: bytes) -> bool:
        secret = self.settings.secrets[source]
        headers = request.headers
        if source == "zendesk":
            return verify_zendesk(
                secret,
                headers.get(zendesk.TIMESTAMP_HEADER, ""),
                body,
                headers.get(zendesk.SIGNATURE_HEADER, ""),
                int(time.time()),
            )
        if source == "jsm":
            return verify_hub(secret, body, headers.get(jsm.SIGNATURE_HEADER, ""), "sha256")
        if source == "zammad":
            return verify_hub(secret, body, headers.get(zammad.SIGNATURE_HEADER, ""), "sha1")
        return verify_bearer(secret, headers.get("Authorization", ""))

    def _refuse(self, source: str, request: web.Request, body: bytes) -> web.Response | None:
        if source not in self.settings.secrets:
            return _error(404, f"source {source!r} is not enabled (set {SECRET_ENV[source]})")
        if not self._authentic(source, request, body):
            log.warning("%s: authentication failed from %s", source, request.remote)
            return _error(401, "authentication failed")
        return None

    # -- handlers

    async def events(self, request: web.Request) -> web.Response:
        """Contract events: one JSON object, or JSONL; answers which lines were taken."""
        body = await request.read()
        refused = self._refuse("contract", request, body)
        if refused is not None:
            return refused
        if request.content_type == "application/json" and body.lstrip()[:1] == b"{":
            chunks = [body]
        else:
            chunks = body.split(b"\n")
        records: list[Record] = []
        taken: list[int] = []
        errors: list[dict[str, Any]] = []
        for number, chunk in enumerate(chunks, start=1):
            if not chunk.strip():
                continue
            try:
                records.append(contract_record(decode_json(chunk)))
            except InvalidEvent as exc:
                errors.append({"line": number, "error": str(exc)})
            else:
                taken.append(number)
        if records:
            try:
                await self.sink.produce(self.settings.ticket_topic, records)
            except Exception as exc:
                log.error("producing %d records failed: %s", len(records), type(exc).__name__)
                return _error(503, f"broker unavailable ({type(exc).__name__}); retry")
        if not taken and not errors:
            return _error(400, "empty body: expected a JSON event or JSONL")
        result = {"accepted": len(taken), "taken_lines": taken, "errors": errors}
        return web.json_response(result, status=422 if errors else 200, dumps=_dumps)

    async def webhook(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if source not in self.mappers:
            return _error(404, f"unknown source {source!r}: zendesk, jsm or zammad")
        body = await request.read()
        refused = self._refuse(source, request, body)
        if refused is not None:
            return refused
        try:
            payload = decode_json(body)
        except InvalidEvent as exc:
            return _error(400, str(exc))
        try:
            mapped = self.mappers[source](payload)
            records = [contract_record(event) for event in mapped.events]
        except (Unmappable, InvalidEvent) as exc:
            return await self._dead_letter(source, payload, str(exc))
        if mapped.ignored is not None:
            return web.json_response({"ignored": mapped.ignored}, dumps=_dumps)
        try:
            await self.sink.produce(self.settings.ticket_topic, records)
        except Exception as exc:
            log.error("%s: producing failed: %s", source, type(exc).__name__)
            return _error(503, f"broker unavailable ({type(exc).__name__}); retry")
        if mapped.done is not None:
            mapped.done()
        ids = [event["event_id"] for event in mapped.events]
        return web.json_response({"taken": ids}, dumps=_dumps)

    async def _dead_letter(self, source: str, payload: Any, reason: str) -> web.Response:
        """Keep an unmappable payload (free text scrubbed) with the reason; answer 202."""
        headers = [
            (REASON_HEADER, reason.encode()),
            ("escalator.stage", b"ingest"),
            ("escalator.source", source.encode()),
        ]
        try:
            await self.sink.produce(
                self.settings.dlq_topic, [(None, orjson.dumps(scrub(payload)), headers)]
            )
        except Exception as exc:
            log.error("%s: dead-lettering failed: %s", source, type(exc).__name__)
            return _error(503, f"broker unavailable ({type(exc).__name__}); retry")
        log.warning("%s: dead-lettered an unmappable payload: %s", source, reason[:300])
        return web.json_response({"dead_lettered": reason}, status=202, dumps=_dumps)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "sources": sorted(self.settings.secrets)}, dumps=_dumps
        )


def build_app(settings: IngestSettings, sink: Sink | None = None) -> web.Application:
    """The aiohttp application; starts and stops its Kafka producer with the app."""
    sink = sink or Sink(settings)
    ingest = Ingest(settings, sink)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app.router.add_post("/v1/events", ingest.events)
    app.router.add_post("/v1/webhooks/{source}", ingest.webhook)
    app.router.add_get("/health", ingest.health)

    async def start(app: web.Application) -> None:
        await sink.start()

    async def stop(app: web.Application) -> None:
        await sink.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app
