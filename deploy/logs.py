"""Log output of every service: text lines for people, or one JSON object per line for shippers.

Code logs through the standard `logging` module (ours, Faust's and aiokafka's alike) and passes
what a log line is about as fields, never inside free text::

    log.warning("dead-lettered", extra={"partition": 3, "offset": 17, "ticket_id": "T-1"})

structlog's ProcessorFormatter renders every record with the same fields: `timestamp` (UTC,
RFC 3339), `level`, `logger`, `event` (the message), then the fields given in `extra`
(`partition`, `offset`, `ticket_id`, `event_id`, ...). Ticket free text (titles, descriptions,
comments) is never passed to a log call: the codec drops it before anything can log it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import orjson
import structlog

LogFormat = Literal["text", "json"]

FIELDS = ("topic", "partition", "offset", "ticket_id", "event_id")
"""The fields a log line carries where they apply (others given in `extra` are kept too)."""


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def formatter(log_format: LogFormat) -> logging.Formatter:
    """A formatter rendering stdlib log records as text or JSON, `extra` fields included."""
    pre_chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        pre_chain.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (a test's capture, a redirect)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stderr handler (or `stream`) with :func:`formatter`."""
    out = _Stderr() if stream is None else logging.StreamHandler(stream)
    out.setFormatter(formatter(log_format))
    return out


def configure_logging(
    log_format: LogFormat = "text", level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger through one handler on the root logger; returns that handler.

    Replaces the root logger's handlers, so calling it again (tests, a second command) does
    not duplicate lines. `level` is a name such as "info" or "warning" ("warn" accepted).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    out = handler(log_format, stream)
    root.addHandler(out)
    root.setLevel(_level(level))
    logging.captureWarnings(True)
    return out


def _level(name: str) -> int:
    name = name.upper()
    return logging.WARNING if name == "WARN" else logging.getLevelNamesMapping()[name]


def record_fields(
    record: Any, ticket_id: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """The `extra` of a log line about one consumed Kafka record: where it is, and its ids.

    `record` has `topic`, `partition`, `offset` and `key` (aiokafka's ConsumerRecord, Faust's
    Message); without `ticket_id`, the record key stands for it (records are keyed by ticket).
    Ids are cut to 64 characters; nothing of the record's value is included.
    """
    fields: dict[str, Any] = {
        "topic": str(record.topic),
        "partition": int(record.partition),
        "offset": int(record.offset),
    }
    key = getattr(record, "key", None)
    if ticket_id is None and isinstance(key, bytes) and key:
        ticket_id = key.decode(errors="replace")
    if ticket_id is not None:
        fields["ticket_id"] = ticket_id[:64]
    if event_id is not None:
        fields["event_id"] = event_id[:64]
    return fields
