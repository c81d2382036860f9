"""The ingest HTTP service: contract events and vendor webhooks -> `ticket-events`.

    POST /v1/events              Escalator's contract: one JSON event, or JSONL (bearer token)
    POST /v1/webhooks/zendesk    Zendesk webhook (signed: X-Zendesk-Webhook-Signature)
    POST /v1/webhooks/jsm        Jira Service Management webhook (X-Hub-Signature sha256)
    POST /v1/webhooks/zammad     Zammad webhook (X-Hub-Signature sha1)
    POST /v1/webhooks/pagerduty  PagerDuty webhook v3 (X-PagerDuty-Signature): acknowledgements
    GET  /v1/ack, POST /v1/ack   a signed acknowledge link (HMAC over ticket, level, expiry)
    GET  /health
    GET  /metrics                Prometheus text: webhooks ignored, warned, dead-lettered

Records are keyed by ticket id and produced with an idempotent producer and acks=all; a
request is answered only after the broker has acknowledged all of its records. What is
produced is the contract's fields only (free text an upstream sends along is dropped here).
A vendor payload that cannot be mapped goes to the dead-letter topic with the reason, cut
down to an allow-list of ids, kinds, statuses, priorities, times and tags
(`events.vendors.common.scrub`), and is answered 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import resource
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka import errors as kafka_errors
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest

from base.errors import EscalatorError
from events.codec import InvalidEvent, decode_json, ticket_event_from_obj
from events.inbound import ticket_event_adapter
from events.signatures import (
    verify_ack,
    verify_bearer,
    verify_hub,
    verify_pagerduty,
    verify_zendesk,
)
from events.vendors import jsm, pagerduty, zammad, zendesk
from events.vendors.common import Mapped, Unmappable, contract_event, scrub
from streams.ingest.openapi import document as openapi_document
from streams.ingest.settings import INGEST_SECRETS, IngestSettings
from streams.ingest.zammad_store import ZammadStore

log = logging.getLogger("escalator.ingest")

REASON_HEADER = "escalator.reason"
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]

TOO_LARGE = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
)
"""The broker (or the producer) refuses the record's size: the same record never fits."""
MISCONFIGURED = (
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.UnsupportedVersionError,
)
"""Permanent until an operator changes the topic, the ACLs or the broker: not the request's
fault (so 500, not 4xx), and retrying at once cannot help (so not 503)."""


class ProduceFailed(EscalatorError):
    """Producing failed; `status` is the HTTP answer (413 permanent, 500 misconfigured, 503
    transient) and the message names the Kafka error's kind (never a record's content)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sink:
    """The Kafka side: produce records and wait until the broker has them all.

    An idempotent producer numbers each partition's batches; after an outage a failed batch
    leaves that sequence broken and the broker refuses every later batch on the partition
    (`OutOfOrderSequenceNumber`, issue #19). So after any transient failure the producer is
    replaced by a new one (a new producer id, sequences from 0) in the background; meanwhile
    requests are answered 503 and `/health` reports `degraded`. Nothing acknowledged is lost:
    a request is answered 2xx only after the broker acknowledged all its records.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.broken: str | None = "not started"
        """Why no producer is usable now (the Kafka error's kind), or None."""
        self.replacements = 0
        self._renewing: asyncio.Task[None] | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.broker,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=512 * 1024,
            max_request_size=self.settings.max_record_bytes + 64 * 1024,
            request_timeout_ms=30_000,
        )

    async def start(self) -> None:
        producer = self._new_producer()
        await producer.start()
        self.producer, self.broken = producer, None

    async def stop(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(BaseException):
                await self._renewing
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()

    async def produce(self, topic: str, records: list[Record]) -> None:
        """Send all, then wait for every acknowledgement; raises ProduceFailed if any failed."""
        producer = self.producer
        if producer is None or self.broken is not None:
            raise ProduceFailed(503, f"broker unavailable ({self.broken}); retry")
        try:
            pending = [
                await producer.send(topic, value, key=key, headers=headers)
                for key, value, headers in records
            ]
            await asyncio.wait_for(asyncio.gather(*pending), 60)
        except TOO_LARGE as exc:
            limit = self.settings.max_record_bytes
            raise ProduceFailed(
                413, f"record too large for the broker ({type(exc).__name__}; limit {limit} bytes)"
            ) from exc
        except MISCONFIGURED as exc:
            log.error("producing to %s refused: %s (configuration)", topic, type(exc).__name__)
            raise ProduceFailed(
                500, f"ingest cannot produce to its topic ({type(exc).__name__})"
            ) from exc
        except Exception as exc:
            kind = type(exc).__name__
            self._replace(producer, kind)
            raise ProduceFailed(503, f"broker unavailable ({kind}); retry") from exc

    async def unreachable(self, timeout: float = 3.0) -> str | None:
        """Why the broker cannot be produced to now (a Kafka error kind), or None: the
        producer's own state, else a metadata request answered within `timeout` seconds."""
        producer = self.producer
        if producer is None or self.broken is not None:
            return self.broken or "not started"
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
        except Exception as exc:
            return f"broker unreachable ({type(exc).__name__})"
        return None

    def _replace(self, failed: AIOKafkaProducer, reason: str) -> None:
        """Replace `failed` (once, however many requests saw it fail) in the background."""
        if self.producer is not failed or self._renewing is not None:
            return
        self.broken = f"producer being replaced after {reason}"
        self.producer = None
        log.warning("producer failed (%s): replacing it with a new producer id", reason)
        self._renewing = asyncio.create_task(self._renew(failed, reason))

    async def _renew(self, failed: AIOKafkaProducer, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(failed.stop(), 10)
        delay = 0.5
        while True:
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), 30)
            except Exception:
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.producer, self.broken, self._renewing = producer, None, None
            self.replacements += 1
            log.warning("producer replaced after %s; producing again", reason)
            return


def slim(obj: dict[str, Any]) -> bytes:
    """A validated contract event re-encoded with the contract's fields only."""
    declared = ticket_event_adapter.validate_python(obj)
    return orjson.dumps({k: obj[k] for k in declared})


class TooLarge(InvalidEvent):
    """An event larger than one Kafka record may be (`max_record_bytes`): answered 413."""


def contract_record(obj: Any, max_bytes: int) -> Record:
    """Validate one contract event into a Kafka record of at most `max_bytes` (key and value).

    Raises InvalidEvent naming the field; TooLarge naming the size, the limit and the largest
    field (a 1.2 MB `schema_version` never reaches the broker, issue #19).
    """
    if isinstance(obj, dict):
        # Before validation: a huge value is named as too large, not as one field's bound.
        _refuse_too_large(obj, len(orjson.dumps(obj)), max_bytes)
    event = ticket_event_from_obj(obj)
    key, value = event.ticket_id.encode(), slim(obj)
    _refuse_too_large(orjson.loads(value), len(key) + len(value), max_bytes)
    return key, value, []


def _refuse_too_large(obj: dict[str, Any], size: int, max_bytes: int) -> None:
    """Raise TooLarge naming the size, the limit and the largest field when over the limit."""
    if size <= max_bytes or not obj:
        return
    sizes = {name: len(orjson.dumps(obj[name])) for name in obj}
    largest = max(sizes, key=lambda name: sizes[name])
    raise TooLarge(
        f"event is {size} bytes, over the limit of {max_bytes} bytes "
        f"per event (largest field '{largest}': {sizes[largest]} bytes)"
    )


def _jsm_delivery(request: web.Request) -> str:
    """The request's `X-Atlassian-Webhook-Identifier` if it can name a delivery (1-128
    printable ASCII characters), else "" (the request is then not deduplicated here)."""
    value = request.headers.get(jsm.DELIVERY_HEADER, "").strip()
    return value if 0 < len(value) <= 128 and value.isascii() and value.isprintable() else ""


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


CHALLENGE = {
    "contract": 'Bearer realm="escalator-ingest"',
    "zendesk": 'Zendesk-Webhook-Signature realm="escalator-ingest"',
    "jsm": 'Hub-Signature realm="escalator-ingest", algorithm="sha256"',
    "zammad": 'Hub-Signature realm="escalator-ingest", algorithm="sha1"',
    "pagerduty": 'PagerDuty-Signature realm="escalator-ingest"',
}
"""`WWW-Authenticate` of each route's 401 (RFC 9110 section 11.6.1; RFC 6750 for Bearer)."""

CREDENTIAL_HEADERS = {
    "contract": ("Authorization",),
    "zendesk": (zendesk.SIGNATURE_HEADER, zendesk.TIMESTAMP_HEADER),
    "jsm": (jsm.SIGNATURE_HEADER,),
    "zammad": (zammad.SIGNATURE_HEADER,),
    "pagerduty": (pagerduty.SIGNATURE_HEADER,),
}
"""Headers a request must carry before its body is read (issue #19: no body is read for an
unauthenticated request)."""


class Ingest:
    """Request handlers around a `Sink`; the vendor mapping itself is pure (events.vendors)."""

    def __init__(self, settings: IngestSettings, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink
        self._zammad: ZammadStore | None = None
        self.jsm_deliveries = jsm.Deliveries()
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        labels = ["source", "reason"]
        self.ignored = Counter(
            "escalator_ingest_ignored",
            "Vendor webhooks answered 200 without an event (no SLA meaning), by reason",
            labels,
            registry=self.registry,
        )
        self.warnings = Counter(
            "escalator_ingest_warnings",
            "Vendor webhooks mapped with a documented fallback (e.g. an unknown priority "
            "opened at the default severity), by reason",
            labels,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "escalator_ingest_dead_letters",
            "Vendor webhooks dead-lettered as unmappable",
            ["source"],
            registry=self.registry,
        )
        self.mappers: dict[str, Callable[[Any], Mapped]] = {
            "zendesk": zendesk.map_payload,
            "jsm": lambda p: jsm.map_payload(p, settings.jsm_organizations_field),
            "zammad": lambda p: zammad.map_payload(p, self.zammad),
            "pagerduty": pagerduty.map_payload,
        }

    @property
    def zammad(self) -> ZammadStore:
        """Zammad's tickets and deliveries (`--zammad-state`), opened at first use."""
        if self._zammad is None:
            self._zammad = ZammadStore(self.settings.zammad_state)
        return self._zammad

    def close(self) -> None:
        if self._zammad is not None:
            self._zammad.close()
            self._zammad = None

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
        if source == "pagerduty":
            return verify_pagerduty(secret, body, headers.get(pagerduty.SIGNATURE_HEADER, ""))
        return verify_bearer(secret, headers.get("Authorization", ""))

    def _unauthorized(self, source: str, request: web.Request) -> web.Response:
        log.warning("%s: authentication failed from %s", source, request.remote)
        response = _error(401, "authentication failed")
        response.headers["WWW-Authenticate"] = CHALLENGE[source]
        return response

    def _refuse_early(self, source: str, request: web.Request) -> web.Response | None:
        """Refuse before reading the body: a disabled source, missing credentials, a wrong
        bearer token (it does not depend on the body), or a declared body over the limit."""
        if source not in self.settings.secrets:
            return _error(404, f"source {source!r} is not enabled (set {INGEST_SECRETS[source]})")
        if not all(request.headers.get(name, "").strip() for name in CREDENTIAL_HEADERS[source]):
            return self._unauthorized(source, request)
        if source == "contract" and not self._authentic(source, request, b""):
            return self._unauthorized(source, request)
        if (request.content_length or 0) > self.settings.max_body_bytes:
            limit = self.settings.max_body_bytes
            return _error(413, f"body over the limit of {limit} bytes (--max-body-bytes)")
        return None

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The request body, read within `body_timeout` seconds (408 after, 413 over size)."""
        try:
            return await asyncio.wait_for(request.read(), self.settings.body_timeout)
        except TimeoutError:
            seconds = self.settings.body_timeout
            response = _error(408, f"body not received within {seconds:g} s (--body-timeout)")
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            limit = self.settings.max_body_bytes
            return _error(413, f"body over the limit of {limit} bytes (--max-body-bytes)")

    # -- handlers

    async def events(self, request: web.Request) -> web.Response:
        """Contract events: one JSON object, or JSONL; answers which lines were taken."""
        refused = self._refuse_early("contract", request)
        if refused is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if request.content_type == "application/json" and body.lstrip()[:1] == b"{":
            chunks = [body]
        else:
            chunks = body.split(b"\n")
        records: list[Record] = []
        taken: list[int] = []
        errors: list[dict[str, Any]] = []
        too_large = 0
        for number, chunk in enumerate(chunks, start=1):
            if not chunk.strip():
                continue
            try:
                records.append(contract_record(decode_json(chunk), self.settings.max_record_bytes))
            except InvalidEvent as exc:
                too_large += isinstance(exc, TooLarge)
                errors.append({"line": number, "error": str(exc)})
            else:
                taken.append(number)
        if records:
            try:
                await self.sink.produce(self.settings.ticket_topic, records)
            except ProduceFailed as exc:
                log.error("producing %d records failed: %s", len(records), exc)
                return _error(exc.status, str(exc))
        if not taken and not errors:
            return _error(400, "empty body: expected a JSON event or JSONL")
        result = {"accepted": len(taken), "taken_lines": taken, "errors": errors}
        status = 413 if errors and too_large == len(errors) and not taken else 422
        return web.json_response(result, status=status if errors else 200, dumps=_dumps)

    async def webhook(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if source not in self.mappers:
            return _error(404, f"unknown source {source!r}: zendesk, jsm, zammad or pagerduty")
        refused = self._refuse_early(source, request)
        if refused is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if not self._authentic(source, request, body):
            return self._unauthorized(source, request)
        try:
            payload = decode_json(body)
        except InvalidEvent as exc:
            return _error(400, str(exc))
        delivery = request.headers.get(zammad.DELIVERY_HEADER, "") if source == "zammad" else ""
        if delivery and self.zammad.delivered(delivery, body):  # a replay (issue #19 item 8)
            return web.json_response({"duplicate_delivery": delivery[:64]}, dumps=_dumps)
        retried = _jsm_delivery(request) if source == "jsm" else ""
        # A retry of a JSM delivery already answered 2xx (issue #19 item 8)
        if retried and self.jsm_deliveries.seen(retried, time.monotonic()):
            self.ignored.labels(source, "duplicate delivery").inc()
            return web.json_response({"duplicate_delivery": retried[:64]}, dumps=_dumps)

        def produced() -> None:
            if delivery:
                self.zammad.remember_delivery(delivery, body)

        response = await self._map_and_produce(source, payload, produced)
        if retried and response.status in (200, 202):
            self.jsm_deliveries.taken(retried, time.monotonic())
        return response

    async def _map_and_produce(
        self, source: str, payload: Any, produced: Callable[[], None]
    ) -> web.Response:
        """Map a vendor payload and produce its events (or dead-letter it, or ignore it);
        `produced` is called once the events are on the broker."""
        try:
            mapped = self.mappers[source](payload)
            records = [
                contract_record(event, self.settings.max_record_bytes) for event in mapped.events
            ]
        except (Unmappable, InvalidEvent) as exc:
            return await self._dead_letter(source, payload, str(exc))
        if mapped.ignored is not None:
            self.ignored.labels(source, mapped.ignored[:80]).inc()
            self._warned(source, mapped.warnings)
            return web.json_response({"ignored": mapped.ignored}, dumps=_dumps)
        try:
            await self.sink.produce(self.settings.ticket_topic, records)
        except ProduceFailed as exc:
            log.error("%s: producing failed: %s", source, exc)
            return _error(exc.status, str(exc))
        if mapped.done is not None:
            mapped.done()
        produced()
        self._warned(source, mapped.warnings)  # once produced: a retried request counts once
        ids = [event["event_id"] for event in mapped.events]
        return web.json_response({"taken": ids}, dumps=_dumps)

    def _warned(self, source: str, warnings: list[str]) -> None:
        for warning in warnings:
            self.warnings.labels(source, warning[:80]).inc()
            log.warning("%s: %s (mapped with the documented fallback)", source, warning[:80])

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
        except ProduceFailed as exc:
            log.error("%s: dead-lettering failed: %s", source, exc)
            return _error(exc.status, str(exc))
        self.dead_letters.labels(source).inc()
        log.warning("%s: dead-lettered an unmappable payload: %s", source, reason[:300])
        return web.json_response({"dead_lettered": reason}, status=202, dumps=_dumps)

    # -- acknowledge links

    def _ack_fields(self, values: Any) -> tuple[str, int, int, str] | web.Response:
        """(ticket, level, expires, sig) of an authentic, unexpired link, or the refusal: 404
        when links are not enabled, 403 for anything else (which part was wrong is not said)."""
        if "ack" not in self.settings.secrets:
            return _error(404, f"acknowledge links are not enabled (set {INGEST_SECRETS['ack']})")
        refused = _error(403, "acknowledge link not valid, or expired")
        try:
            ticket, sig = str(values["ticket"]), str(values["sig"])
            level, expires = int(values["level"]), int(values["expires"])
        except (KeyError, ValueError):
            return refused
        secret = self.settings.secrets["ack"]
        if not verify_ack(secret, ticket, level, expires, sig, int(time.time())):
            return refused
        return ticket, level, expires, sig

    async def ack_page(self, request: web.Request) -> web.Response:
        """GET: a page whose button posts the link. Mail scanners and link previews fetch
        links; a GET never acknowledges."""
        checked = self._ack_fields(request.query)
        if isinstance(checked, web.Response):
            return checked
        ticket, level, expires, sig = checked
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(str(value))}">'
            for name, value in (("ticket", ticket), ("level", level), ("expires", expires),
                                ("sig", sig))
        )  # fmt: skip
        page = (
            "<!doctype html><title>Acknowledge</title>"
            f"<p>Acknowledge escalation level {level} of {html.escape(ticket)}?</p>"
            f'<form method="post" action="/v1/ack">{hidden}'
            '<button type="submit">Acknowledge</button></form>'
        )
        return web.Response(text=page, content_type="text/html")

    async def ack(self, request: web.Request) -> web.Response:
        """POST: produce `ticket.escalation_acknowledged` (actor `ack-link`) at our clock."""
        if (request.content_length or 0) > 4096:
            return _error(413, "body over the limit of 4096 bytes")
        checked = self._ack_fields(await request.post())
        if isinstance(checked, web.Response):
            return checked
        ticket, level, _, sig = checked
        now = time.time()
        at = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        event = contract_event(
            "ticket.escalation_acknowledged", f"ack-link:{sig[:16]}:{int(now * 1000)}", ticket,
            at, "ack-link", level=level, actor="ack-link",
        )  # fmt: skip
        try:
            record = contract_record(event, self.settings.max_record_bytes)
            await self.sink.produce(self.settings.ticket_topic, [record])
        except InvalidEvent as exc:
            return _error(400, str(exc))
        except ProduceFailed as exc:
            log.error("ack: producing failed: %s", exc)
            return _error(exc.status, str(exc))
        return web.json_response({"taken": [event["event_id"]]}, dumps=_dumps)

    async def health(self, request: web.Request) -> web.Response:
        """200 `ok` while the broker can be produced to; 503 `degraded` naming why not (the
        broker unreachable, or the producer being replaced after a failure)."""
        reason = await self.sink.unreachable()
        body: dict[str, Any] = {"status": "ok", "sources": sorted(self.settings.secrets)}
        body["producer"] = {"usable": reason is None, "replaced": self.sink.replacements}
        if reason is not None:
            body["status"] = "degraded"
            body["producer"]["reason"] = reason
        return web.json_response(body, status=200 if reason is None else 503, dumps=_dumps)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.settings), dumps=_dumps)


def build_app(settings: IngestSettings, sink: Sink | None = None) -> web.Application:
    """The aiohttp application; starts and stops its Kafka producer with the app."""
    sink = sink or Sink(settings)
    ingest = Ingest(settings, sink)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app.router.add_post("/v1/events", ingest.events)
    app.router.add_post("/v1/webhooks/{source}", ingest.webhook)
    app.router.add_get("/v1/ack", ingest.ack_page)
    app.router.add_post("/v1/ack", ingest.ack)
    app.router.add_get("/health", ingest.health)
    app.router.add_get("/metrics", ingest.metrics)
    app.router.add_get("/openapi.json", ingest.openapi)

    async def start(app: web.Application) -> None:
        await sink.start()

    async def stop(app: web.Application) -> None:
        await sink.stop()
        ingest.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


class _Busy(asyncio.Protocol):
    """A connection over `max_connections`: answered 503 and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        body = b'{"error":"too many connections; retry"}'
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        transport.close()


BACKLOG = 16
"""Listen backlog, which asyncio also takes as the most sockets it accepts in one turn of the
event loop, before any of their protocols is made or counted.

A refused socket stays open for three turns (accepted; its `_Busy` made; closed), and one
turn's handlers are made before `connection_made` counts them, so the file budget reserves
four backlogs. Kept small so that, on a slow machine where turns pile up, the refused sockets
in flight stay few (64 left a 256-file process short)."""


def connection_limit(configured: int) -> int:
    """`configured`, lowered to leave file descriptors for the producer, the log and the
    sockets accepted but not yet counted or closed (RLIMIT_NOFILE less 128 and four
    BACKLOGs, see `BACKLOG`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(4, min(configured, soft - 128 - 4 * BACKLOG))


class Served:
    """A running ingest server (`serve`): its address, and `close()`."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server) -> None:
        self.runner = runner
        self.server = server
        host, port = server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        self.server.close()
        await self.runner.cleanup()


async def serve(settings: IngestSettings, app: web.Application | None = None) -> Served:
    """Start the ingest app on settings.host:port with its connection limits.

    A connection must send a request's headers within `header_timeout` seconds of opening (or
    of its last answer), else it is closed (aiohttp's keep-alive timer, which runs from the
    connection's start); a body must arrive within `body_timeout` (408); beyond
    `max_connections` open connections (`connection_limit`) a new one is answered 503 and
    closed, so the process
    never runs out of file descriptors and `/health` answers once slow clients time out.
    """
    runner = web.AppRunner(
        app or build_app(settings),
        keepalive_timeout=settings.header_timeout,
        lingering_time=2.0,
        access_log=None,
    )
    await runner.setup()
    handlers = runner.server
    assert handlers is not None

    limit = connection_limit(settings.max_connections)

    def protocol() -> asyncio.Protocol:
        if len(handlers.connections) >= limit:
            return _Busy()
        return handlers()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        protocol, settings.host, settings.port, reuse_address=True, backlog=BACKLOG
    )
    return Served(runner, server)


def run(settings: IngestSettings) -> None:
    """Serve until SIGINT or SIGTERM (the CLI)."""

    async def main() -> None:
        served = await serve(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await served.close()

    asyncio.run(main())
