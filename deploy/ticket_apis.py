"""Local stand-ins for the ticket APIs the action channels write to (Zendesk, Jira Service
Management, Zammad): the documented request and response shapes, recording what they receive.

For the actions' tests and for trying them (docs/actions.md):

    python -m deploy.ticket_apis --vendor zendesk --port 9100 --token-env ZENDESK_TOKEN

What each implements (the vendor's documented endpoints, statuses and error bodies):

- Zendesk Support API (developer.zendesk.com, "Tickets", "Ticket Comments", "Rate limits"):
  basic auth `{email}/token:{token}` else 401 `{"error": "Couldn't authenticate you"}`;
  `GET /api/v2/tickets/{id}/comments` (`sort_order=desc`: newest first; cursor pagination,
  `page[size]` at most 100, `page[after]`) 200 `{"comments", "meta": {"has_more"}, "links":
  {"next"}}`; `PUT /api/v2/tickets/{id}` with `{"ticket": {...}}`: `comment`
  (`body` required, `public`), `additional_tags`, `remove_tags`, `priority` (urgent, high,
  normal, low), `group_id`, `custom_fields` -> 200 `{"ticket", "audit"}`; 404
  `{"error": "RecordNotFound", "description": "Not found"}`; 422 `{"error": "RecordInvalid",
  "description": "Record validation errors", "details": {...}}`; 429 with `Retry-After`.
- Jira Service Management Cloud (developer.atlassian.com, JSM "Request comment", Jira
  platform v3 "Edit issue"): basic auth `{email}:{token}` else 401; `GET
  /rest/servicedeskapi/request/{key}/comment?public=&internal=&start=&limit=` 200 a page
  `{"size", "start", "limit", "isLastPage", "values"}`; `POST .../comment` `{"body",
  "public"}` -> 201 the comment; `PUT /rest/api/3/issue/{key}` `{"update": {"labels": [{"add"
  | "remove"}]}, "fields": {...}}` -> 204; 400/404 `{"errorMessages": [...], "errors": {}}`.
- Zammad (docs.zammad.org, REST API "Tickets", "Ticket Articles", "Tags"): `Authorization:
  Token token=...` else 401 `{"error": "Authentication required"}`; `GET
  /api/v1/tickets/search?query=number:N&expand=true` -> the matching tickets; `GET
  /api/v1/ticket_articles/by_ticket/{id}` -> its articles; `POST /api/v1/ticket_articles`
  -> 201; `PUT /api/v1/tickets/{id}` -> 200; `POST /api/v1/tags/add`, `DELETE
  /api/v1/tags/remove` `{"object": "Ticket", "o_id", "item"}` -> 200 `true`; 422
  `{"error": ..., "error_human": ...}`.

Tickets are seeded with free text of their own (a subject, a customer's public comment) that
a caller must never echo. `throttle`: Retry-After seconds to answer 429 with, one per request,
before serving; `fail`: statuses to answer, one per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from deploy.local_service import serve_app

SECRET_TEXT = "CUSTOMER-SECRET: my password is hunter2"
"""The free text every seeded ticket holds (subject, description, a public comment)."""


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Ticket:
    id: int
    number: str = ""
    key: str = ""
    tags: list[str] = field(default_factory=list)
    priority: str | None = "normal"
    group: Any = None
    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    """Comments or articles, the seeded public one first."""


@dataclass
class TicketApi:
    vendor: str  # zendesk, jsm, zammad
    token: str
    email: str = "bot@example.com"
    tickets: dict[str, Ticket] = field(default_factory=dict)
    """By the id in the vendor's paths: Zendesk's id, the Jira key, Zammad's id."""
    throttle: list[int] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    delay: float = 0.0
    """Seconds each write waits before it is applied and answered (a slow vendor)."""
    hold: dict[str, float] = field(default_factory=dict)
    """Path -> seconds the next write to it waits before it is answered 503, not applied."""
    seen: list[Seen] = field(default_factory=list)
    echo: bool = False
    url: str = ""
    _runner: web.AppRunner | None = None

    def seed(self, ref: str, number: str = "") -> Ticket:
        ticket = Ticket(id=len(self.tickets) + 1001, number=number, key=ref)
        ticket.notes.append({"id": 1, "body": SECRET_TEXT, "public": True, "internal": False})
        if self.vendor == "zammad":
            ticket.id = int(ref)
        self.tickets[ref] = ticket
        return ticket

    def writes(self) -> list[Seen]:
        """The accepted requests that change a ticket."""
        return [s for s in self.seen if s.method != "GET" and 200 <= s.status < 300]

    def internal_notes(self, ref: str) -> list[dict[str, Any]]:
        return [n for n in self.tickets[ref].notes if not n.get("public", True)]

    # -- the server

    def _authentic(self, header: str) -> bool:
        if self.vendor == "zammad":
            return header == f"Token token={self.token}"
        user = f"{self.email}/token" if self.vendor == "zendesk" else self.email
        expected = "Basic " + base64.b64encode(f"{user}:{self.token}".encode()).decode()
        return header == expected

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw.decode(errors="replace")
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers),
                    body)  # fmt: skip
        self.seen.append(seen)
        if request.method != "GET" and request.path in self.hold:
            await asyncio.sleep(self.hold.pop(request.path))
            seen.status = 503
            return web.json_response({"error": "held on purpose"}, status=503)
        if self.delay and request.method != "GET":
            await asyncio.sleep(self.delay)
        response = self._answer(request, seen)
        seen.status = response.status
        if self.echo:
            print(f"{seen.method} {seen.path} -> {seen.status} {raw.decode(errors='replace')}",
                  flush=True)  # fmt: skip
        return response

    def _answer(self, request: web.Request, seen: Seen) -> web.Response:
        if self.throttle:
            wait = self.throttle.pop(0)
            text = {"error": "APIRateLimitExceeded", "description": "Rate limit exceeded"}
            return web.json_response(text, status=429, headers={"Retry-After": str(wait)})
        if self.fail:
            return web.json_response({"error": "failing on purpose"}, status=self.fail.pop(0))
        if not self._authentic(request.headers.get("Authorization", "")):
            return _UNAUTHORIZED[self.vendor]()
        handler = getattr(self, f"_{self.vendor}")
        response: web.Response = handler(seen)
        return response

    def _ticket(self, ref: str) -> Ticket | None:
        return self.tickets.get(ref)

    def _zendesk(self, seen: Seen) -> web.Response:
        parts = seen.path.strip("/").split("/")  # api v2 tickets {id} [comments]
        not_found = web.json_response(
            {"error": "RecordNotFound", "description": "Not found"}, status=404
        )
        if len(parts) < 4 or parts[:3] != ["api", "v2", "tickets"]:
            return not_found
        ticket = self._ticket(parts[3])
        if ticket is None:
            return not_found
        if seen.method == "GET" and parts[4:] == ["comments"]:  # cursor pagination
            notes = ticket.notes[::-1] if seen.query.get("sort_order") == "desc" else ticket.notes
            size = min(int(seen.query.get("page[size]", 100)), 100)
            after = int(seen.query.get("page[after]", 0))
            page, more = notes[after : after + size], after + size < len(notes)
            links: dict[str, Any] = {"next": None}
            if more:
                order = seen.query.get("sort_order", "asc")
                links["next"] = (f"{self.url}{seen.path}?sort_order={order}&page[size]={size}"
                                 f"&page[after]={after + size}")  # fmt: skip
            return web.json_response({"comments": page, "meta": {"has_more": more},
                                      "links": links})  # fmt: skip
        if seen.method != "PUT" or len(parts) != 4:
            return not_found
        update = seen.body.get("ticket") if isinstance(seen.body, dict) else None
        if not isinstance(update, dict):
            return _invalid({"base": [{"description": "ticket is required"}]})
        comment = update.get("comment")
        if comment is not None and not (isinstance(comment, dict) and comment.get("body")):
            return _invalid({"comment": [{"description": "Comment: body is required"}]})
        priority = update.get("priority")
        if priority is not None and priority not in ("urgent", "high", "normal", "low"):
            return _invalid({"priority": [{"description": "Priority: is invalid"}]})
        if comment is not None:
            public = comment.get("public", True)
            ticket.notes.append({"id": len(ticket.notes) + 1, "body": comment["body"],
                                 "public": bool(public)})  # fmt: skip
        for tag in update.get("additional_tags", []):
            if tag not in ticket.tags:
                ticket.tags.append(tag)
        ticket.tags = [t for t in ticket.tags if t not in update.get("remove_tags", [])]
        if priority is not None:
            ticket.priority = priority
        if "group_id" in update:
            ticket.group = update["group_id"]
        for item in update.get("custom_fields", []):
            ticket.fields[str(item["id"])] = item["value"]
        out = {"id": ticket.id, "tags": ticket.tags, "priority": ticket.priority,
               "subject": SECRET_TEXT}  # fmt: skip
        return web.json_response({"ticket": out, "audit": {"events": []}})

    def _jsm(self, seen: Seen) -> web.Response:
        parts = seen.path.strip("/").split("/")
        missing = web.json_response({"errorMessages": [
            "Issue does not exist or you do not have permission to see it."], "errors": {}},
            status=404)  # fmt: skip
        if parts[:3] == ["rest", "servicedeskapi", "request"] and parts[4:] == ["comment"]:
            ticket = self._ticket(parts[3])
            if ticket is None:
                return missing
            if seen.method == "GET":
                public = seen.query.get("public", "true") == "true"
                internal = seen.query.get("internal", "true") == "true"
                values = [n for n in ticket.notes if (public if n["public"] else internal)]
                start, limit = int(seen.query.get("start", 0)), int(seen.query.get("limit", 50))
                page = values[start : start + limit]
                return web.json_response({"size": len(page), "start": start, "limit": limit,
                                          "isLastPage": start + limit >= len(values),
                                          "values": page})  # fmt: skip
            if seen.method == "POST":
                if not isinstance(seen.body, dict) or not seen.body.get("body"):
                    return web.json_response({"errorMessage": "body is required"}, status=400)
                note = {"id": str(len(ticket.notes) + 1), "body": seen.body["body"],
                        "public": bool(seen.body.get("public", True))}  # fmt: skip
                ticket.notes.append(note)
                return web.json_response(note, status=201)
        if parts[:4] == ["rest", "api", "3", "issue"] and len(parts) == 5 and seen.method == "PUT":
            ticket = self._ticket(parts[4])
            if ticket is None:
                return missing
            edit = seen.body if isinstance(seen.body, dict) else {}
            priority = (edit.get("fields") or {}).get("priority")
            known = ("Highest", "High", "Medium", "Low", "Lowest")
            if priority is not None and priority.get("name") not in known:
                return web.json_response({"errorMessages": [], "errors": {
                    "priority": "Specify a valid priority"}}, status=400)  # fmt: skip
            for op in (edit.get("update") or {}).get("labels", []):
                if "add" in op and op["add"] not in ticket.tags:
                    ticket.tags.append(op["add"])
                if "remove" in op:
                    ticket.tags = [t for t in ticket.tags if t != op["remove"]]
            for name, value in (edit.get("fields") or {}).items():
                if name == "priority":
                    ticket.priority = value["name"]
                else:
                    ticket.fields[name] = value
            return web.Response(status=204)
        return missing

    def _zammad(self, seen: Seen) -> web.Response:
        parts = seen.path.strip("/").split("/")  # api v1 ...
        gone = {"error": "Couldn't find Ticket", "error_human": "Couldn't find Ticket"}
        missing = web.json_response(gone, status=404)
        rest = parts[2:]
        if seen.method == "GET" and rest == ["tickets", "search"]:
            query = seen.query.get("query", "")
            number = query.removeprefix("number:")
            found = [{"id": t.id, "number": t.number, "title": SECRET_TEXT}
                     for t in self.tickets.values() if t.number == number]  # fmt: skip
            return web.json_response(found)
        if seen.method == "GET" and rest[:2] == ["ticket_articles", "by_ticket"]:
            ticket = self._ticket(rest[2]) if len(rest) == 3 else None
            return missing if ticket is None else web.json_response(ticket.notes)
        body = seen.body if isinstance(seen.body, dict) else {}
        if seen.method == "POST" and rest == ["ticket_articles"]:
            ticket = self._ticket(str(body.get("ticket_id")))
            if ticket is None:
                return missing
            note = {"id": len(ticket.notes) + 1, "body": body.get("body"),
                    "internal": bool(body.get("internal")), "type": body.get("type"),
                    "public": not body.get("internal")}  # fmt: skip
            ticket.notes.append(note)
            return web.json_response(note, status=201)
        if seen.method == "PUT" and rest[:1] == ["tickets"] and len(rest) == 2:
            ticket = self._ticket(rest[1])
            if ticket is None:
                return missing
            known = ("1 low", "2 normal", "3 high")
            if "priority" in body and body["priority"] not in known:
                invalid = {"error": "No lookup value found for 'priority'",
                           "error_human": "Invalid priority"}  # fmt: skip
                return web.json_response(invalid, status=422)
            for name, value in body.items():
                if name == "priority":
                    ticket.priority = value
                elif name == "group":
                    ticket.group = value
                else:
                    ticket.fields[name] = value
            return web.json_response({"id": ticket.id, "priority": ticket.priority,
                                      "title": SECRET_TEXT})  # fmt: skip
        if rest[:1] == ["tags"] and rest[1:] in (["add"], ["remove"]):
            ticket = self._ticket(str(body.get("o_id")))
            if ticket is None or body.get("object") != "Ticket":
                return missing
            tag = str(body.get("item"))
            if rest[1] == "add" and seen.method == "POST" and tag not in ticket.tags:
                ticket.tags.append(tag)
            elif rest[1] == "remove" and seen.method == "DELETE":
                ticket.tags = [t for t in ticket.tags if t != tag]
            return web.json_response(True)
        return missing

    async def start(self, port: int | None = None) -> TicketApi:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, port = await serve_app(app, port)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _invalid(details: dict[str, Any]) -> web.Response:
    return web.json_response({"error": "RecordInvalid", "description": "Record validation errors",
                              "details": details}, status=422)  # fmt: skip


_UNAUTHORIZED = {
    "zendesk": lambda: web.json_response({"error": "Couldn't authenticate you"}, status=401),
    "jsm": lambda: web.json_response({"errorMessages": [
        "Client must be authenticated to access this resource."], "errors": {}}, status=401),
    "zammad": lambda: web.json_response({"error": "Authentication required"}, status=401),
}  # fmt: skip


async def _serve(api: TicketApi, port: int, tickets: list[str]) -> None:
    for ref in tickets:
        api.seed(ref, number=ref)
    await api.start(port)
    print(f"{api.vendor} API on {api.url}, tickets {', '.join(tickets)}", file=sys.stderr,
          flush=True)  # fmt: skip
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendor", choices=("zendesk", "jsm", "zammad"), default="zendesk")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--token-env", required=True, help="variable holding the API token")
    parser.add_argument("--email", default="bot@example.com")
    parser.add_argument("--ticket", action="append", default=[], help="a ticket to serve")
    args = parser.parse_args()
    api = TicketApi(args.vendor, os.environ[args.token_env], args.email, echo=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(api, args.port, args.ticket or ["101"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
