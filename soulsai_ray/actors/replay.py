"""ReplayActor: the replay buffer as a Ray actor, with the inbound checks and the stale filter.

Replay is the one source of the sample counts (accepted, stale, rejected, per node, model lag):
the driver reads them from :meth:`ReplayActor.stats` and nowhere else.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import ray
from ray.exceptions import RayError

from soulsai_ray.actors.restore import load_payload
from soulsai_ray.config import DQNConfig
from soulsai_ray.counts import BoundedCounts
from soulsai_ray.inbound import Limits, Rejections, batch_rows, check_transitions
from soulsai_ray.replay import (
    SampledBatch,
    TransitionBatch,
    filter_stale,
    replay_buffer,
)

VERSION_LOOKUP_TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ReplayActor:
    """Stores transitions pushed by rollout actors and serves sampled batches to the learner.

    Every pushed batch passes :func:`~soulsai_ray.inbound.check_transitions` against the env's
    spec and the run's limits (constructor arguments, so a replay restarted by Ray checks its
    first batch like any other) or is rejected whole and counted. Transitions produced by a
    policy more than ``max_model_lag`` versions older than the newest are dropped and counted.
    The newest version is the largest the learner announced (:meth:`observe_version`, sent
    before each publish) or sampled with, and at start the weight store's.
    """

    def __init__(
        self,
        cfg: DQNConfig,
        limits: Limits,
        seed: int,
        weight_store: str = "",
        checkpoint_dir: str = "",
        resume_path: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.limits = limits
        obs_dim, num_actions = limits.obs_dim, limits.num_actions
        self.incarnation = uuid.uuid4().hex
        """Differs after every (re)start: the driver starts its replay ratio over on a new one."""
        self.buffer = replay_buffer(cfg, obs_dim, num_actions, seed)
        payload = load_payload(checkpoint_dir, resume_path) if checkpoint_dir else None
        saved = ((payload or {}).get("replay") or {}).get("buffer")
        if saved is not None:
            self.buffer.load_state_dict(saved)
        del payload, saved
        self.learner_version = _published_version(weight_store)
        self.accepted = 0
        self.stale = 0
        self.lag_sum = 0
        self.accepted_by_node = BoundedCounts()
        self.rejections = Rejections()

    def add(self, batch: TransitionBatch, actor_index: int, node_id: str = "") -> bool:
        """Adds a pushed batch after dropping stale transitions.

        Returns:
            False if the whole batch was rejected (counted, and logged naming the actor).
        """
        problem = check_transitions(batch, self.limits, self.learner_version)
        if problem is not None:
            self.rejections.record(problem, batch_rows(batch), actor_index, str(node_id))
            return False
        batch, stale = filter_stale(batch, self.learner_version, self.cfg.max_model_lag)
        if len(batch):
            self.buffer.add(batch)
            self.lag_sum += int(np.sum(self.learner_version - batch.versions))
        self.accepted += len(batch)
        self.stale += stale
        self.accepted_by_node.add(node_id, len(batch))
        return True

    def observe_version(self, version: int) -> None:
        """The learner announces a version before publishing it, so its samples are not future."""
        self.learner_version = max(self.learner_version, int(version))

    def sample(
        self, num_batches: int, batch_size: int, learner_version: int, beta: float | None = None
    ) -> list[SampledBatch]:
        """Up to ``num_batches`` batches; none until ``learning_starts`` transitions are stored."""
        self.observe_version(learner_version)
        if len(self.buffer) < max(self.cfg.learning_starts, batch_size):
            return []
        return [self.buffer.sample(batch_size, beta) for _ in range(num_batches)]

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Sets new priorities from TD errors (no-op for uniform replay)."""
        self.buffer.update_priorities(indices, td_errors)

    def state(self) -> dict[str, object]:
        """The buffer's contents for a checkpoint (``checkpoint.save_replay``)."""
        return {"buffer": self.buffer.state_dict()}

    def stats(self) -> dict[str, object]:
        """Counts since this replay (re)started, for telemetry and the replay ratio."""
        rejected = self.rejections.as_dict()
        return {
            "incarnation": self.incarnation,
            "size": len(self.buffer),
            "accepted": self.accepted,
            "stale": self.stale,
            "invalid": rejected["rows"],
            "lag_sum": self.lag_sum,
            "accepted_by_node": self.accepted_by_node.as_dict(),
            "rejected_by_reason": rejected["by_reason"],
            "rejected_by_node": rejected["by_node"],
        }


def _published_version(weight_store: str) -> int:
    """The weight store's newest version (0 if there is none or the store cannot be reached)."""
    if not weight_store:
        return 0
    try:
        store = ray.get_actor(weight_store)
        version, _ = ray.get(store.latest.remote(), timeout=VERSION_LOOKUP_TIMEOUT_S)
    except (RayError, ValueError) as err:
        logger.warning("could not read the newest weight version (%s)", type(err).__name__)
        return 0
    return max(int(version), 0)
