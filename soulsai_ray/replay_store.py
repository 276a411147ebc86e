"""ReplayStore: the DQN replay buffer behind its inbound checks, its stale filter and its counts.

Replay is the one source of the sample counts (accepted, stale, rejected, per node, model lag).
A distributed run wraps it in :class:`~soulsai_ray.actors.replay.ReplayActor`; a serial run
(``cluster=serial``) calls it directly. Neither knows anything the other does not.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.counts import BoundedCounts
from soulsai_ray.inbound import Limits, check_steps, check_transitions
from soulsai_ray.rejections import Rejections, batch_rows
from soulsai_ray.replay import SampledBatch
from soulsai_ray.replay_factory import replay_buffer
from soulsai_ray.steps import StepBatch
from soulsai_ray.transitions import TransitionBatch, fresh_mask


class ReplayStore:
    """Stores pushed transitions (or, with ``algo.replay_layout: frames``, env steps) and serves
    sampled batches to the learner.

    Every pushed batch passes :func:`~soulsai_ray.inbound.check_transitions` (frames:
    :func:`~soulsai_ray.inbound.check_steps`) against the env's spec and the run's limits or is
    rejected whole and counted. Samples produced by a policy more than ``max_model_lag``
    versions older than the newest are dropped and counted (a stale step's frame is still
    stored, for the transitions of the steps before it). The newest version is the largest the
    learner announced (:meth:`observe_version`) or sampled with, starting at
    ``learner_version``.

    Args:
        cfg: The DQN config (buffer kind and size, ``learning_starts``, ``max_model_lag``).
        limits: What a pushed batch may hold.
        seed: Seed of the buffer's sampling.
        saved_buffer: A buffer's ``state_dict`` to continue from (a resumed run), if any.
        learner_version: The newest published weight version when the store starts.
    """

    def __init__(
        self,
        cfg: DQNConfig,
        limits: Limits,
        seed: int,
        saved_buffer: dict[str, Any] | None = None,
        learner_version: int = 0,
    ) -> None:
        self.cfg = cfg
        self.limits = limits
        self.incarnation = uuid.uuid4().hex
        """Differs after every (re)start: the driver starts its replay ratio over on a new one."""
        self.buffer = replay_buffer(cfg, limits.obs, limits.num_actions, seed, limits.frame_stack)
        if saved_buffer is not None:
            self.buffer.load_state_dict(saved_buffer)
        self.learner_version = learner_version
        self.accepted = 0
        self.stale = 0
        self.lag_sum = 0
        self.accepted_by_node = BoundedCounts()
        self.rejections = Rejections()

    def __len__(self) -> int:
        return len(self.buffer)

    def add(self, batch: TransitionBatch | StepBatch, actor_index: int, node_id: str = "") -> bool:
        """Adds a pushed batch (the run's layout: transitions or steps) without its stale samples.

        Returns:
            False if the whole batch was rejected (counted, and logged naming the actor).
        """
        frames = self.cfg.replay_layout == "frames"
        check = check_steps if frames else check_transitions
        problem = check(batch, self.limits, self.learner_version)
        if problem is not None:
            self.rejections.record(problem, batch_rows(batch), actor_index, str(node_id))
            return False
        keep = fresh_mask(batch.versions, self.learner_version, self.cfg.max_model_lag)
        kept = int(np.count_nonzero(keep))
        if frames:
            self.buffer.add(batch, keep, checked=True)  # against self.limits, above
        elif kept:
            self.buffer.add(batch.select(keep), checked=True)
        self.lag_sum += int(np.sum(self.learner_version - batch.versions[keep]))
        self.accepted += kept
        self.stale += len(batch) - kept
        self.accepted_by_node.add(node_id, kept)
        return True

    def observe_version(self, version: int) -> None:
        """The learner announces a version before publishing it, so its samples are not future."""
        self.learner_version = max(self.learner_version, int(version))

    def sample(
        self, num_batches: int, batch_size: int, learner_version: int, beta: float | None = None
    ) -> list[SampledBatch]:
        """Up to ``num_batches`` batches; none until ``learning_starts`` transitions are stored
        (frames: complete transitions, one per stored step)."""
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
        """Counts since this store (re)started, for telemetry and the replay ratio."""
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
