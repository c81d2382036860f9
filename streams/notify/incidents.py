"""PagerDuty incidents of one ticket in one channel: when to trigger, when to resolve (pure).

An incident is one ticket and metric (its `dedup_key`). It opens with the first trigger and is
resolved by the SLA stream itself, in the ticket's own order, so a resolve can never overtake
the trigger it closes (the notifier reads nothing but `sla-events`):

- a trigger (`sla.warning`, `sla.breached`, `ticket.escalated`,
  `customer.notification_required`, when a rule routes it to the channel) joins its metric's
  incident, remembered by its event id;
- `sla.met` of `resolution` means the ticket is resolved: every open incident of the ticket
  is resolved, one resolve each;
- `sla.met` of another metric resolves that metric's incident if it is open;
- `sla.retracted` withdraws the event it names: that event leaves its incident, and the
  incident is resolved once no trigger in it still holds (the events that hold instead follow
  the retraction and trigger anew).

`Open` is the state: metric -> ids of the triggering events that still hold.
"""

from __future__ import annotations

from typing import Any

Open = dict[str, list[str]]

TRIGGERS = frozenset(
    {"sla.warning", "sla.breached", "ticket.escalated", "customer.notification_required"}
)
RESOLVING = frozenset({"sla.met", "sla.retracted"})
"""SLA events that may resolve incidents: every PagerDuty channel sees them, routed or not."""


def step(
    incidents: Open, event: dict[str, Any], routed: bool
) -> tuple[list[tuple[str, str]], Open]:
    """What one SLA event of the ticket sends: [("trigger" | "resolve", metric)], in order,
    and the ticket's incidents after it. `routed`: a rule sends this event to the channel
    (only a routed event triggers; resolving needs no rule). `incidents` is not changed."""
    kind = event.get("type")
    metric = str(event.get("metric"))
    after = {m: list(ids) for m, ids in incidents.items()}
    if kind in TRIGGERS:
        if not routed:
            return [], after
        ids = after.setdefault(metric, [])
        event_id = str(event.get("event_id"))
        if event_id not in ids:
            ids.append(event_id)
        return [("trigger", metric)], after
    if kind == "sla.met":
        ending = list(after) if metric == "resolution" else [m for m in after if m == metric]
        for m in ending:
            del after[m]
        return [("resolve", m) for m in ending], after
    if kind == "sla.retracted":
        withdrawn = str(event.get("retracts"))
        for m, ids in list(after.items()):
            if withdrawn in ids:
                ids.remove(withdrawn)
                if not ids:
                    del after[m]
                    return [("resolve", m)], after
        return [], after
    return [], after
