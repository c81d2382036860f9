"""Webhook adapters: vendors' ticket payloads -> Escalator's inbound contract (pure code).

Each adapter maps one vendor's documented webhook payload to zero or more contract events
(`events.inbound`) or raises `Unmappable` with the reason. They read ids, statuses,
priorities, tags, channels and times only: titles, descriptions and comment bodies are never
copied.
The mapping tables are in docs/ingest.md.
"""

from events.vendors.common import Mapped, Unmappable

__all__ = ["Mapped", "Unmappable"]
