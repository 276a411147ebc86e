"""Prioritized replay over frames stored once: :class:`PrioritizedFrameReplay`."""

from __future__ import annotations

from typing import Any

import numpy as np

from soulsai_ray import priorities as prio
from soulsai_ray.frame_replay import DRAW_ROUNDS, FrameReplay
from soulsai_ray.replay import SampledBatch

__all__ = ["PrioritizedFrameReplay"]


class PrioritizedFrameReplay(FrameReplay):
    """Proportional prioritized replay (as :class:`~soulsai_ray.replay.PrioritizedReplayBuffer`)
    over frames stored once.

    A slot has a priority while a complete transition starts there whose frames are all live: the
    largest priority so far once its n steps are written, ``(|td| + eps)**alpha`` after
    `update_priorities`, and 0 again as soon as a frame it reads (its own or a stacked one) is
    overwritten, so draws land on valid transitions. Sampling is stratified and importance
    weights are max-normalized, as in the transitions replay.

    Args:
        frame_args, frame_kwargs: `FrameReplay`'s arguments.
        alpha, beta, eps: As `PrioritizedReplayBuffer`'s (here keywords only).
    """

    def __init__(
        self,
        *frame_args: Any,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        **frame_kwargs: Any,
    ) -> None:
        super().__init__(*frame_args, **frame_kwargs)
        prio.check_priority_exponents(alpha, beta, eps)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self._tree = prio.SumTree(self.capacity)
        self._max_priority = 1.0
        self._staged: dict[int, float] = {}
        """Priorities of the slots a push or batch changed (last value wins), until stored."""

    @property
    def nbytes(self) -> int:
        """Bytes of storage and sum tree."""
        return self.ring.nbytes + self._tree.nbytes

    def sample(self, batch_size: int, beta: float | None = None) -> SampledBatch:
        """Draws ``batch_size`` valid transitions by priority; a given ``beta`` becomes the
        replay's exponent from now on.

        Raises:
            ValueError: ``batch_size`` < 1, or no valid transition is stored.
        """
        if beta is not None:
            self.beta = beta
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._tree.total <= 0:
            raise ValueError("the replay holds no complete transition to sample")
        chosen = self._drawable(prio.stratified_draw(self._tree, self._rng, batch_size))
        for _ in range(DRAW_ROUNDS):
            redraw = chosen < 0
            if not redraw.any():
                break
            fresh = prio.stratified_draw(self._tree, self._rng, int(redraw.sum()))
            chosen[redraw] = self._drawable(fresh)
        redraw = chosen < 0
        if redraw.any():  # rounding kept landing beside the mass: draw from the leaves directly
            every = np.flatnonzero(self._tree.get(np.arange(self.capacity)) > 0)
            if not len(every):
                raise ValueError("the replay holds no complete transition to sample")
            p = self._tree.get(every)
            chosen[redraw] = self._rng.choice(every, int(redraw.sum()), p=p / p.sum())
        weights = prio.importance_weights(self._tree, chosen, self.beta)
        return SampledBatch(self.ring.transitions(chosen), chosen, weights)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Sets p_i = (|td_i| + eps)**alpha for sampled slots that still start a valid
        transition (one whose frames were overwritten since it was drawn keeps none).

        Raises:
            ValueError: On mismatched shapes, non-finite TD errors or slots outside the ring.
        """
        indices, priorities = prio.td_priorities(indices, td_errors, self.alpha, self.eps)
        if indices.size == 0:
            return
        if indices.min() < 0 or indices.max() >= self.capacity:
            raise ValueError(f"indices outside the {self.capacity} slots")
        held = self._tree.get(indices) > 0
        self._tree.update(indices[held], priorities[held])
        self._max_priority = max(self._max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        """The frames replay's state plus priorities, max priority, alpha, beta and eps."""
        return {**super().state_dict(), **prio.priority_state(self, self.ring.written)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict`. A uniform frames replay's state gives every valid
        transition the same priority (1) and keeps this replay's beta.

        Raises:
            ValueError: As `FrameReplay.load_state_dict`; a state saved with another alpha or
                eps, or priorities that are not finite, or held by slots that start no valid
                transition.
        """
        if "priorities" in state and (state["alpha"], state["eps"]) != (self.alpha, self.eps):
            raise ValueError("state was saved with another alpha or eps")
        super().load_state_dict(state)
        slots = np.arange(self.ring.written)
        valid = self.ring.valid(slots)
        if "priorities" not in state:
            priorities, max_priority = valid.astype(np.float64), 1.0
        else:
            priorities = np.asarray(state["priorities"], np.float64)
            max_priority = float(state["max_priority"])
            if priorities.shape != slots.shape or not np.isfinite(priorities).all():
                raise ValueError(f"priorities must be finite, one per written slot ({len(slots)})")
            if (priorities < 0).any() or ((priorities > 0) & ~valid).any():
                raise ValueError("priorities held by slots that start no valid transition")
            self.beta = float(state["beta"])
        self._tree = prio.SumTree(self.capacity)
        self._tree.update(slots, priorities)
        self._max_priority = max_priority

    def _drawable(self, slots: np.ndarray) -> np.ndarray:
        """``slots`` with -1 where no valid transition starts; priorities found on invalid
        slots (a frame they stack was lost without a link to them) are cleared."""
        held = self._tree.get(slots) > 0
        valid = self.ring.valid(slots)
        self._tree.update(slots[held & ~valid], 0.0)
        return np.where(held & valid, slots, -1)

    def _write(self, frame: np.ndarray, previous: int, mask: np.ndarray | None) -> int:
        lost = self.ring.total_written - self.capacity  # the slot number this write overwrites
        if lost >= 0:
            self._staged.update(dict.fromkeys(self.ring.readers(lost).tolist(), 0.0))
        return super()._write(frame, previous, mask)

    def _completed(self, number: int) -> None:
        slot = number % self.capacity
        if self.ring.valid(np.array([slot]))[0]:
            self._staged[slot] = self._max_priority

    def _stored(self) -> None:
        """Applies the priorities a push or batch set, in one update of the tree."""
        if self._staged:
            slots = np.fromiter(self._staged, np.int64, len(self._staged))
            self._tree.update(slots, np.fromiter(self._staged.values(), np.float64, len(slots)))
            self._staged.clear()
