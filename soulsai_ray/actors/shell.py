"""What every actor shell sets up the same way: threads, seeds, node id, spec, heartbeat, restore.

Rollout shells (DQN's :class:`RolloutActor`, PPO's :class:`PPORolloutActor`) derive from
:class:`RolloutShell`; learner shells use :func:`setup_process` and :func:`next_version`.
Every shell class must be declared with ``concurrency_groups=HEALTH_GROUPS`` so that
``heartbeat`` answers from its own thread while ``collect`` runs.
"""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray

from soulsai_ray.config import TrainConfig
from soulsai_ray.envs.factory import EnvSpec
from soulsai_ray.evaluation import EnvLease, GreedyPolicy, play_episodes
from soulsai_ray.observations import ObsSpec

HEALTH_GROUPS = {"health": 1}


def setup_process(cfg: TrainConfig) -> None:
    """Per-process settings of every actor: torch threads, silenced read-only-array warnings.

    Rollout actors of vector envs act in numpy (`soulsai_ray.policies`) and never import torch;
    learners import it after this (so that the driver, which defines their actor classes, never
    does), rollout actors of image envs when their sampler builds its policy: torch sizes its
    thread pool from ``OMP_NUM_THREADS`` then, so that is set to ``cluster.torch_threads`` here.
    """
    threads = cfg.cluster.torch_threads
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    # Batches arrive as read-only zero-copy arrays; actors only read them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def rollout_seed(cfg: TrainConfig, index: int) -> int:
    """Actor ``index``'s env seed; a restarted actor draws a fresh one (no replayed noise)."""
    seed = cfg.env_seed(index)
    if ray.get_runtime_context().was_current_actor_reconstructed:
        seed += secrets.randbelow(2**31)
    return seed


class _Sampler(EnvLease, Protocol):
    obs_spec: ObsSpec
    num_actions: int

    def env_busy_s(self) -> float: ...


@dataclass
class EvalReport:
    """Episodes a rollout actor played greedily with the weights of ``version``."""

    actor_index: int
    node_id: str
    version: int
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    env_errors: int = 0


class RolloutShell:
    """The common part of rollout actors: node id, spec, pid, the stall heartbeat and greedy
    evaluation on the actor's own env."""

    sampler: _Sampler

    def _setup(self, cfg: TrainConfig, index: int) -> None:
        setup_process(cfg)
        self.index = index
        self.node_id = ray.get_runtime_context().get_node_id()
        self._algo = cfg.algo
        self._greedy: GreedyPolicy | None = None

    def spec(self) -> EnvSpec:
        """Observation spec and number of actions of this actor's env."""
        return EnvSpec(self.sampler.obs_spec, int(self.sampler.num_actions))

    def pid(self) -> int:
        """Process id (used by fault-injection tests and operators)."""
        return os.getpid()

    def evaluate(self, version: int, weights_ref: list[Any], episodes: int) -> EvalReport:
        """Plays ``episodes`` greedy episodes with the weights of ``version`` on this actor's env.

        On a game PC this is the PC's one game: the running training episode is given up, and
        the evaluation's episodes are never used for training.
        """
        sampler = self.sampler
        if self._greedy is None:
            self._greedy = GreedyPolicy(self._algo, sampler.obs_spec, sampler.num_actions)
        self._greedy.load(ray.get(weights_ref[0]), version)
        result = play_episodes(sampler, self._greedy, episodes, sampler.num_actions)
        return EvalReport(
            self.index,
            self.node_id,
            version,
            result.returns,
            result.lengths,
            result.metrics,
            result.env_errors,
        )

    @ray.method(concurrency_group="health")
    def heartbeat(self) -> float:
        """Seconds the current env step or reset has been running (0 between env calls).

        Runs in its own thread, so it answers while ``collect`` is blocked in the env.
        """
        return self.sampler.env_busy_s()


def next_version(current: int, floor: int) -> int:
    """The version of the next publish: above the learner's own and above ``floor``.

    The driver passes as ``floor`` the newest version any actor may hold, so that after a
    learner or weight-store restart no actor mistakes new weights for ones it already has.
    """
    return max(current, floor) + 1
