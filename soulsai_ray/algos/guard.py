"""The learners' guard against NaN and inf: a non-finite loss, gradient or weight never reaches
published weights (plain torch, no Ray).

Both learners use it the same way::

    guard = NonFiniteGuard(learner.state_dict, learner.load_state_dict)
    outcome = guard.run(update)       # update() calls raise_if_not_finite(loss, grad_norm);
                                      # None: it met a NaN/inf and the learner was rolled back
    guard.mark_good(parameters)       # the rollback point moves here (if the weights are finite)
    new = guard.take_rollbacks()      # rollbacks since the last call, for the run's counters
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")


class NonFiniteLossError(FloatingPointError):
    """A loss, gradient norm or weight became NaN or infinite; the update must be rolled back."""


def raise_if_not_finite(loss: torch.Tensor | float, grad_norm: torch.Tensor | float | None) -> None:
    """Raises :class:`NonFiniteLossError` if ``loss`` or ``grad_norm`` (None: not computed) is
    NaN or infinite."""
    loss_value = float(loss)
    norm_value = None if grad_norm is None else float(grad_norm)
    if not math.isfinite(loss_value) or (norm_value is not None and not math.isfinite(norm_value)):
        raise NonFiniteLossError(f"loss {loss_value}, gradient norm {norm_value}")


class NonFiniteGuard:
    """A learner's last good state, and the rollback to it when an update meets a NaN or inf.

    Args:
        snapshot: Returns a copy of the learner's whole state (weights, optimizer, counters).
        restore: Loads such a copy back.
    """

    def __init__(
        self, snapshot: Callable[[], dict[str, Any]], restore: Callable[[dict[str, Any]], None]
    ) -> None:
        self._snapshot, self._restore = snapshot, restore
        self._good = snapshot()
        self.rollbacks = 0
        """Rollbacks since the learner was built."""
        self._reported = 0

    def run(self, update: Callable[[], T]) -> T | None:
        """``update()``, or None after rolling back to the last good state if it raised
        :class:`NonFiniteLossError` (counted and logged)."""
        try:
            return update()
        except NonFiniteLossError as err:
            self.roll_back(str(err))
            return None

    def mark_good(self, parameters: Iterable[torch.Tensor]) -> bool:
        """Makes the current state the rollback point if every weight in ``parameters`` is finite.

        Returns:
            False (after rolling back to the previous good state) if one is not.
        """
        if all(bool(torch.isfinite(p).all()) for p in parameters):
            self._good = self._snapshot()
            return True
        self.roll_back("non-finite weights")
        return False

    def roll_back(self, why: str) -> None:
        """Restores the last good state and counts the rollback."""
        self._restore(self._good)
        self.rollbacks += 1
        logger.error("%s: rolled back to the last good weights", why)

    def take_rollbacks(self) -> int:
        """Rollbacks since the last call (all of them at the first)."""
        new, self._reported = self.rollbacks - self._reported, self.rollbacks
        return new
