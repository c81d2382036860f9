"""Log output of every service: text lines for people, or one JSON object per line for shippers.

Code logs through the standard `logging` module (ours, Faust's and aiokafka's alike) and passes
what a log line is about as fields, never inside free text::

    log.warning("dead-lettered", extra={"partition": 3, "offset": 17, "ticket_id": "T-1"})

structlog's ProcessorFormatter renders every record with the same fields: `timestamp` (UTC,
RFC 3339), `level`, `logger`, `event` (the message), then the fields given in `extra`
(`partition`, `offset`, `ticket_id`, `event_id`, ...). Ticket free text (titles, descriptions,
comments) is never passed to a log call: the codec drops it before anything can log it.

A warning or error repeated many times a second (aiokafka's `Unable connect` while the broker is
down: ~2,900 lines a second were seen, issue #19) is let through once per 10 s with a count of
the rest (`RepeatFilter`); :func:`configure_logging` puts it on the handler of every service.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
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
        # Plain tracebacks whatever is installed: with `rich` present (a test tool brings it)
        # structlog would render them with rich, which imports modules lazily while logging and
        # so fails exactly when the process is out of file descriptors.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        )
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


@dataclass(slots=True)
class _Seen:
    start: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Let the first record of each kind (logger, level, message template) through per window.

    Later ones in the same window (seconds) are counted and dropped; the first one after the
    window says how many were dropped. Applies to warnings and errors only: info lines are
    rare already.
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
    for out in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in out.filters):
            out.addFilter(RepeatFilter(window))


def configure_logging(
    log_format: LogFormat = "text",
    level: str = "info",
    stream: TextIO | None = None,
    repeat_window: float = 10.0,
) -> logging.Handler:
    """Route every logger through one handler on the root logger; returns that handler.

    Replaces the root logger's handlers, so calling it again (tests, a second command) does
    not duplicate lines. `level` is a name such as "info" or "warning" ("warn" accepted).
    A warning or error of one kind is logged once per `repeat_window` seconds (0: every one),
    with the count of those dropped (`RepeatFilter`).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    out = handler(log_format, stream)
    if repeat_window > 0:
        out.addFilter(RepeatFilter(repeat_window))
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
