"""How many of a run's targets are in each state, kept as they change: what bulk runs and playbook runs share."""
from __future__ import annotations

#: the state every target of a run starts in
WAITING = "waiting"


class TargetTally:
    """Counts of a run's ``targets`` per state (the attribute named by ``STATE``) and where the first waiting one
    may be, kept as states change (:meth:`mark`), so pacing a 5,000-target run costs the same for its last target
    as for its first. A dataclass that mixes this in declares ``targets``, ``_counts`` and ``_cursor``."""

    STATE = "state"
    targets: list
    _counts: dict[str, int]
    _cursor: int

    def recount(self) -> None:
        """Count again from the targets (after they were loaded or replaced)."""
        self._counts, self._cursor = {}, 0
        for target in self.targets:
            state = getattr(target, self.STATE)
            self._counts[state] = self._counts.get(state, 0) + 1

    def count(self, state: str) -> int:
        return self._counts.get(state, 0)

    def counts(self) -> dict[str, int]:
        return {state: n for state, n in self._counts.items() if n}

    def mark(self, position: int, state: str) -> None:
        """Target ``position`` is now in ``state``."""
        target = self.targets[position]
        self._counts[getattr(target, self.STATE)] -= 1
        self._counts[state] = self._counts.get(state, 0) + 1
        setattr(target, self.STATE, state)

    def next_waiting(self) -> int | None:
        """The first waiting target's position (the same until it is marked), or None."""
        while self._cursor < len(self.targets) and getattr(self.targets[self._cursor], self.STATE) != WAITING:
            self._cursor += 1
        return self._cursor if self._cursor < len(self.targets) else None
