"""--log-format json|text: every service, fields for partition/ticket/event ids."""

from __future__ import annotations

import io
import logging
import time

import orjson

from base.logs import configure_logging
from base.settings import LogSettings, from_args
from deploy.cli import build_parser
from deploy.settings import SERVICES


def test_json_lines_carry_the_ids_as_fields() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    logging.getLogger("escalator.engine").warning(
        "dead-lettered",
        extra={"topic": "ticket-events", "partition": 3, "offset": 17, "ticket_id": "T-1",
               "event_id": "e-9"},
    )  # fmt: skip
    logging.getLogger("escalator.engine").debug("not shown at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["event"] == "dead-lettered"
    assert line["level"] == "warning"
    assert line["logger"] == "escalator.engine"
    assert (line["partition"], line["offset"], line["ticket_id"], line["event_id"]) == (
        3, 17, "T-1", "e-9",
    )  # fmt: skip
    assert line["timestamp"].endswith("Z")


def test_json_keeps_a_traceback_inside_the_line() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("escalator").exception("internal error", extra={"partition": 1})
    (text,) = out.getvalue().splitlines()
    line = orjson.loads(text)
    assert "RuntimeError: boom" in line["exception"] and line["partition"] == 1


def test_text_is_for_people_with_the_same_fields() -> None:
    out = io.StringIO()
    configure_logging("text", "info", stream=out)
    logging.getLogger("aiokafka").info("joined group %s", "g1", extra={"partition": 2})
    text = out.getvalue()
    assert "joined group g1" in text and "partition=2" in text
    assert not text.lstrip().startswith("{")


def test_configuring_twice_does_not_duplicate_lines() -> None:
    out = io.StringIO()
    configure_logging("text", "info", stream=out)
    configure_logging("json", "warn", stream=out)
    logging.getLogger("x").warning("once")
    logging.getLogger("x").info("filtered")
    assert len(out.getvalue().splitlines()) == 1


def test_every_service_takes_log_format() -> None:
    """Each service command accepts --log-format json and ESCALATOR_LOG_FORMAT."""
    commands = {
        "run": ["run"],
        "projections serve": ["projections", "serve"],
        "projections rebuild": ["projections", "rebuild"],
        "ingest": ["ingest"],
        "notify": ["notify"],
    }
    services = [c for c, m in SERVICES.items() if issubclass(m, LogSettings)]
    assert set(services) == set(commands)
    for command in services:
        args = build_parser().parse_args([*commands[command], "--log-format", "json"])
        settings = from_args(SERVICES[command], args)
        assert isinstance(settings, LogSettings) and settings.log_format == "json"


def test_a_repeated_error_is_logged_once_per_window_with_its_count() -> None:
    # Issue #19 item 14: aiokafka logged `Unable connect` ~2,900 times a second in an outage;
    # every service's handler (configure_logging) lets one through per 10 s.
    out = io.StringIO()
    configure_logging("text", "info", stream=out, repeat_window=0.5)
    noisy = logging.getLogger("aiokafka")
    for _ in range(2_900):
        noisy.error("Unable connect to node with id %s: %s", 1, "[Errno 111]")
    assert len(out.getvalue().splitlines()) == 1
    time.sleep(0.6)
    noisy.error("Unable connect to node with id %s: %s", 1, "[Errno 111]")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "(and 2899 more like it in the last" in lines[1]
    configure_logging("text", "info", stream=io.StringIO())
