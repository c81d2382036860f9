"""A time-ordered index of the next deadline of each ticket, so a sweep never scans every ticket.

A heap of (due, ticket id) with lazy deletion: re-setting a ticket's due pushes a new entry and
the stale one is skipped when it surfaces. The replay keeps one for all tickets; the stream
processor keeps one per owned partition, rebuilt from its table when partitions are assigned.
"""

from __future__ import annotations

import heapq

from events.instants import Micros


class TimerIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[Micros, str]] = []
        self._due: dict[str, Micros] = {}

    def set(self, ticket_id: str, due: Micros | None) -> None:
        """Record a ticket's next deadline (None: it has no pending timer)."""
        if due is None:
            self._due.pop(ticket_id, None)
            return
        if self._due.get(ticket_id) == due:
            return
        self._due[ticket_id] = due
        heapq.heappush(self._heap, (due, ticket_id))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._due):
            self._compact()

    def peek(self) -> tuple[Micros, str] | None:
        """The earliest (due, ticket id), or None."""
        heap, due = self._heap, self._due
        while heap:
            when, ticket = heap[0]
            if due.get(ticket) == when:
                return when, ticket
            heapq.heappop(heap)
        return None

    def pop_before(self, now: Micros, inclusive: bool) -> tuple[Micros, str] | None:
        """Remove and return the earliest entry due before `now` (or at it, if inclusive)."""
        head = self.peek()
        if head is None or head[0] > now or (head[0] == now and not inclusive):
            return None
        heapq.heappop(self._heap)
        del self._due[head[1]]
        return head

    def discard(self, ticket_id: str) -> None:
        self._due.pop(ticket_id, None)

    def __len__(self) -> int:
        return len(self._due)

    def _compact(self) -> None:
        self._heap = [(when, ticket) for ticket, when in self._due.items()]
        heapq.heapify(self._heap)
