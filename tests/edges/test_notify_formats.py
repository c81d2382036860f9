"""Issues #19 items 11-12 and #27 items 4-6: what the notifier sends for hostile ids, the
PagerDuty key and payload, Retry-After, and the rules file's refusals (pure: no broker)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import pytest

from streams.notify import incidents
from streams.notify.channels import (
    dedup_key,
    email_message,
    pagerduty_trigger,
    retry_after,
    slack_message,
)
from streams.notify.rules import EmailChannel, RulesError, parse_rules

HOSTILE_IDS = [
    "T/with?query=1#frag space",
    "T*bold*",
    "T`code`",
    "T_under_",
    "T&amp;",
    "<!channel>",
    "<https://x|click>",
    "T-1\r\nBcc: victim@example.com",
]


def event(ticket: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": "00000000-0000-5000-8000-000000000001",
        "type": "sla.breached",
        "ticket_id": ticket,
        "severity": 1,
        "metric": "first_response",
        "due_at": "2026-12-01T21:00:00Z",
        "at": "2026-12-01T21:00:00Z",
        "cycle": 0,
        "policy": {"name": "clevr-helpdesk", "version": "2026-11"},
        "customer_id": ticket,
        "group": ticket,
        "assignee": None,
        **extra,
    }


def _texts(value: Any) -> list[tuple[str, str]]:
    """Every (type, text) of the Slack body: the fallback as ("text", ...), then each object."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        if "type" in value and isinstance(value.get("text"), str):
            found.append((value["type"], value["text"]))
        for item in value.values():
            found.extend(_texts(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_texts(item))
    return found


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@pytest.mark.parametrize("ticket", HOSTILE_IDS)
def test_slack_escapes_control_characters_and_keeps_data_out_of_mrkdwn(ticket: str) -> None:
    body = slack_message(event(ticket))
    objects = _texts(body["blocks"])
    mrkdwn = [text for kind, text in objects if kind == "mrkdwn"]
    assert mrkdwn == [":red_circle: *SLA breached*"]  # our label only: no data in mrkdwn
    plain = [text for kind, text in objects if kind == "plain_text"]
    for text in [body["text"], *plain]:
        assert "<" not in text and ">" not in text  # no mention, link or channel parse
        assert not re.search(r"&(?!amp;|lt;|gt;)", text)  # every & is an entity
    printable_ticket = ticket.replace("\r", "\\x0d").replace("\n", "\\x0a")
    headline = f"{printable_ticket} (Sev1) breached its first response target"
    assert _unescape(body["text"]) == headline
    assert _unescape(plain[0]) == headline  # `*`, backticks, `_` shown as they are
    assert f"customer: {printable_ticket}" in [_unescape(t) for t in plain[1:]]
    assert all(o.get("emoji") is False for o in _objects(body) if o["type"] == "plain_text")


def _objects(value: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if "type" in value and isinstance(value.get("text"), str):
            out.append(value)
        for item in value.values():
            out.extend(_objects(item))
    elif isinstance(value, list):
        for item in value:
            out.extend(_objects(item))
    return out


def test_slack_text_stays_within_block_kit_limits_for_a_long_id() -> None:
    body = slack_message(event("&" * 5000))
    for obj in _objects(body["blocks"]):
        assert len(obj["text"]) <= 3000
    assert (
        len(body["text"]) <= 3000
        and body["text"].startswith("&amp;")
        and body["text"].endswith("…")
    )


@pytest.mark.parametrize("ticket", HOSTILE_IDS)
def test_email_headers_cannot_be_split_by_an_id(ticket: str) -> None:
    channel = EmailChannel(kind="email", sender="escalator@example.com", to=["oncall@example.com"])
    mail = email_message(event(ticket, event_id=f"id-{ticket}"), channel, "oncall-mail")
    parsed = message_from_bytes(mail.as_bytes(policy=SMTP))
    assert parsed["Bcc"] is None
    assert sorted(parsed.keys()) == sorted(
        ["Subject", "From", "To", "Message-ID", "X-Escalator-Event-Id", "Content-Type",
         "Content-Transfer-Encoding", "MIME-Version"]
    )  # fmt: skip
    assert "\r" not in str(mail["Subject"]) and "\n" not in str(mail["Subject"])
    assert re.fullmatch(r"<[A-Za-z0-9.-]+\.oncall-mail@escalator>", str(mail["Message-ID"]))
    lines = mail.get_content().splitlines()  # an id cannot add a line either
    assert [line.split(":")[0] for line in lines[2:]] == [
        "due", "fired", "customer", "group", "policy", "event",
    ]  # fmt: skip
    assert lines[0].endswith("breached its first response target") and lines[1] == ""


def test_dedup_key_is_readable_when_short_and_bounded_and_stable_when_long() -> None:
    assert dedup_key("T-1", "first_response") == "T-1:first_response"
    short = "x" * (255 - len(":resolution"))
    assert dedup_key(short, "resolution") == short + ":resolution"  # exactly 255: kept
    for length in (245, 240 + 15, 300, 10_000):
        ticket = "Z" * length
        for metric in ("first_response", "periodic_update"):
            key = dedup_key(ticket, metric)
            assert len(key) <= 255
            assert key == dedup_key(ticket, metric)
            assert key.startswith("Z" * 160 + f":{metric}:sha256=")
    assert dedup_key("Z" * 300, "resolution") != dedup_key("Z" * 301, "resolution")
    assert dedup_key("Z" * 300, "resolution") != dedup_key("Z" * 300, "first_response")


def test_pagerduty_trigger_omits_absent_fields() -> None:
    body = pagerduty_trigger(event("T-7", group=None, customer_id=None), "key")
    payload = body["payload"]
    assert "group" not in payload
    assert None not in payload.values()
    assert None not in payload["custom_details"].values()
    assert (payload["severity"], payload["component"], payload["class"]) == (
        "critical", "first_response", "sla.breached",
    )  # fmt: skip


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert retry_after("30", now.timestamp()) == 30.0
    assert retry_after(" 0 ", now.timestamp()) == 0.0
    later = format_datetime(now + timedelta(seconds=45), usegmt=True)  # IMF-fixdate
    assert retry_after(later, now.timestamp()) == pytest.approx(45.0)
    past = format_datetime(now - timedelta(hours=1), usegmt=True)
    assert retry_after(past, now.timestamp()) == 0.0
    for bad in (None, "", "soon", "-5", "1.5"):
        assert retry_after(bad, now.timestamp()) is None


RULES = """
[channels.h]
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
secret_env = "S"
{channel}
[[rules]]
name = "r"
channels = ["h"]
match = {{ {match} }}
"""


@pytest.mark.parametrize(
    ("channel", "match", "named"),
    [
        ("", 'type = "ticket.escalate"', r"rules\.0\.match\.type: .*'ticket\.escalate'"),
        ("", 'type = ["sla.breached", "sla.breach"]', r"rules\.0\.match\.type: .*'sla\.breach'"),
        ("", 'severity = "one"', r"rules\.0\.match\.severity: .*'one'"),
        ("", "severity = [1, 5]", r"rules\.0\.match\.severity: .*5"),
        ("", 'metric = "resolutoin"', r"rules\.0\.match\.metric: .*'resolutoin'"),
        ("timeout = 1e9", "", r"channels\.h\.webhook\.timeout: .*300"),
        ("max_retry_after = 1e9", "", r"channels\.h\.webhook\.max_retry_after"),
    ],
)
def test_rules_refuse_values_that_would_never_deliver(channel: str, match: str, named: str) -> None:
    with pytest.raises(RulesError, match=named) as caught:
        parse_rules(RULES.format(channel=channel, match=match), "rules.toml")
    assert str(caught.value).startswith("rules.toml: ")


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:9000/hook", "ftp://host/x", "http://"])
def test_rules_refuse_a_url_that_is_not_http(url: str) -> None:
    text = RULES.format(channel="", match="").replace("http://127.0.0.1:9000/hook", url)
    with pytest.raises(RulesError, match=r"channels\.h\.webhook\.url: .*http"):
        parse_rules(text, "rules.toml")
    text = f'[channels.p]\nkind = "pagerduty"\nrouting_key_env = "K"\nurl = "{url}"\n'
    with pytest.raises(RulesError, match=r"channels\.p\.pagerduty\.url: .*http"):
        parse_rules(text + '[[rules]]\nname = "r"\nchannels = ["p"]\n', "rules.toml")


def test_rules_refuse_an_empty_rule_list() -> None:
    text = 'rules = []\n[channels.h]\nkind = "slack"\nurl_env = "S"\n'
    with pytest.raises(RulesError, match=r"rules\.toml: rules: List should have at least 1 item"):
        parse_rules(text, "rules.toml")


def test_rules_still_accept_a_valid_file() -> None:
    rules = parse_rules(
        RULES.format(channel="timeout = 300\nmax_retry_after = 60",
                     match='type = ["sla.breached", "ticket.escalated"], severity = [1, 2], '
                           'metric = "resolution", customer = 42'),
        "rules.toml",
    )  # fmt: skip
    assert rules.rules[0].match.severity == [1, 2]


def test_incident_lifecycle_one_resolve_per_open_incident() -> None:
    breach = event("T-1")
    escalated = event("T-1", type="ticket.escalated", metric="escalation", event_id="e2")
    met = event("T-1", type="sla.met", metric="resolution", event_id="e3")
    actions, state = incidents.step({}, breach, routed=True)
    assert actions == [("trigger", "first_response")]
    actions, state = incidents.step(state, escalated, routed=True)
    actions, state = incidents.step(state, met, routed=False)
    assert actions == [("resolve", "first_response"), ("resolve", "escalation")]
    assert state == {}
    assert incidents.step(state, met, routed=False) == ([], {})  # nothing open: nothing sent


def test_incident_retraction_resolves_only_when_no_trigger_holds() -> None:
    warning = event("T-2", type="sla.warning", metric="resolution", event_id="w", threshold=0.5)
    breach = event("T-2", metric="resolution", event_id="b")
    retract_b = event("T-2", type="sla.retracted", metric="resolution", event_id="r1",
                      retracts="b", retracted_type="sla.breached")  # fmt: skip
    retract_w = {**retract_b, "event_id": "r2", "retracts": "w", "retracted_type": "sla.warning"}
    _, state = incidents.step({}, warning, routed=True)
    _, state = incidents.step(state, breach, routed=True)
    assert incidents.step(state, retract_b, routed=False) == ([], {"resolution": ["w"]})
    _, state = incidents.step(state, retract_b, routed=False)
    assert incidents.step(state, retract_w, routed=False) == ([("resolve", "resolution")], {})
    # an unrouted trigger opens nothing; a retraction of an unknown event sends nothing
    assert incidents.step({}, breach, routed=False) == ([], {})
    assert incidents.step({}, retract_b, routed=True) == ([], {})
