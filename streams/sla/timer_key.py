"""Which timer of a ticket a pending timer, a fired mark or an SLA event id is about.

A `TimerKey` names one timer by its parts (metric, the policy's mark or level, the round of a
rounded metric, the repeat of an escalation level) instead of a string to be split again. Its
`text` is the rule name as event ids (`events.ids.sla_event_id`) and the stored state spell
it, fixed since the seed: `warning:0.5`, `warning:before:1h`, `breached`, `breached@3` (round
3 of a metric counted in rounds, `rules.ROUNDED`), `level:2`, `level:2:repeat:4`, `purge`.
`fired` is `metric:text`, as `TicketState.fired` keeps the timers that went out.

Keys are made once and shared: a policy's marks and levels carry theirs (`rules.Mark.timer`,
`rules.EscalationRule.timer`), a round's or a repeat's key is derived from it once and kept
(`at_round`, `repeat`), and the state codec reads the text back with `parse`, the one place
the grammar is read.
"""

from __future__ import annotations

from typing import Final

_ROUND: Final = "@"
_REPEAT: Final = ":repeat:"
NO_ROUND: Final = -1
"""`TimerKey.round` of a timer of a metric not counted in rounds."""


class TimerKey:
    """One timer of a ticket (a plain class so mypyc compiles it; compared by value).

    Raises nothing itself; `parse` raises ValueError for text that is not of the grammar.
    """

    __slots__ = ("_derived", "fired", "level", "metric", "name", "repeat", "round", "text")

    def __init__(
        self, metric: str, name: str, round: int = NO_ROUND, level: int = 0, repeat: int = 0
    ) -> None:
        self.metric = metric
        """`first_response`, `resolution`, `next_response`, `periodic_update`, `escalation`,
        or `ticket` (the purge of a closed ticket)."""
        self.name = name
        """The policy's name of the timer, without round or repeat: `warning:0.5`,
        `warning:before:1h`, `breached`, `level:2`, `purge`."""
        self.round = round
        """The round of a rounded metric (1, 2, ...); NO_ROUND for the other metrics."""
        self.level = level
        """The escalation level (1, 2, ...); 0 for the other timers."""
        self.repeat = repeat
        """The repeat of an escalation level (1, 2, ...); 0 for the level itself."""
        if round != NO_ROUND:
            text = f"{name}{_ROUND}{round}"
        elif repeat:
            text = f"{name}{_REPEAT}{repeat}"
        else:
            text = name
        self.text = text
        """The rule name of event ids and stored state (see the module's docstring)."""
        self.fired = f"{metric}:{text}"
        """How `TicketState.fired` records it once it went out."""
        self._derived: dict[int, TimerKey] = {}
        """Round or repeat number -> its key, made once (`at_round`, `repeat`)."""

    def at_round(self, number: int) -> TimerKey:
        """This mark's key in round `number` (0, 1, ...) of its rounded metric: `breached@3`."""
        key = self._derived.get(number)
        if key is None:
            key = TimerKey(self.metric, self.name, number, self.level, 0)
            self._derived[number] = key
        return key

    def repeat_of(self, number: int) -> TimerKey:
        """This escalation level's repeat `number` (1, 2, ...)."""
        key = self._derived.get(number)
        if key is None:
            key = TimerKey(self.metric, self.name, NO_ROUND, self.level, number)
            self._derived[number] = key
        return key

    @property
    def repeat_prefix(self) -> str:
        """The fired-key of this level's repeats without their number (see `fired_repeat`)."""
        return f"{self.fired}{_REPEAT}"

    @property
    def threshold(self) -> float:
        """A warning by fraction: the fraction of the target it fires at, as its name says it
        (`warning:0.75` -> 0.75). Raises ValueError for a warning by lead time."""
        return float(self.name.split(":")[1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimerKey):
            return NotImplemented
        return self.fired == other.fired

    def __lt__(self, other: TimerKey) -> bool:
        """By text (timers due at one instant with the same rank and metric sort so)."""
        return self.text < other.text

    def __hash__(self) -> int:
        return hash(self.fired)

    def __repr__(self) -> str:
        return f"TimerKey({self.fired!r})"


def fired_repeat(fired: str, prefix: str) -> int:
    """The repeat number of the fired-key `fired` if it is a repeat of the level whose
    `repeat_prefix` is `prefix`; -1 if it is not."""
    if fired.startswith(prefix):
        return int(fired[len(prefix) :])
    return -1


_PARSED: dict[tuple[str, str], TimerKey] = {}
"""(metric, text) -> the key `parse` made for it: stored states share one key per timer."""


def parse(metric: str, text: str) -> TimerKey:
    """The key of a stored timer (`[due, metric, text, rank]` in the state codec).

    Raises ValueError if an escalation's text is not `level:<n>` or `level:<n>:repeat:<m>`, or
    a round is not a number."""
    key = _PARSED.get((metric, text))
    if key is not None:
        return key
    try:
        if metric == "escalation":
            name, _, repeat = text.partition(_REPEAT)
            level = int(name.split(":")[1])
            key = TimerKey(metric, name, NO_ROUND, level, int(repeat) if repeat else 0)
        elif _ROUND in text:
            name, _, number = text.partition(_ROUND)
            key = TimerKey(metric, name, int(number))
        else:
            key = TimerKey(metric, text)
    except (IndexError, ValueError):
        key = None
    if key is None or key.text != text:
        raise ValueError(f"field 'timers': {text!r} is not a timer of metric {metric!r}")
    _PARSED[(metric, text)] = key
    return key
