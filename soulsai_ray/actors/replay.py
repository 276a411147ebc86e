"""ReplayActor: the replay buffer as a Ray actor, with the stale-sample filter.

Replay is the one source of the sample counts (accepted, stale, invalid, per node, model lag):
the driver reads them from :meth:`ReplayActor.stats` and nowhere else.
"""

from __future__ import annotations

import uuid

import numpy as np
import ray

from soulsai_ray.actors.restore import load_payload
from soulsai_ray.config import DQNConfig
from soulsai_ray.counts import BoundedCounts
from soulsai_ray.replay import (
    PrioritizedReplayBuffer,
    ReplayBuffer,
    SampledBatch,
    TransitionBatch,
    filter_stale,
)


@ray.remote(num_cpus=0)
class ReplayActor:
    """Stores transitions pushed by rollout actors and serves sampled batches to the learner.

    Transitions produced by a policy more than ``max_model_lag`` versions older than the
    learner's current one are dropped and counted; so are malformed batches and transitions with
    non-finite values. The env's sizes are constructor arguments, so a replay restarted by Ray
    validates the first batch it receives like any other.
    """

    def __init__(
        self,
        cfg: DQNConfig,
        obs_dim: int,
        num_actions: int,
        seed: int,
        checkpoint_dir: str = "",
        resume_path: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.obs_dim, self.num_actions = obs_dim, num_actions
        self.incarnation = uuid.uuid4().hex
        """Differs after every (re)start: the driver starts its replay ratio over on a new one."""
        if cfg.prioritized:
            self.buffer: ReplayBuffer = PrioritizedReplayBuffer(
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
        payload = load_payload(checkpoint_dir, resume_path) if checkpoint_dir else None
        saved = ((payload or {}).get("replay") or {}).get("buffer")
        if saved is not None:
            self.buffer.load_state_dict(saved)
        del payload, saved
        self.learner_version = 0
        self.accepted = 0
        self.stale = 0
        self.invalid = 0
        self.malformed = 0
        self.lag_sum = 0
        self.accepted_by_node = BoundedCounts()

    def add(self, batch: TransitionBatch, actor_index: int, node_id: str = "") -> str | None:
        """Adds a pushed batch after dropping stale and non-finite transitions.

        Returns:
            None, or why the whole batch was rejected.
        """
        problem = batch.validate(self.obs_dim, self.num_actions)
        if problem is not None:
            self.malformed += 1
            return f"batch from rollout actor {actor_index} rejected: {problem}"
        finite = batch.finite_mask()
        invalid = int((~finite).sum())
        if invalid:
            batch = batch.select(finite)
        batch, stale = filter_stale(batch, self.learner_version, self.cfg.max_model_lag)
        if len(batch):
            self.buffer.add(batch)
            self.lag_sum += int(np.sum(self.learner_version - batch.versions))
        self.accepted += len(batch)
        self.stale += stale
        self.invalid += invalid
        self.accepted_by_node.add(node_id, len(batch))
        return None

    def sample(
        self, num_batches: int, batch_size: int, learner_version: int, beta: float | None = None
    ) -> list[SampledBatch]:
        """Up to ``num_batches`` batches; none until ``learning_starts`` transitions are stored."""
        self.learner_version = max(self.learner_version, learner_version)
        if len(self.buffer) < max(self.cfg.learning_starts, batch_size):
            return []
        if beta is not None and isinstance(self.buffer, PrioritizedReplayBuffer):
            self.buffer.beta = beta
        return [self.buffer.sample(batch_size) for _ in range(num_batches)]

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Sets new priorities from TD errors (no-op for uniform replay)."""
        self.buffer.update_priorities(indices, td_errors)

    def state(self) -> dict[str, object]:
        """The buffer's contents for a checkpoint (``checkpoint.save_replay``)."""
        return {"buffer": self.buffer.state_dict()}

    def stats(self) -> dict[str, object]:
        """Counts since this replay (re)started, for telemetry and the replay ratio."""
        return {
            "incarnation": self.incarnation,
            "size": len(self.buffer),
            "accepted": self.accepted,
            "stale": self.stale,
            "invalid": self.invalid + self.malformed,
            "lag_sum": self.lag_sum,
            "accepted_by_node": self.accepted_by_node.as_dict(),
        }
