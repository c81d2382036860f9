"""Ticket actions: what an SLA event changes on the vendor's ticket (Zendesk, Jira Service
Management, Zammad), through each vendor's documented REST API.

One delivery of one SLA event to one ticket-action channel is a short plan of HTTP calls
(`plan`, pure) run by `perform`:

- Zendesk (developer docs, "Tickets" > "Update Ticket", "Ticket Comments" > "List Comments"):
  one `PUT /api/v2/tickets/{id}` carrying the internal note (`comment` with `public: false`),
  `additional_tags`, `remove_tags`, `priority`, `group_id` and `custom_fields` together;
- Jira Service Management (Atlassian, JSM Cloud REST API "Request comment", Jira Cloud
  platform REST API v3 "Edit issue"): `PUT /rest/api/3/issue/{key}` for labels, priority and
  fields, then `POST /rest/servicedeskapi/request/{key}/comment` with `public: false`;
- Zammad (Zammad REST API docs, "Tickets", "Ticket Articles", "Tags"): the ticket's id found
  from its number (`GET /api/v1/tickets/search?query=number:N`), `PUT /api/v1/tickets/{id}`
  for priority, group and fields, `POST /api/v1/tags/add` and `DELETE /api/v1/tags/remove` per
  tag, then `POST /api/v1/ticket_articles` with `internal: true` (a note).

Idempotent per SLA event id: the note ends with the marker `[escalator-event:<event id>]`, and
before writing, the ticket's internal notes are read (`check`); when one already carries the
marker, the delivery is done and nothing is written (up to CHECK_PAGES pages of 100 notes are
read: Zendesk's newest first, JSM's from the oldest). The note is the plan's last write, so a
marker means every write of that event landed (Zendesk's single PUT is atomic anyway). The
other writes are set-like (a tag added twice is one tag, a priority set twice is that
priority), so a try cut short by a crash or a timeout and repeated is harmless; a redelivery
never adds a second note. Two notifier processes acting on the same event at the same instant
(a rebalance) could both pass the check: that is the one window left, as narrow as one ticket's
check and write.

No ticket free text goes out: the note is built from the SLA event (ids, times, severity,
policy) and the channel's own settings; what the vendor answers is read for the marker only,
and an error reason names the call and the status, never the vendor's body.

The vendor's ticket is named by the Escalator ticket id the ingest adapters give it
(`events.vendors`): Zendesk `zendesk-<ticket id>`, Jira the issue key, Zammad
`zammad-<ticket number>` (Zammad's API wants its internal id: looked up by number once per
ticket and remembered). An event of another vendor's ticket is skipped (`Skipped`).
"""

from __future__ import annotations

import base64
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from base.errors import EscalatorError
from events.instants import parse_instant
from events.signatures import sign_ack
from streams.notify.channels import DeliveryFailed, details, headline, retry_after
from streams.notify.rules import JsmChannel, TicketChannel, ZammadChannel, ZendeskChannel

MARKER = "[escalator-event:{}]"
"""Ends every note: the SLA event id it is about (the idempotency key)."""

_ZENDESK_ID = re.compile(r"^zendesk-([0-9]{1,19})$")
_ZAMMAD_NUMBER = re.compile(r"^zammad-([0-9A-Za-z]{1,64})$")
_JIRA_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}-[0-9]{1,19}$")
"""Jira issue keys: project key (upper-case letter, then letters, digits, `_`), `-`, number."""


class Skipped(EscalatorError):
    """The event's ticket is not one of this channel's vendor: nothing to do."""


def vendor_ticket(channel: TicketChannel, ticket_id: str) -> str:
    """The vendor's own name for the ticket: Zendesk's ticket id, the Jira issue key, Zammad's
    ticket number (see `perform` for the id). Raises Skipped for another vendor's ticket."""
    if isinstance(channel, ZendeskChannel):
        match = _ZENDESK_ID.match(ticket_id)
    elif isinstance(channel, ZammadChannel):
        match = _ZAMMAD_NUMBER.match(ticket_id)
    else:
        match = _JIRA_KEY.match(ticket_id)
        return ticket_id if match else _skip(ticket_id, "a Jira issue key")
    return match.group(1) if match else _skip(ticket_id, f"{channel.kind}-<id>")


def _skip(ticket_id: str, wanted: str) -> str:
    raise Skipped(f"ticket id is not {wanted}")


def ack_link(channel: TicketChannel, event: dict[str, Any], secret: str) -> str | None:
    """The signed acknowledge link of an escalation (None for other events or without
    `ack_url`): `<ack_url>?ticket=..&level=..&expires=..&sig=..`, `sig` the hex HMAC-SHA256 of
    ticket, level and expiry (`events.signatures.sign_ack`). The expiry is the escalation's
    `at` plus `ack_valid` seconds, so a redelivery writes the very same link."""
    if channel.ack_url is None or event.get("type") != "ticket.escalated":
        return None
    ticket, level = str(event["ticket_id"]), int(event["level"])
    expires = parse_instant(str(event["at"])) // 1_000_000 + int(channel.ack_valid)
    query = {"ticket": ticket, "level": level, "expires": expires}
    query["sig"] = sign_ack(secret, ticket, level, expires)
    return f"{channel.ack_url}?{urlencode(query, quote_via=quote)}"


def note_text(event: dict[str, Any], link: str | None = None) -> str:
    """The internal note: our headline, the event's details (ids and times only), the
    acknowledge link if any, and the marker."""
    lines = [f"Escalator: {headline(event)}", ""]
    lines += [f"{label}: {value}" for label, value in details(event)]
    if link is not None:
        lines += ["", f"Acknowledge (stops this level's repeats): {link}"]
    lines += ["", MARKER.format(event.get("event_id"))]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call of a plan: `what` names it in error reasons (`zendesk update`)."""

    what: str
    method: str
    path: str
    body: Any = None


CHECK_PAGES = 10
"""Most pages of notes read per check (100 notes a page; Zendesk newest first)."""


def check_call(channel: TicketChannel, ticket: str) -> Call | None:
    """The first read that tells whether the event's note is already there (None: no note)."""
    if not channel.note:
        return None
    if isinstance(channel, ZendeskChannel):
        path = f"/api/v2/tickets/{ticket}/comments?sort_order=desc&page[size]=100"
        return Call("zendesk read comments", "GET", path)
    if isinstance(channel, JsmChannel):
        return _jsm_page(ticket, 0)
    return Call("zammad read articles", "GET", f"/api/v1/ticket_articles/by_ticket/{ticket}")


def _jsm_page(ticket: str, start: int) -> Call:
    path = f"/rest/servicedeskapi/request/{quote(ticket)}/comment"
    query = f"?public=false&internal=true&start={start}&limit=100"
    return Call("jsm read comments", "GET", path + query)


def next_page(channel: TicketChannel, ticket: str, answer: Any) -> Call | None:
    """The read of the next page of notes, if the answer says there is one: Zendesk's cursor
    pagination (`meta.has_more`, `links.next`, followed only on the channel's own host), the
    Service Desk API's `isLastPage`, `start` and `size`; Zammad answers every article at once."""
    if not isinstance(answer, dict):
        return None
    if isinstance(channel, ZendeskChannel):
        following = (answer.get("links") or {}).get("next")
        more = (answer.get("meta") or {}).get("has_more")
        base = channel.url.rstrip("/")
        if more and isinstance(following, str) and following.startswith(base + "/"):
            return Call("zendesk read comments", "GET", following[len(base) :])
        return None
    if isinstance(channel, JsmChannel) and answer.get("isLastPage") is False:
        start, size = answer.get("start"), answer.get("size")
        if type(start) is int and type(size) is int and size > 0:
            return _jsm_page(ticket, start + size)
    return None


def has_marker(channel: TicketChannel, answer: Any, event_id: str) -> bool:
    """Whether the check's answer holds a note carrying the event's marker."""
    mark = MARKER.format(event_id)
    if isinstance(channel, ZendeskChannel):
        notes = answer.get("comments") if isinstance(answer, dict) else None
    elif isinstance(channel, JsmChannel):
        notes = answer.get("values") if isinstance(answer, dict) else None
    else:
        notes = answer
    if not isinstance(notes, list):
        return False
    return any(isinstance(n, dict) and mark in str(n.get("body", "")) for n in notes)


def plan(channel: TicketChannel, ticket: str, text: str | None) -> list[Call]:
    """The writes for one event, the note (`text`, None: no note) last. `ticket` is the
    vendor's id (Zammad: the internal id, not the number)."""
    if isinstance(channel, ZendeskChannel):
        update: dict[str, Any] = {}
        if text is not None:
            update["comment"] = {"body": text, "public": False}
        if channel.add_tags:
            update["additional_tags"] = list(channel.add_tags)
        if channel.remove_tags:
            update["remove_tags"] = list(channel.remove_tags)
        if channel.priority is not None:
            update["priority"] = channel.priority
        if channel.group is not None:
            update["group_id"] = channel.group
        if channel.fields:
            custom = channel.fields.items()
            update["custom_fields"] = [{"id": int(k), "value": v} for k, v in custom]
        return [Call("zendesk update", "PUT", f"/api/v2/tickets/{ticket}", {"ticket": update})]
    calls: list[Call] = []
    if isinstance(channel, JsmChannel):
        key = quote(ticket)
        edit: dict[str, Any] = {}
        labels = [{"add": t} for t in channel.add_tags] + [
            {"remove": t} for t in channel.remove_tags
        ]
        if labels:
            edit["update"] = {"labels": labels}
        fields: dict[str, Any] = dict(channel.fields)
        if channel.priority is not None:
            fields["priority"] = {"name": channel.priority}
        if fields:
            edit["fields"] = fields
        if edit:
            calls.append(Call("jsm edit issue", "PUT", f"/rest/api/3/issue/{key}", edit))
        if text is not None:
            calls.append(Call("jsm comment", "POST", f"/rest/servicedeskapi/request/{key}/comment",
                              {"body": text, "public": False}))  # fmt: skip
        return calls
    assert isinstance(channel, ZammadChannel)
    ticket_id = int(ticket)
    change: dict[str, Any] = dict(channel.fields)
    if channel.priority is not None:
        change["priority"] = channel.priority
    if channel.group is not None:
        change["group"] = channel.group
    if change:
        calls.append(Call("zammad update", "PUT", f"/api/v1/tickets/{ticket_id}", change))
    for tag in channel.add_tags:
        body = {"object": "Ticket", "o_id": ticket_id, "item": tag}
        calls.append(Call("zammad add tag", "POST", "/api/v1/tags/add", body))
    for tag in channel.remove_tags:
        body = {"object": "Ticket", "o_id": ticket_id, "item": tag}
        calls.append(Call("zammad remove tag", "DELETE", "/api/v1/tags/remove", body))
    if text is not None:
        article = {"ticket_id": ticket_id, "body": text, "content_type": "text/plain",
                   "type": "note", "internal": True}  # fmt: skip
        calls.append(Call("zammad note", "POST", "/api/v1/ticket_articles", article))
    return calls


def authorization(channel: TicketChannel, token: str) -> str:
    """The `Authorization` header: Zendesk API token (`{email}/token:{token}`, basic), Jira
    basic auth with an API token (`{email}:{token}`), Zammad `Token token=...`."""
    if isinstance(channel, ZendeskChannel):
        raw = f"{channel.email}/token:{token}"
    elif isinstance(channel, JsmChannel):
        raw = f"{channel.email}:{token}"
    else:
        return f"Token token={token}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


RETRYABLE = frozenset({408, 409, 425, 429})
"""4xx statuses a later try may get past (with 5xx): timeouts, conflicts, rate limits."""


async def call(
    session: aiohttp.ClientSession, channel: TicketChannel, auth: str, step: Call
) -> Any:
    """One HTTP call; the answer's JSON (None when empty). Raises DeliveryFailed naming the
    call and the status, with the vendor's `Retry-After` (Zendesk and Jira send it with 429)."""
    headers = {"Authorization": auth, "Accept": "application/json"}
    data = None
    if step.body is not None:
        headers["Content-Type"] = "application/json"
        data = orjson.dumps(step.body)
    url = channel.url.rstrip("/") + step.path
    async with session.request(step.method, url, data=data, headers=headers) as response:
        body = await response.read()
        status = response.status
        wait = retry_after(response.headers.get("Retry-After"), time.time())
    if not 200 <= status < 300:
        retryable = status >= 500 or status in RETRYABLE
        raise DeliveryFailed(f"{step.what}: HTTP {status}", retryable=retryable, retry_after=wait)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DeliveryFailed(f"{step.what}: answer is not JSON", retryable=True) from None


class ZammadIds:
    """Zammad ticket number -> internal id, per channel, the latest 100,000 (an id never
    changes)."""

    def __init__(self) -> None:
        self.ids: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def find(
        self, session: aiohttp.ClientSession, channel: ZammadChannel, auth: str, number: str
    ) -> int:
        where = (channel.url, number)
        if where in self.ids:
            return self.ids[where]
        query = urlencode({"query": f"number:{number}", "limit": 1, "expand": "true"})
        step = Call("zammad find ticket", "GET", f"/api/v1/tickets/search?{query}")
        answer = await call(session, channel, auth, step)
        found = [
            int(t["id"])
            for t in (answer if isinstance(answer, list) else [])
            if isinstance(t, dict) and str(t.get("number")) == number and type(t.get("id")) is int
        ]
        if not found:
            raise DeliveryFailed("zammad find ticket: no ticket with that number", False)
        self.ids[where] = found[0]
        if len(self.ids) > 100_000:
            self.ids.popitem(last=False)
        return found[0]


async def perform(
    session: aiohttp.ClientSession,
    channel: TicketChannel,
    event: dict[str, Any],
    environ: dict[str, str],
    zammad_ids: ZammadIds,
) -> int:
    """Act on the event's ticket: check for the event's note, then write. Returns the number
    of writes made (0: the note was already there). Raises Skipped (another vendor's ticket)
    or DeliveryFailed."""
    ticket = vendor_ticket(channel, str(event.get("ticket_id")))
    auth = authorization(channel, environ[channel.token_env])
    if isinstance(channel, ZammadChannel):
        ticket = str(await zammad_ids.find(session, channel, auth, ticket))
    check = check_call(channel, ticket)
    for _ in range(CHECK_PAGES):
        if check is None:
            break
        answer = await call(session, channel, auth, check)
        if has_marker(channel, answer, str(event.get("event_id"))):
            return 0
        check = next_page(channel, ticket, answer)
    text = None
    if channel.note:
        secret = environ[channel.ack_secret_env] if channel.ack_secret_env else ""
        text = note_text(event, ack_link(channel, event, secret))
    steps = plan(channel, ticket, text)
    for step in steps:
        await call(session, channel, auth, step)
    return len(steps)
