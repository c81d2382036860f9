"""Policy versions and their rollouts: which version times a ticket, and when it switches.

Issue #22. Every policy file loaded is a version (`Policy.version`: its `version` key or a
hash; `Policy.digest`: the content's SHA-256). A rollout makes a version take effect at one
instant, the same for every worker and partition: an event-time watermark on the event clock,
a wall-clock instant on the wall clock. Both clocks compare it with event time, as timers are:
what is dated before the instant is timed by the old version, what is dated at or after it by
the new one, so every worker, partition, replay and correction gives the same output.

The operator chooses per rollout (Salesforce's entitlement versions offer the same choice):
- `new-tickets`: tickets opened at or after the instant attach the new version; open tickets
  finish on the version that attached them.
- `open-tickets`: tickets opened at or after the instant attach it, and every open ticket moves
  to it at the instant: its unfired timers are recomputed from their original start (the
  report, the round's start) under the new version; overdue ones fire at the instant with
  `due_at` showing the recomputed deadline, as after a severity change.

The stated rule for a version that lacks what a ticket needs (issue #22, "a ticket never
fails"): a ticket whose severity is not defined by the new version (in the policy the ticket
would run under there), or whose running metric (one with a pending timer) the new version
does not define, does not move: it stays on the version that attached it, is timed by it to
the end, and the shell counts it and logs a warning once per version. Resolved and closed
tickets do not move either (they are not open); a reopened one goes on under its version.

`PolicyBook` holds the versions in rollout order (a rollout's instant is never before the
previous one's: `add` refuses it); the fold reads it through `Policy.book`. Pure: no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from events.instants import Micros
from events.rollouts import RolloutMode
from streams.sla.rules import Policy
from streams.sla.state import TicketState

BEGINNING: Final[Micros] = -(2**62)
"""The instant of the base version (the one a worker starts with): before every event."""
_MOVING: Final = frozenset({"open", "paused"})


@dataclass(frozen=True, slots=True)
class Rollout:
    """One version taking effect: at `instant` (microseconds UTC), in `mode`."""

    version: str
    digest: str
    instant: Micros
    mode: RolloutMode


class PolicyBook:
    """Every version a worker knows, in rollout order, the first being its base version.

    Version labels (`Policy.version`) identify versions in ticket states and outbound events,
    so a label names one content: `add` refuses a label already used with another digest.
    """

    def __init__(self, base: Policy) -> None:
        self.entries: list[tuple[Rollout, Policy]] = []
        self._position: dict[str, int] = {}
        self._add(Rollout(base.version, base.digest, BEGINNING, "new-tickets"), base)

    def _add(self, rollout: Rollout, policy: Policy) -> None:
        self._position[rollout.version] = len(self.entries)
        self.entries.append((rollout, policy))
        for _, version in self.entries:
            version.book = self

    def add(self, rollout: Rollout, policy: Policy) -> str | None:
        """Add a rollout; returns why it is refused (None: added, or already known as is)."""
        known = self._position.get(rollout.version)
        if known is not None:
            before, _ = self.entries[known]
            if before.digest == rollout.digest:
                return None  # republished, or the base version's own rollout
            return (
                f"version {rollout.version!r} is already published with other content "
                f"({before.digest[:19]}); give the file a new 'version'"
            )
        latest = self.entries[-1][0].instant
        if rollout.instant < latest:
            return "its instant is before the latest rollout's: rollouts take effect in order"
        self._add(rollout, policy)
        return None

    @property
    def newest(self) -> Policy:
        return self.entries[-1][1]

    @property
    def rollouts(self) -> list[Rollout]:
        """The rollouts after the base version, in order."""
        return [rollout for rollout, _ in self.entries[1:]]

    def version(self, label: str) -> Policy | None:
        """The version a ticket state names, or None if this book does not know it."""
        position = self._position.get(label)
        return None if position is None else self.entries[position][1]

    def attach(self, at: Micros) -> Policy:
        """The version a ticket opened at `at` attaches: the latest rollout at or before it."""
        chosen = self.entries[0][1]
        for rollout, policy in self.entries:
            if rollout.instant > at:
                break
            chosen = policy
        return chosen

    def switch(self, label: str, after: Micros, upto: Micros) -> tuple[Rollout, Policy] | None:
        """The first `open-tickets` rollout later than version `label` with its instant in
        (`after`, `upto`]: the next switch of a ticket on `label` that has been timed
        through `after`."""
        position = self._position.get(label)
        if position is None:
            return None
        for rollout, policy in self.entries[position + 1 :]:
            if rollout.instant > upto:
                return None
            if rollout.mode == "open-tickets" and rollout.instant > after:
                return rollout, policy
        return None

    def next_switch(self, state: TicketState) -> Micros | None:
        """When an open ticket next switches version (None: never, as things stand): the
        instant the shell must visit it at, even if none of its timers is due then."""
        if state.status not in _MOVING:
            return None
        position = self._position.get(state.policy_version)
        if position is None:
            return None
        through = state.timers_through
        after = state.last_event_at if through is None else max(state.last_event_at, through)
        for rollout, _ in self.entries[position + 1 :]:
            if rollout.mode == "open-tickets" and rollout.instant > after:
                return rollout.instant
        return None

    def due(self, state: TicketState) -> Micros | None:
        """`state.next_due`, or its next switch if that comes first: what a timer index holds."""
        due = state.next_due
        switch = self.next_switch(state)
        if switch is not None and (due is None or switch < due):
            return switch
        return due


def why_kept(state: TicketState, version: Policy) -> str | None:
    """Why an open ticket cannot move to `version` (None: it can), per the stated rule of the
    module docstring; the reason names the severity or metric, never ticket text."""
    policy = version.select(state) if version.policies else version
    rules = policy.severities.get(state.severity)
    if rules is None:
        return f"severity {state.severity} is not defined in policy {policy.name!r}"
    for timer in state.timers:
        metric = timer.metric
        if metric == "escalation" or metric == "ticket":
            continue
        if rules.metric(metric) is None:  # type: ignore[arg-type]
            return f"severity {state.severity} has no {metric} target in policy {policy.name!r}"
    return None
