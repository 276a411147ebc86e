"""ReplayActor: the replay buffer as a Ray actor, with the stale-sample filter."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import ray

from soulsai_ray.actors.restore import load_payload
from soulsai_ray.config import DQNConfig
from soulsai_ray.replay import (
    PrioritizedReplayBuffer,
    ReplayBuffer,
    SampledBatch,
    TransitionBatch,
    filter_stale,
)


@dataclass
class AddReceipt:
    """What replay did with one pushed batch."""

    accepted: int
    stale: int
    invalid: int
    lag_sum: int
    """Sum over accepted transitions of (learner version - transition version)."""
    error: str | None = None


@ray.remote(num_cpus=0)
class ReplayActor:
    """Stores transitions pushed by rollout actors and serves sampled batches to the learner.

    Transitions produced by a policy more than ``max_model_lag`` versions older than the
    learner's current one are dropped and counted; so are malformed batches and transitions with
    non-finite values.
    """

    def __init__(
        self,
        cfg: DQNConfig,
        seed: int,
        checkpoint_dir: str = "",
        resume_path: str | None = None,
        weight_store: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.seed = seed
        self.buffer: ReplayBuffer | None = None
        self._reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        if weight_store is not None:
            ray.get_actor(weight_store).register_start.remote("replay")
        payload = load_payload(checkpoint_dir, resume_path) if checkpoint_dir else None
        replay_state = (payload or {}).get("replay") or {}
        self._restore_state = replay_state.get("buffer")
        self.learner_version = 0
        self.stale = 0
        self.invalid = 0
        self.malformed = 0
        self.sampled = 0
        self.accepted_by_actor: dict[int, int] = defaultdict(int)
        self.accepted_by_node: dict[str, int] = defaultdict(int)

    def set_spec(self, obs_dim: int, num_actions: int) -> None:
        """Allocates the buffer once the env's sizes are known (read from a rollout actor)."""
        if self.buffer is not None:
            return
        cfg, seed = self.cfg, self.seed
        self.obs_dim, self.num_actions = obs_dim, num_actions
        if cfg.prioritized:
            self.buffer = PrioritizedReplayBuffer(
                cfg.buffer_size,
                obs_dim,
                num_actions,
                cfg.per_alpha,
                cfg.per_beta_start,
                cfg.per_eps,
                seed,
            )
        else:
            self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, num_actions, seed)
        if self._restore_state is not None:
            self.buffer.load_state_dict(self._restore_state)
            self._restore_state = None

    def add(self, batch: TransitionBatch, actor_index: int, node_id: str = "") -> AddReceipt:
        """Adds a pushed batch after dropping stale and non-finite transitions."""
        if self.buffer is None and self._reconstructed:
            self.set_spec(batch.obs.shape[-1], batch.next_masks.shape[-1])  # restarted by Ray
        if self.buffer is None:
            return AddReceipt(0, 0, 0, 0, error="replay received data before its spec was set")
        problem = batch.validate(self.obs_dim, self.num_actions)
        if problem is not None:
            self.malformed += 1
            return AddReceipt(
                0, 0, 0, 0, error=f"batch from rollout actor {actor_index} rejected: {problem}"
            )
        finite = batch.finite_mask()
        invalid = int((~finite).sum())
        if invalid:
            batch = batch.select(finite)
        batch, stale = filter_stale(batch, self.learner_version, self.cfg.max_model_lag)
        if len(batch):
            self.buffer.add(batch)
        self.stale += stale
        self.invalid += invalid
        self.accepted_by_actor[actor_index] += len(batch)
        self.accepted_by_node[node_id] += len(batch)
        lag = int(np.sum(self.learner_version - batch.versions)) if len(batch) else 0
        return AddReceipt(len(batch), stale, invalid, lag)

    def sample(
        self, num_batches: int, batch_size: int, learner_version: int, beta: float | None = None
    ) -> list[SampledBatch]:
        """Up to ``num_batches`` batches; none until ``learning_starts`` transitions are stored."""
        self.learner_version = max(self.learner_version, learner_version)
        if self.buffer is None or len(self.buffer) < max(self.cfg.learning_starts, batch_size):
            return []
        if beta is not None and isinstance(self.buffer, PrioritizedReplayBuffer):
            self.buffer.beta = beta
        self.sampled += num_batches * batch_size
        return [self.buffer.sample(batch_size) for _ in range(num_batches)]

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Sets new priorities from TD errors (no-op for uniform replay)."""
        self.buffer.update_priorities(indices, td_errors)

    def state(self) -> dict[str, object]:
        """The buffer's contents for a checkpoint (``checkpoint.save_replay``)."""
        return {"buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def stats(self) -> dict[str, object]:
        """Counters for telemetry."""
        return {
            "size": len(self.buffer) if self.buffer is not None else 0,
            "total_added": self.buffer.total_added if self.buffer is not None else 0,
            "stale": self.stale,
            "invalid": self.invalid,
            "malformed": self.malformed,
            "sampled": self.sampled,
            "accepted_by_actor": dict(self.accepted_by_actor),
            "accepted_by_node": dict(self.accepted_by_node),
        }
