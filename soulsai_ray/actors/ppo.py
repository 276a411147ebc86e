"""PPO's learner shell; the rollout actor is in `soulsai_ray.actors.ppo_rollout` (its process
never imports torch).

The driver hands weight references to the rollout actors itself, so PPO needs no weight store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

from soulsai_ray.actors.restore import load_payload
from soulsai_ray.actors.shell import next_version, setup_process
from soulsai_ray.config import TrainConfig
from soulsai_ray.inbound import Limits, check_rollout
from soulsai_ray.rejections import Rejections, batch_rows
from soulsai_ray.transitions import RolloutBatch


@dataclass
class PPOUpdateReport:
    """Metrics of one PPO iteration's update, and the newly published weights."""

    version: int
    weights: list[ray.ObjectRef]
    gradient_steps: int
    metrics: dict[str, float]
    busy_s: float
    samples: int
    """Transitions trained on in this update."""
    rejected: dict[str, Any]
    """Batches left out of this update by the inbound checks (`Rejections.as_dict` form)."""
    nan_rollbacks: int
    """Updates rolled back because a number became NaN or inf, since the previous report
    (`NonFiniteGuard.take_rollbacks`)."""


@ray.remote(num_cpus=0)
class PPOLearnerActor:
    """Runs PPO updates on the batches of one iteration and publishes the new weights."""

    def __init__(
        self,
        cfg: TrainConfig,
        limits: Limits,
        checkpoint_dir: str,
        resume_path: str | None = None,
    ) -> None:
        setup_process(cfg)
        from soulsai_ray.algos.ppo import PPOLearner  # torch: here, not in the driver
        from soulsai_ray.algos.publish import resolve_device

        self.limits = limits
        self.rejections = Rejections()
        self.learner = PPOLearner(
            cfg.algo, limits.obs, limits.num_actions, resolve_device(cfg.device), cfg.seed
        )
        self.version = 0
        self.gradient_steps = 0
        payload = load_payload(checkpoint_dir, resume_path)
        if payload is not None:
            self.learner.load_state_dict(payload["learner"])
            self.version = int(payload["version"])
            self.gradient_steps = int(payload["gradient_steps"])
        self._published = ray.put(self.learner.policy_weights())

    def ready(self) -> tuple[int, list[ray.ObjectRef]]:
        """The current version and weights once construction is done."""
        return self.version, [self._published]

    def republish(self, floor: int) -> tuple[int, list[ray.ObjectRef]]:
        """Publishes the current weights as a version above ``floor`` (after a restart)."""
        self.version = next_version(self.version, floor)
        self._published = ray.put(self.learner.policy_weights())
        return self.version, [self._published]

    def update(
        self, progress: float, senders: list[tuple[int, str]], *batches: RolloutBatch
    ) -> PPOUpdateReport:
        """One PPO update over the ``batches`` that pass the inbound checks.

        Args:
            progress: Fraction of the run done (for schedules).
            senders: ``(actor index, node id)`` of each batch, for the rejection counts and log.
            batches: Rollouts the driver picked for the current version.
        """
        start = time.perf_counter()
        good = []
        rejected = Rejections(log_every_s=0.0)  # this call's counts; logged via self.rejections
        for (index, node_id), batch in zip(senders, batches, strict=True):
            problem = check_rollout(batch, self.limits, self.version)
            if problem is None:
                good.append(batch)
                continue
            rows = batch_rows(batch)
            self.rejections.record(problem, rows, index, node_id)
            rejected.merge({problem.reason: 1}, {node_id or "unknown": 1}, rows)
        metrics: dict[str, float] = {}
        samples = 0
        if good:
            metrics = self.learner.update(good, progress)
            samples = 0 if metrics.get("rolled_back") else int(metrics.get("samples", 0))
            minibatch = self.learner.cfg.minibatch_size
            self.gradient_steps += int(metrics.get("epochs_done", 0)) * -(-samples // minibatch)
            self.version += 1
            self._published = ray.put(self.learner.policy_weights())
        return PPOUpdateReport(
            self.version,
            [self._published],
            self.gradient_steps,
            metrics,
            time.perf_counter() - start,
            samples,
            rejected.as_dict(),
            self.learner.guard.take_rollbacks(),
        )

    def state(self) -> dict[str, Any]:
        """Learner state for a checkpoint."""
        return {
            "learner": self.learner.state_dict(),
            "version": self.version,
            "gradient_steps": self.gradient_steps,
        }
