"""When a learner publishes its weights, and on which device it trains (plain, no Ray)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class PublishSchedule:
    """When the learner publishes: ``every`` updates after the last publication, and no sooner
    than ``min_interval_s`` after it.

    The time floor keeps the version rate bounded however fast the learner runs, so a sample's
    lag in versions stays a measure of wall time (``algo.max_model_lag``) and actors on slow
    links are not flooded with weights.
    """

    def __init__(
        self, every: int, min_interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every, self.min_interval_s, self.clock = every, min_interval_s, clock
        self._updates = 0
        self._at = -math.inf

    def due(self, updates: int) -> bool:
        """Whether to publish now, with the learner at ``updates``."""
        return (
            updates - self._updates >= self.every and self.clock() - self._at >= self.min_interval_s
        )

    def published(self, updates: int) -> None:
        """Records a publication at ``updates``."""
        self._updates, self._at = updates, self.clock()


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
