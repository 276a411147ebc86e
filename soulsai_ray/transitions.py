"""What rollout actors send: DQN's n-step transitions (the batch container, the n-step
accumulator and the stale-sample filter) and PPO's rollout batches. Plain numpy, no torch.

Each DQN rollout actor feeds every env step of its env (an `EnvStep`) into its own
`NStepAccumulator` and ships `pop()` results to the replay owner, which drops stale ones
(`fresh_mask`) before `ReplayBuffer.add`. With ``algo.replay_layout: frames`` it ships env steps
instead (:mod:`soulsai_ray.steps`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from soulsai_ray.observations import ObsSpec


@dataclass
class TransitionBatch:
    """A batch of n-step transitions, batch-first numpy arrays.

    Attributes:
        obs: [B, *obs_shape] observation at which the action was chosen (float32 vectors or
            uint8 images, as the run's `ObsSpec` says).
        actions: int64 [B] chosen actions.
        rewards: float32 [B] discounted n-step reward sum.
        next_obs: [B, *obs_shape] observation n steps later (or the final observation).
        discounts: float32 [B] gamma**k for bootstrapping, 0.0 if the episode terminated.
        next_masks: bool [B, num_actions] valid actions at `next_obs`.
        versions: int64 [B] policy version that chose `actions`.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    discounts: np.ndarray
    next_masks: np.ndarray
    versions: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def select(self, idx: np.ndarray) -> TransitionBatch:
        """Returns the transitions picked by a boolean mask or an index array (a copy)."""
        return TransitionBatch(**{name: getattr(self, name)[idx] for name in _FIELD_NAMES})

    @staticmethod
    def concat(batches: Sequence[TransitionBatch]) -> TransitionBatch:
        """Concatenates batches in order.

        Raises:
            ValueError: If `batches` is empty.
        """
        if not batches:
            raise ValueError("concat needs at least one batch")
        return TransitionBatch(
            **{name: np.concatenate([getattr(b, name) for b in batches]) for name in _FIELD_NAMES}
        )


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TransitionBatch))


def _zeros_batch(size: int, obs: ObsSpec, num_actions: int) -> TransitionBatch:
    """Returns a zero-filled batch of `size` rows with the dtypes `inbound` expects."""
    return TransitionBatch(
        obs=obs.zeros(size),
        actions=np.zeros(size, np.int64),
        rewards=np.zeros(size, np.float32),
        next_obs=obs.zeros(size),
        discounts=np.zeros(size, np.float32),
        next_masks=np.zeros((size, num_actions), np.bool_),
        versions=np.zeros(size, np.int64),
    )


def fresh_mask(versions: np.ndarray, current_version: int, max_model_lag: int) -> np.ndarray:
    """Which samples' versions are at most ``max_model_lag`` behind ``current_version``.

    Raises:
        ValueError: If `max_model_lag` is negative.
    """
    if max_model_lag < 0:
        raise ValueError(f"max_model_lag must be >= 0, got {max_model_lag}")
    return np.asarray(versions) >= current_version - max_model_lag


class EnvStep(NamedTuple):
    """One env step of one env, as a sampler records it for replay.

    Attributes:
        obs: Observation at which `action` was chosen (a vector or a uint8 image).
        action: Chosen action.
        reward: Reward received for the step.
        next_obs: Observation after the step.
        terminated: The episode ended in a terminal state (no bootstrap).
        truncated: The episode was cut off, e.g. by a time limit (bootstrap from `next_obs`).
        next_mask: Valid actions at `next_obs`, shape [num_actions]; None means all valid.
        version: Policy version that chose `action`.
    """

    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    next_mask: np.ndarray | None
    version: int


class _Step(NamedTuple):
    """One env step waiting inside `NStepAccumulator`."""

    obs: np.ndarray
    action: int
    reward: float
    version: int


class _Emitted(NamedTuple):
    """One finished n-step transition waiting for `NStepAccumulator.pop`."""

    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    discount: float
    next_mask: np.ndarray
    version: int


def _as_obs(obs: np.ndarray) -> np.ndarray:
    """Copies an observation: a uint8 image [H, W, C] stays uint8, anything else becomes a
    float32 vector; rejects other shapes."""
    array = np.array(obs)
    if array.dtype == np.uint8 and array.ndim == 3:
        return array
    array = array.astype(np.float32)
    if array.ndim != 1:
        raise ValueError(f"observations must be 1-D vectors or uint8 images, got {array.shape}")
    return array


def _as_mask(mask: np.ndarray | None, num_actions: int) -> np.ndarray:
    """Copies a valid-action mask as bool [num_actions]; None means all actions are valid."""
    if mask is None:
        return np.ones(num_actions, np.bool_)
    array = np.array(mask, dtype=np.bool_)
    if array.shape != (num_actions,):
        raise ValueError(f"next_mask has shape {array.shape}, expected ({num_actions},)")
    return array


class NStepAccumulator:
    """Turns a stream of 1-step env transitions of ONE env into n-step transitions.

    A step is emitted once n steps are pending (reward sum over n steps, discount gamma**n). At
    episode end all pending steps are emitted with their partial sums and `next_obs` set to the
    final observation: with discount 0 on termination, and gamma**k (k = steps covered) on
    truncation, so the learner bootstraps from the final observation.
    """

    def __init__(self, n: int, gamma: float, num_actions: int) -> None:
        """Creates an empty accumulator.

        Args:
            n: Number of steps per transition, >= 1.
            gamma: Discount factor in [0, 1].
            num_actions: Size of the discrete action space (length of action masks).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        self._n = self._next_n = n
        self._gamma = gamma
        self._num_actions = num_actions
        self._pending: deque[_Step] = deque()
        self._done: list[_Emitted] = []

    @property
    def pending(self) -> int:
        """Number of steps not yet emitted."""
        return len(self._pending)

    @property
    def n(self) -> int:
        """Steps per transition of the episode in progress."""
        return self._n

    def set_n(self, n: int) -> None:
        """Makes transitions of ``n`` steps from the next episode (or crash reset) on.

        The running episode keeps its n, so each of its transitions has the same horizon.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._next_n = n
        if not self._pending:
            self._n = n

    def push(self, step: EnvStep) -> None:
        """Adds one env step; `terminated` wins over `truncated` when both are set."""
        mask = _as_mask(step.next_mask, self._num_actions)
        final = _as_obs(step.next_obs)
        pending = _Step(_as_obs(step.obs), int(step.action), float(step.reward), int(step.version))
        self._pending.append(pending)
        if step.terminated or step.truncated:
            self._flush(final, mask, bootstrap=not step.terminated)
            self._n = self._next_n
        elif len(self._pending) == self._n:
            ret = sum(self._gamma**i * p.reward for i, p in enumerate(self._pending))
            self._emit(self._pending.popleft(), ret, final, self._gamma**self._n, mask)

    def pop(self) -> TransitionBatch | None:
        """Returns all transitions completed so far (None if there are none) and clears them."""
        if not self._done:
            return None
        obs, actions, rewards, next_obs, discounts, masks, versions = zip(*self._done, strict=True)
        self._done = []
        return TransitionBatch(
            obs=np.stack(obs),
            actions=np.array(actions, np.int64),
            rewards=np.array(rewards, np.float32),
            next_obs=np.stack(next_obs),
            discounts=np.array(discounts, np.float32),
            next_masks=np.stack(masks),
            versions=np.array(versions, np.int64),
        )

    def reset(self) -> None:
        """Discards pending partial transitions (e.g. after an env crash); keeps completed ones."""
        self._pending.clear()
        self._n = self._next_n

    def _flush(self, final_obs: np.ndarray, mask: np.ndarray, bootstrap: bool) -> None:
        """Emits every pending step, oldest first, with next_obs = `final_obs`."""
        finished = []
        ret = 0.0
        for k, step in enumerate(reversed(self._pending), start=1):
            ret = step.reward + self._gamma * ret
            finished.append((step, ret, self._gamma**k if bootstrap else 0.0))
        for step, step_ret, discount in reversed(finished):
            self._emit(step, step_ret, final_obs, discount, mask)
        self._pending.clear()

    def _emit(
        self, step: _Step, ret: float, next_obs: np.ndarray, discount: float, mask: np.ndarray
    ) -> None:
        self._done.append(
            _Emitted(step.obs, step.action, ret, next_obs, discount, mask, step.version)
        )


@dataclass
class RolloutBatch:
    """One actor's rollout of ``n_steps x num_envs``, as time-major numpy arrays."""

    obs: np.ndarray
    """[T, E, *obs_shape]: the observation each action was taken in (float32 or uint8)."""
    actions: np.ndarray
    """int64 [T, E]."""
    logprobs: np.ndarray
    """float32 [T, E]: log-probability of the action under the acting policy."""
    values: np.ndarray
    """float32 [T, E]: value estimate of ``obs``."""
    rewards: np.ndarray
    """float32 [T, E]."""
    terminated: np.ndarray
    """bool [T, E]: the env ended the episode (no bootstrap)."""
    truncated: np.ndarray
    """bool [T, E]: a time limit cut the episode (bootstrap from ``final_values``)."""
    final_values: np.ndarray
    """float32 [T, E]: value of the true next observation where truncated, else 0."""
    last_values: np.ndarray
    """float32 [E]: value of the observation after the last step (bootstrap for open episodes)."""
    masks: np.ndarray
    """bool [T, E, A]: valid actions in ``obs`` (all True when the env gives none)."""
    version: int
    """Policy version that produced the batch."""

    def __len__(self) -> int:
        return int(self.actions.size)
