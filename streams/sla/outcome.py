"""What one step of the fold gives back: the ticket's new state and the SLA events it emitted."""

from __future__ import annotations

from events.instants import Micros
from events.sla_records import SlaRecord
from streams.sla.state import TicketState


class Outcome:
    """The result of one step: the new state (None: no ticket) and what it emitted.

    A plain class, not a dataclass: mypyc compiles its `__init__` (a dataclass's generated
    `__init__` stays interpreted, and one Outcome is built per event).
    """

    __slots__ = (
        "beyond_horizon",
        "blocked",
        "duplicate",
        "emitted",
        "expired",
        "kept",
        "late",
        "parked",
        "rejected",
        "state",
        "unparked",
    )

    def __init__(
        self,
        state: TicketState | None,
        emitted: list[SlaRecord] | None = None,
        rejected: str | None = None,
        duplicate: bool = False,
        late: bool = False,
        beyond_horizon: bool = False,
    ) -> None:
        self.state = state
        self.emitted: list[SlaRecord] = [] if emitted is None else emitted
        self.rejected = rejected
        self.duplicate = duplicate
        self.late = late
        """The event came after its ticket had moved past its time (folded in by a replay)."""
        self.beyond_horizon = beyond_horizon
        """Rejected because it is older than CORRECTION_HORIZON behind its ticket's time."""
        self.blocked = False
        """Rejected only for the ticket's state (a resume of an open ticket): `handle` parks it."""
        self.parked = False
        """The event waits in the ticket's state for an earlier event it needs (not applied)."""
        self.unparked: list[Micros] = []
        """Times of parked events this step applied (accepted now: they move the clock)."""
        self.expired: list[tuple[str, str, int]] = []
        """(original JSON text, reason, origin) of parked events the watermark passed: rejected
        now (origin: what the shell gave `handle`, its input offset or line number)."""
        self.kept: list[tuple[str, str]] = []
        """(version, reason) of each rollout this step did not move the ticket to: it stays on
        the version that attached it (see `streams.sla.versions`)."""
