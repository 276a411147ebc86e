"""Counts per key that stay bounded however many keys come and go (no Ray)."""

from __future__ import annotations

from collections import OrderedDict

MAX_KEYS = 64
OTHER = "other"


class BoundedCounts:
    """Counts per key (e.g. samples per node) with at most ``limit`` keys.

    Game PCs that reboot join with a new node id; the least recently updated keys are folded
    into ``other`` so a week-long run holds as many entries as an hour-long one.
    """

    def __init__(self, limit: int = MAX_KEYS) -> None:
        if limit < 2:
            raise ValueError(f"limit must be >= 2, got {limit}")
        self.limit = limit
        self._counts: OrderedDict[str, int] = OrderedDict()

    def add(self, key: str, amount: int) -> None:
        """Adds ``amount`` to ``key``'s count."""
        self._counts[key] = self._counts.get(key, 0) + amount
        self._counts.move_to_end(key)
        while len(self._counts) > self.limit:
            oldest = next(k for k in self._counts if k != OTHER)
            folded = self._counts.pop(oldest)
            self._counts[OTHER] = self._counts.get(OTHER, 0) + folded
            self._counts.move_to_end(OTHER, last=False)

    def as_dict(self) -> dict[str, int]:
        """The counts, least recently updated first."""
        return dict(self._counts)

    def total(self) -> int:
        return sum(self._counts.values())
