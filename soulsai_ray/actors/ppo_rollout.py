"""PPO's rollout actor: collects on request of the driver, with the weights it is handed.

Its process acts in numpy and never imports torch (the learner is in `soulsai_ray.actors.ppo`).
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from soulsai_ray.actors.shell import HEALTH_GROUPS, RolloutShell, rollout_seed
from soulsai_ray.config import TrainConfig
from soulsai_ray.sampling.episodes import EpisodeStats
from soulsai_ray.sampling.on_policy import OnPolicySampler
from soulsai_ray.transitions import RolloutBatch


@dataclass
class RolloutReport:
    """Episode statistics of one PPO rollout (the batch itself travels as a separate object)."""

    actor_index: int
    node_id: str
    version: int
    stats: EpisodeStats
    steps: int


@ray.remote(concurrency_groups=HEALTH_GROUPS)
class PPORolloutActor(RolloutShell):
    """Collects ``n_steps`` per env with the weights it is handed, on request of the driver."""

    def __init__(self, cfg: TrainConfig, index: int) -> None:
        self._setup(cfg, index)
        self.n_steps = cfg.algo.n_steps
        self.sampler = OnPolicySampler.for_run(cfg, rollout_seed(cfg, index))

    @ray.method(num_returns=2)
    def collect(
        self, version: int, weights_ref: list[ray.ObjectRef]
    ) -> tuple[RolloutBatch | None, RolloutReport]:
        """Loads weights ``version`` if newer, then returns ``(batch, report)``."""
        if version != self.sampler.version:
            self.sampler.load_weights(ray.get(weights_ref[0]), version)
        batch, stats = self.sampler.collect(self.n_steps)
        steps = len(batch) if batch is not None else 0
        return batch, RolloutReport(self.index, self.node_id, self.sampler.version, stats, steps)
