"""Replay storage for off-policy learning: uniform ring buffer and prioritized replay.

The learner calls `sample`, trains on the batch, then `update_priorities` with its TD errors.
Transitions and the n-step accumulator live in :mod:`soulsai_ray.transitions`, the sum tree and
priority arithmetic in :mod:`soulsai_ray.priorities`; the replay a config asks for (these, or a
frames replay, :mod:`soulsai_ray.frame_replay`) is built by
:func:`soulsai_ray.replay_factory.replay_buffer`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from soulsai_ray.inbound import Limits, check_transitions
from soulsai_ray.observations import ObsSpec
from soulsai_ray.priorities import (
    SumTree,
    check_priority_exponents,
    importance_weights,
    priority_state,
    stratified_draw,
    td_priorities,
)
from soulsai_ray.transitions import (
    _FIELD_NAMES,
    TransitionBatch,
    _zeros_batch,
)

__all__ = ["PrioritizedReplayBuffer", "ReplayBuffer", "SampledBatch"]


@dataclass
class SampledBatch:
    """Transitions drawn from a replay buffer.

    Attributes:
        batch: The sampled transitions.
        indices: int64 [B] storage slots, to pass back to `update_priorities`.
        weights: float32 [B] importance weights, max-normalized to 1 (all ones when uniform).
    """

    batch: TransitionBatch
    indices: np.ndarray
    weights: np.ndarray


class ReplayBuffer:
    """Uniform ring buffer of n-step transitions.

    Transition number k (counting every transition ever added) lives in slot k % capacity, so
    the newest `capacity` transitions are kept.

    Attributes:
        capacity: Maximum number of stored transitions.
        total_added: Number of transitions ever added, including overwritten ones.
    """

    def __init__(
        self, capacity: int, obs_spec: ObsSpec | int, num_actions: int, seed: int = 0
    ) -> None:
        """Allocates zeroed storage for `capacity` transitions.

        Args:
            capacity: Maximum number of stored transitions.
            obs_spec: What an observation is (an int: a float32 vector of that size); images
                are stored as uint8.
            num_actions: Size of the discrete action space.
            seed: Seed of the sampling RNG.
        """
        self.obs_spec = ObsSpec.of(obs_spec)
        if capacity < 1 or num_actions < 1:
            raise ValueError(f"need capacity, num_actions >= 1, got {capacity}, {num_actions}")
        self.capacity = capacity
        self.num_actions = num_actions
        self.total_added = 0
        self._size = 0
        self._storage = _zeros_batch(capacity, self.obs_spec, num_actions)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self._size

    def add(self, batch: TransitionBatch, checked: bool = False) -> None:
        """Stores `batch`, overwriting the oldest transitions once full.

        Args:
            batch: The transitions.
            checked: The caller has passed the batch through `inbound.check_transitions`
                against this buffer's sizes or stricter limits (`ReplayStore`); else it is
                checked here.

        Raises:
            ValueError: If the batch fails `inbound.check_transitions` (sizes only).
        """
        problem = None if checked else check_transitions(batch, self._shapes(), None)
        if problem is not None:
            raise ValueError(f"invalid batch: {problem.detail}")
        n = len(batch)
        kept = min(n, self.capacity)
        if kept < n:
            batch = batch.select(np.arange(n - kept, n))
        slots = (self.total_added + n - kept + np.arange(kept)) % self.capacity
        for name in _FIELD_NAMES:
            getattr(self._storage, name)[slots] = getattr(batch, name)
        self.total_added += n
        self._size = min(self._size + n, self.capacity)
        self._on_write(slots)

    def sample(self, batch_size: int, beta: float | None = None) -> SampledBatch:
        """Draws `batch_size` stored transitions with replacement.

        Args:
            batch_size: Transitions to draw.
            beta: The learner's importance-weight exponent for prioritized replay; uniform
                replay has nothing to correct and ignores it.

        Raises:
            ValueError: If the buffer is empty or `batch_size` < 1.
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        indices, weights = self._draw(batch_size)
        return SampledBatch(self._storage.select(indices), indices, weights)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Does nothing: uniform replay has no priorities."""

    def state_dict(self) -> dict[str, Any]:
        """Returns copies of the stored transitions, counters and RNG state."""
        state: dict[str, Any] = {
            name: getattr(self._storage, name)[: self._size].copy() for name in _FIELD_NAMES
        }
        spec = self.obs_spec
        state.update(
            layout="transitions",
            capacity=self.capacity,
            obs_shape=list(spec.shape),
            obs_dtype=spec.dtype,
            obs_high=spec.high,
            num_actions=self.num_actions,
            total_added=self.total_added,
            rng_state=copy.deepcopy(self._rng.bit_generator.state),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict`; later samples match those of the saved buffer.

        Raises:
            ValueError: If the state belongs to a frames replay, a buffer of another shape, or
                is inconsistent.
        """
        layout = state.get("layout", "transitions")
        if layout != "transitions":
            raise ValueError(
                f"the saved replay stores {layout} (algo.replay_layout={layout}), this run stores "
                "transitions: resume with the saved layout, or without the saved replay"
            )
        for key in ("capacity", "num_actions"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]}, buffer has {getattr(self, key)}")
        saved = _saved_obs_spec(state)
        if saved != self.obs_spec:
            raise ValueError(
                f"state holds {saved.describe()} observations, buffer {self.obs_spec.describe()}"
            )
        stored = TransitionBatch(**{name: state[name] for name in _FIELD_NAMES})
        problem = check_transitions(stored, self._shapes(), None)
        if problem is not None:
            raise ValueError(f"invalid stored transitions: {problem.detail}")
        total_added = int(state["total_added"])
        if len(stored) != min(total_added, self.capacity):
            raise ValueError(f"{len(stored)} stored transitions but total_added={total_added}")
        self._storage = _zeros_batch(self.capacity, self.obs_spec, self.num_actions)
        for name in _FIELD_NAMES:
            getattr(self._storage, name)[: len(stored)] = getattr(stored, name)
        self._size = len(stored)
        self.total_added = total_added
        self._rng.bit_generator.state = copy.deepcopy(state["rng_state"])

    def _shapes(self) -> Limits:
        return Limits.of_shapes(self.obs_spec, self.num_actions)

    def _draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns sampled slots and their importance weights."""
        indices = self._rng.integers(0, self._size, size=batch_size, dtype=np.int64)
        return indices, np.ones(batch_size, np.float32)

    def _on_write(self, slots: np.ndarray) -> None:
        """Called after `add` wrote new transitions into `slots`."""


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016) with a vectorized numpy sum tree.

    Slot i is drawn with probability P(i) = p_i / sum_j p_j, with p_i = (|td_i| + eps)**alpha
    after `update_priorities` and the largest priority seen so far for new transitions. Sampling is
    stratified: one draw from each of B equal slices of the total priority mass. Importance weights
    are (N * P(i))**-beta divided by their maximum within the batch.

    Priorities are kept per slot: an update for a slot overwritten since it was sampled applies
    to the new transition.

    Attributes:
        alpha: Priority exponent (0 gives uniform sampling).
        beta: Importance-weight exponent; the learner anneals it towards 1.
        eps: Added to |td| so that no transition has zero probability.
    """

    def __init__(
        self,
        capacity: int,
        obs_spec: ObsSpec | int,
        num_actions: int,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int = 0,
    ) -> None:
        """Allocates storage and a sum tree; see `ReplayBuffer` and the class attributes."""
        super().__init__(capacity, obs_spec, num_actions, seed)
        check_priority_exponents(alpha, beta, eps)
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self._tree = SumTree(capacity)
        self._max_priority = 1.0

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Sets p_i = (|td_i| + eps)**alpha for the sampled slots `indices`.

        Raises:
            ValueError: On mismatched shapes, non-finite TD errors or slots that hold no data.
        """
        indices, priorities = td_priorities(indices, td_errors, self.alpha, self.eps)
        if indices.size == 0:
            return
        if indices.min() < 0 or indices.max() >= self._size:
            raise ValueError(f"indices outside the {self._size} filled slots")
        self._tree.update(indices, priorities)
        self._max_priority = max(self._max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        """Returns the uniform buffer's state plus priorities, max priority and beta."""
        return {**super().state_dict(), **priority_state(self, self._size)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict`; `alpha` and `eps` must match this buffer's.

        Raises:
            ValueError: On a state from a differently configured buffer or bad priorities.
        """
        if (state["alpha"], state["eps"]) != (self.alpha, self.eps):
            raise ValueError("state was saved with another alpha or eps")
        priorities = np.asarray(state["priorities"], np.float64)
        if priorities.shape != state["actions"].shape or not (priorities > 0).all():
            raise ValueError("priorities must be positive, one per stored transition")
        super().load_state_dict(state)
        self._tree = SumTree(self.capacity)
        self._tree.update(np.arange(self._size), priorities)
        self._max_priority = float(state["max_priority"])
        self.beta = float(state["beta"])

    def sample(self, batch_size: int, beta: float | None = None) -> SampledBatch:
        """Draws by priority; a given `beta` becomes the buffer's exponent from now on."""
        if beta is not None:
            self.beta = beta
        return super().sample(batch_size)

    def _draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        # Rounding can walk past the last filled slot into empty (zero) leaves; clamp back.
        indices = np.minimum(stratified_draw(self._tree, self._rng, batch_size), self._size - 1)
        return indices, importance_weights(self._tree, indices, self.beta)

    def _on_write(self, slots: np.ndarray) -> None:
        self._tree.update(slots, np.full(slots.shape, self._max_priority))


def _saved_obs_spec(state: dict[str, Any]) -> ObsSpec:
    """The observation spec a buffer's state was saved with (older states: a vector size)."""
    if "obs_dim" in state:
        return ObsSpec.vector(int(state["obs_dim"]))
    return ObsSpec(tuple(state["obs_shape"]), str(state["obs_dtype"]), float(state["obs_high"]))
