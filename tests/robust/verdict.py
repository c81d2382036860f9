"""What a fault run's committed topics say, against `escalator replay` of its valid input.

Pure functions over decoded values, no Kafka: the chaos run (tests/chaos.py) reads the topics
and hands the records here. Counting by event id alone hides a changed or extra event, and
"hostile records minus dead letters" hides a valid record that was dead-lettered, so:

- SLA events are compared event by event on their full content with the replay's;
- dead letters are matched by their original bytes: a valid input record among them is a
  wrongly dead-lettered one, counted apart from the hostile records, each of which must be
  dead-lettered exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class EventCounts:
    """The committed output against the replay's SLA events."""

    expected: int
    """SLA events the replay gives."""
    records: int
    """Records on the output topic (read_committed)."""
    lost: int
    """Replay events whose id the output lacks."""
    duplicated: int
    """Output records beyond the first of each event id."""
    extra: int
    """Output event ids the replay does not give."""
    changed: int
    """Event ids in both whose output content (any copy) differs from the replay's."""
    reordered: int
    """Tickets whose output, first copy of each id, is not the replay's order of ids."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class LetterCounts:
    """The dead-letter topic against the input's valid and hostile records."""

    hostile: int
    """Hostile records put into the input."""
    letters: int
    """Records on the dead-letter topic."""
    wrongly_dead_lettered: int
    """Dead letters whose bytes are a valid input record's."""
    hostile_missing: int
    """Hostile records with no dead letter of their bytes."""
    hostile_duplicated: int
    """Dead letters of a hostile record beyond its count in the input."""
    unexplained: int
    """Dead letters whose bytes are neither a valid nor a hostile input record."""
    without_reason: int
    """Dead letters without an `escalator.reason` header."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def compare_events(
    expected: Sequence[dict[str, Any]], output: Sequence[dict[str, Any]]
) -> EventCounts:
    """Compare decoded SLA events (each with `event_id` and `ticket_id`) on full content.

    `expected` is the replay's output in its order; `output` the topic's records in offset
    order per partition (a ticket's events are on one partition, so their order is kept).
    """
    want = {event["event_id"]: event for event in expected}
    copies = Counter(event["event_id"] for event in output)
    changed = {
        event["event_id"]
        for event in output
        if event["event_id"] in want and event != want[event["event_id"]]
    }
    return EventCounts(
        expected=len(want),
        records=len(output),
        lost=len(want.keys() - copies.keys()),
        duplicated=sum(n - 1 for n in copies.values()),
        extra=len(copies.keys() - want.keys()),
        changed=len(changed),
        reordered=_reordered(expected, output),
    )


def _reordered(expected: Iterable[dict[str, Any]], output: Iterable[dict[str, Any]]) -> int:
    def order(events: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
        seen: set[str] = set()
        ids: dict[str, list[str]] = {}
        for event in events:
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                ids.setdefault(event["ticket_id"], []).append(event["event_id"])
        return ids

    want, got = order(expected), order(output)
    shared = set(want) & set(got)
    return sum(1 for ticket in shared if _out_of_order(want[ticket], got[ticket]))


def _out_of_order(want: list[str], got: list[str]) -> bool:
    """True when the ids both lists hold come in another order (a loss alone is not this)."""
    both = set(want) & set(got)
    return [i for i in want if i in both] != [i for i in got if i in both]


def compare_letters(
    valid: Iterable[bytes],
    hostile: Iterable[bytes],
    letters: Iterable[tuple[bytes, bytes | None]],
) -> LetterCounts:
    """Match dead letters, as (value, `escalator.reason` header or None), to the input."""
    valid_set = set(valid)
    hostile_count = Counter(hostile)
    letters = list(letters)
    lettered = Counter(value for value, _ in letters)
    return LetterCounts(
        hostile=sum(hostile_count.values()),
        letters=len(letters),
        wrongly_dead_lettered=sum(n for value, n in lettered.items() if value in valid_set),
        hostile_missing=sum((hostile_count - lettered).values()),
        hostile_duplicated=sum(max(0, lettered[value] - n) for value, n in hostile_count.items()),
        unexplained=sum(
            n
            for value, n in lettered.items()
            if value not in valid_set and value not in hostile_count
        ),
        without_reason=sum(1 for _, reason in letters if not reason),
    )
