"""A time-ordered index of the next deadline of each ticket, so a sweep never scans every ticket.

A heap of (due, ticket id) entries, each a lower bound of its ticket's next deadline, kept
lazily: a ticket gets a new entry only when its deadline moves earlier than its armed entry.
When a deadline moves later (the common case: a timer fired, a reply came in) the old entry
stays, and is re-armed at the new deadline when it reaches the top; when a ticket has no
deadline any more its entries are dropped as they surface. So most state changes cost a dict
write instead of a heap push. The replay keeps one index for all tickets; the stream processor
keeps one per owned partition, rebuilt from its table when partitions are assigned.
"""

from __future__ import annotations

import heapq

from events.instants import Micros


class TimerIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[Micros, str]] = []
        self._due: dict[str, Micros] = {}
        """Each ticket's next deadline (tickets without one are absent)."""
        self._armed: dict[str, Micros] = {}
        """The heap entry that stands for each ticket: at or before its deadline."""

    def set(self, ticket_id: str, due: Micros | None) -> None:
        """Record a ticket's next deadline (None: it has no pending timer)."""
        if due is None:
            self._due.pop(ticket_id, None)
            return
        self._due[ticket_id] = due
        armed = self._armed.get(ticket_id)
        if armed is None or due < armed:
            self._armed[ticket_id] = due
            heapq.heappush(self._heap, (due, ticket_id))
            if len(self._heap) > 64 and len(self._heap) > 4 * len(self._due):
                self._compact()

    def peek(self) -> tuple[Micros, str] | None:
        """The earliest (due, ticket id), or None."""
        heap, due, armed = self._heap, self._due, self._armed
        while heap:
            entry = heap[0]
            when, ticket = entry
            current = due.get(ticket)
            if current == when:
                return entry  # the heap's own tuple: nothing built per call
            heapq.heappop(heap)
            if armed.get(ticket) == when:  # the ticket's own entry, not an older duplicate
                if current is None:
                    del armed[ticket]
                else:  # its deadline moved later: re-arm there
                    armed[ticket] = current
                    heapq.heappush(heap, (current, ticket))
        return None

    def pop_before(self, now: Micros, inclusive: bool) -> tuple[Micros, str] | None:
        """Remove and return the earliest entry due before `now` (or at it, if inclusive)."""
        head = self.peek()
        if head is None or head[0] > now or (head[0] == now and not inclusive):
            return None
        heapq.heappop(self._heap)
        del self._due[head[1]]
        if self._armed.get(head[1]) == head[0]:
            del self._armed[head[1]]
        return head

    def discard(self, ticket_id: str) -> None:
        self._due.pop(ticket_id, None)

    def __len__(self) -> int:
        return len(self._due)

    def _compact(self) -> None:
        self._heap = [(when, ticket) for ticket, when in self._due.items()]
        heapq.heapify(self._heap)
        self._armed = dict(self._due)
