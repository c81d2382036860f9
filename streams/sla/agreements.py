"""Several agreements on one ticket: the OLAs' group ownership cycles and who held the ticket.

A ticket runs under one customer SLA (the first policy of the file whose match holds, as
before) and under every OLA of the file (`[[olas]]`, `rules.Ola`) whose match holds, each on
its own. An OLA's metric is group ownership: a cycle runs while the OLA holds for the ticket,
the ticket is open (or paused) and a group holds it; it ends when the ticket moves to another
group (a new cycle starts for the new group if the OLA still holds), when the OLA stops
holding, or at the resolve (a reopen starts a new one). Each cycle is numbered (`round`) and
has its own ids, timers, met, breach and, for a breached cycle, `sla.stopped` at its end.

`track` runs after every applied event (`fold`); `Holder`s record who held the ticket since
when, so the events that close a metric can say which group and assignee held the ticket for
how much of its counted time (`spans.attribution`). Pure: time comes with the events.
"""

from __future__ import annotations

from bisect import insort

from events.instants import Micros
from events.sla_records import SlaRecord
from streams.sla.rules import OWNERSHIP, Ola, Policy
from streams.sla.spans import deadlines
from streams.sla.state import Cycle, TicketState, Timer
from streams.sla.timers import fire, ownership_closed, ownership_segments

_new_timer = tuple.__new__


def track(state: TicketState, policy: Policy, now: Micros, out: list[SlaRecord]) -> None:
    """After an event applied at `now` under `policy` (the ticket's customer SLA): record a
    change of holder, end and start the OLAs' ownership cycles it caused, and recompute the
    running cycles' timers (a pause or resume moves them). Only under a file with OLAs or
    time attribution (`Policy.root`)."""
    root = policy.root
    if root.attribution:
        _hold(state, now)
    if root.olas or state.cycles:
        _cycles(state, policy, now, out)


def _hold(state: TicketState, now: Micros) -> None:
    holders = state.holders
    if holders is None:
        state.holders = [(now, state.group, state.assignee)]
        return
    last = holders[-1]
    if last[1] == state.group and last[2] == state.assignee:
        return
    if last[0] == now:  # a second change at the same instant: the first held it for no time
        holders[-1] = (now, state.group, state.assignee)
        if len(holders) > 1 and holders[-2][1:] == holders[-1][1:]:
            holders.pop()
    else:
        holders.append((now, state.group, state.assignee))


def _cycles(state: TicketState, policy: Policy, now: Micros, out: list[SlaRecord]) -> None:
    root = policy.root
    running = state.status in ("open", "paused") and state.group is not None
    cycles = state.cycles if state.cycles is not None else []
    for index, cycle in enumerate(cycles):  # cycles of OLAs the version no longer has
        if cycle[4] is None and cycle[0] not in root.ola_by_name:
            cycles[index] = (*cycle[:4], now)
            _drop(state, cycle[0] + "/")
    for ola in root.olas:
        current = _running(cycles, ola.name)
        wanted = running and ola.holds(state, state.severity)
        if current >= 0:
            cycle = cycles[current]
            if wanted and cycle[2] == state.group:
                _schedule(state, policy, ola, cycle, now, out)
                continue
            ended = (*cycle[:4], now)
            cycles[current] = ended
            _drop(state, ola.prefix)
            _end(state, policy, ola, ended, now, out)
        if wanted:
            assert state.group is not None
            number = 1 + sum(1 for c in cycles if c[0] == ola.name)
            cycle = (ola.name, number, state.group, now, None)
            cycles.append(cycle)
            _schedule(state, policy, ola, cycle, now, out)
    state.cycles = cycles or None


def _running(cycles: list[Cycle], name: str) -> int:
    """The index of the OLA's running cycle among `cycles`, -1 if none runs."""
    for index in range(len(cycles) - 1, -1, -1):
        cycle = cycles[index]
        if cycle[0] == name:
            return index if cycle[4] is None else -1
    return -1


def _drop(state: TicketState, prefix: str) -> None:
    """Cancel the pending timers of the OLA whose keys start with `prefix`."""
    state.timers = [
        t for t in state.timers if t.metric != OWNERSHIP or not t.key.name.startswith(prefix)
    ]


def _schedule(
    state: TicketState,
    policy: Policy,
    ola: Ola,
    cycle: Cycle,
    now: Micros,
    out: list[SlaRecord],
) -> None:
    """Recompute the running cycle's unfired timers; those made overdue fire at `now`."""
    _drop(state, ola.prefix)
    rule = ola.ownership
    number = cycle[1]
    fired = state.fired
    marks = [mark for mark in ola.marks if mark.timer.at_round(number).fired not in fired]
    if not marks:
        return
    clock = policy.clock(rule.clock, rule.calendar)
    segments = ownership_segments(state, cycle, rule)
    dues = deadlines(segments, clock, [mark.amount for mark in marks])
    for mark, due in zip(marks, dues, strict=True):
        if due is None:
            continue
        timer: Timer = _new_timer(Timer, (due, mark.rank, OWNERSHIP, mark.timer.at_round(number)))
        if due < now:  # made overdue by the change (as `timers.schedule`)
            fire(state, policy, timer, now, out)
        else:
            insort(state.timers, timer)


def _end(
    state: TicketState,
    policy: Policy,
    ola: Ola,
    cycle: Cycle,
    now: Micros,
    out: list[SlaRecord],
) -> None:
    """The cycle ended at `now`: `sla.met` if it held its target, `sla.stopped` if it had
    breached it (how long the group held the ticket in all; `timers.ownership_closed`)."""
    rule = ola.ownership
    clock = policy.clock(rule.clock, rule.calendar)
    segments = ownership_segments(state, cycle, rule, now)
    # the deadline; for a cycle that held its target, as if its clock ran on from `now`
    due = deadlines([*segments, (now, None)], clock, [rule.target])[0]
    out.append(ownership_closed(state, policy, ola, cycle, now if due is None else due, now))
