"""Clock arithmetic over spans: when a metric's clock ran, its deadlines, the time it consumed.

A metric's clock is kept as the spans of time it ran (`TicketState`), cut by the ticket's
pauses when the metric is pausable, so the time consumed can be measured again on any clock
after a severity or policy change. Instants and amounts are integer microseconds UTC; a
`Clock` (`streams.sla.clocks`) counts business or elapsed time between them.
"""

from __future__ import annotations

from events.instants import Micros
from events.sla_records import Held
from streams.sla.clocks import Clock
from streams.sla.rules import MetricRule
from streams.sla.state import Holder, Span, TicketState


def _subtract(spans: list[Span], cuts: list[Span]) -> list[Span]:
    """`spans` minus the intervals in `cuts` (both sorted, each without overlaps)."""
    if not cuts:
        return spans
    result: list[Span] = []
    for start, end in spans:
        cursor: Micros | None = start
        for cut_start, cut_end in cuts:
            if cursor is None:
                break
            if end is not None and cut_start >= end:
                break
            if cut_end is not None and cut_end <= cursor:
                continue
            if cut_start > cursor:
                result.append((cursor, cut_start))
            cursor = None if cut_end is None else max(cursor, cut_end)
        if cursor is not None and (end is None or cursor < end):
            result.append((cursor, end))
    return result


def deadlines(segments: list[Span], clock: Clock, amounts: list[Micros]) -> list[Micros | None]:
    """For each amount (ascending), the instant the segments have consumed it; None if never."""
    results: list[Micros | None] = []
    consumed = 0
    index = 0
    for start, end in segments:
        if end is None:
            for amount in amounts[index:]:
                results.append(clock.add(start, amount - consumed))
            return results
        length = clock.between(start, end)
        while index < len(amounts) and amounts[index] <= consumed + length:
            results.append(clock.add(start, amounts[index] - consumed))
            index += 1
        consumed += length
    results.extend([None] * (len(amounts) - index))
    return results


def consumed(segments: list[Span], clock: Clock, upto: Micros) -> Micros:
    """The clock time the segments consumed up to `upto` (microseconds on `clock`)."""
    total = 0
    for start, end in segments:
        stop = upto if end is None else min(end, upto)
        if stop > start:
            total += clock.between(start, stop)
    return total


def metric_segments(
    state: TicketState, metric: str, rule: MetricRule, resume_at: Micros | None = None
) -> list[Span]:
    """The spans during which a metric's clock ran (or runs).

    `resume_at`: treat a pause still open as ending then (a metric fulfilled while paused).
    """
    if metric == "first_response":
        spans: list[Span] = [(state.reported_at, first_response_end(state))]
    elif metric == "resolution":
        spans = state.resolution_spans
    else:
        since = round_since(state, metric)
        spans = [] if since is None else [(since, None)]
    return counted(state, spans, rule, resume_at)


def counted(
    state: TicketState, spans: list[Span], rule: MetricRule, resume_at: Micros | None = None
) -> list[Span]:
    """`spans` of a metric's clock less the ticket's pauses, if the metric is pausable, and
    its manual stops, if it is stoppable (`resume_at`: a pause or stop still open ends then)."""
    stops = state.stops if rule.stoppable else None
    if not rule.pausable and not stops:
        return spans
    pauses = state.pauses if rule.pausable else []
    if resume_at is not None and pauses and pauses[-1][1] is None:
        pauses = [*pauses[:-1], (pauses[-1][0], resume_at)]
    if stops:
        held = [(start, end) for start, end, _, _ in stops]
        if resume_at is not None and held[-1][1] is None:
            held[-1] = (held[-1][0], resume_at)
        return _subtract(spans, _merged([*pauses, *held]))
    return _subtract(spans, pauses)


def _merged(cuts: list[Span]) -> list[Span]:
    """Sorted, overlapping intervals joined (an open-ended one absorbs all after it)."""
    merged: list[Span] = []
    for start, end in sorted(cuts, key=lambda cut: cut[0]):
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None:
                break
            if start <= last_end:
                merged[-1] = (last_start, None if end is None else max(end, last_end))
                continue
        merged.append((start, end))
    return merged


def first_response_end(state: TicketState) -> Micros | None:
    """When first response's clock stopped (a response, or a resolve without one); None: runs."""
    return state.responded_at if state.responded_at is not None else state.first_response_stopped_at


def metric_round(state: TicketState, metric: str) -> int:
    """The number of a rounded metric's current round (see `rules.ROUNDED`; 0: none yet)."""
    return state.reply_round if metric == "next_response" else state.update_round


def round_since(state: TicketState, metric: str) -> Micros | None:
    """When a rounded metric's open round started (None: no round open)."""
    return state.reply_since if metric == "next_response" else state.update_since


def metric_running(state: TicketState, metric: str) -> bool:
    """Whether the metric's clock runs now (a rounded metric: a round is open)."""
    if metric == "first_response":
        return first_response_end(state) is None
    if metric == "resolution":
        return state.status in ("open", "paused")
    return round_since(state, metric) is not None and state.status in ("open", "paused")


def attribution(
    segments: list[Span], holders: list[Holder], clock: Clock, upto: Micros
) -> list[Held]:
    """Who held the ticket while the segments' clock ran, up to `upto`: one entry per group
    and assignee that held it for some of that time (`{"group", "assignee", "seconds"}`, on
    `clock`), in the order they first did. A holder is the ticket's group and assignee from
    one `Holder` to the next."""
    totals: dict[tuple[str | None, str | None], Micros] = {}
    last = len(holders) - 1
    for start, end in segments:
        stop = upto if end is None else min(end, upto)
        for index, (since, group, assignee) in enumerate(holders):
            until = holders[index + 1][0] if index < last else stop
            low = since if since > start else start
            high = until if until < stop else stop
            if high > low:
                amount = clock.between(low, high)
                if amount:
                    pair = (group, assignee)
                    totals[pair] = totals.get(pair, 0) + amount
    return [
        {"group": group, "assignee": assignee, "seconds": amount / 1_000_000}
        for (group, assignee), amount in totals.items()
    ]
