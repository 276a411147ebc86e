"""Epsilon-greedy sampling from one env for replay (plain Python, no Ray): n-step transitions,
or with ``algo.replay_layout: frames`` the env steps a frames replay builds them from.

Order of calls::

    sampler = EpsilonGreedySampler(env_factory, cfg, seed)   # or .for_run(train_cfg, seed)
    sampler.load_weights(weights, version)        # whenever newer weights arrive
    sampler.set_n_step(n)                         # optional: n for the next episodes
    for _ in range(k):
        sampler.step(epsilon)                     # one env step, crash-safe
    chunk = sampler.pop_batch()                   # for replay: transitions or steps
    stats = sampler.pop_stats()                   # finished episodes, env errors
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping

import gymnasium as gym
import numpy as np

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.config import TrainConfig
from soulsai_ray.envs.factory import env_spec, make_env
from soulsai_ray.envs.wrappers import action_mask_from_info, episode_metrics_from_info
from soulsai_ray.inbound import env_output_problem
from soulsai_ray.policies import q_policy
from soulsai_ray.sampling.episodes import EnvRecovery, EpisodeStats, env_guards
from soulsai_ray.steps import StepBatch, StepRecorder
from soulsai_ray.transitions import EnvStep, NStepAccumulator, TransitionBatch

logger = logging.getLogger(__name__)


class EpsilonGreedySampler:
    """Steps one env with an epsilon-greedy Q-policy and records its steps for replay: as n-step
    transitions (`NStepAccumulator`), or with ``cfg.replay_layout`` frames as env steps
    (`StepRecorder`, which splits observations into ``frame_stack`` frames).

    An exception raised by the env in ``reset`` or ``step`` discards the partial episode (its
    pending transitions never reach the caller), re-creates the env after a growing back-off,
    and is counted in :attr:`EpisodeStats.env_errors`. An observation or reward that is not
    finite or beyond ``max_abs_obs`` / ``max_abs_reward`` (corrupt game data) discards the
    partial episode too, resets the env and is counted in :attr:`EpisodeStats.invalid_steps`.
    """

    def __init__(
        self,
        env_factory: Callable[[], gym.Env],
        cfg: DQNConfig,
        seed: int,
        max_backoff_s: float = 30.0,
        hard_reset_every_s: float | None = None,
        max_abs_obs: float = math.inf,
        max_abs_reward: float = math.inf,
        frame_stack: int = 1,
    ) -> None:
        self._bounds = (max_abs_obs, max_abs_reward)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._recovery = EnvRecovery(env_factory, max_backoff_s, hard_reset_every_s)
        self.env = env_factory()
        self.num_actions = int(self.env.action_space.n)
        self.obs_spec = env_spec(self.env).obs
        self.q_net = q_policy(cfg, self.obs_spec, self.num_actions)
        self.version = -1
        self._record: NStepAccumulator | StepRecorder
        if cfg.replay_layout == "frames":
            self._record = StepRecorder(self.num_actions, cfg.n_step, frame_stack)
        else:
            self._record = NStepAccumulator(cfg.n_step, cfg.gamma, self.num_actions)
        self._stats = EpisodeStats()
        self._obs: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._episode_return = 0.0
        self._episode_length = 0
        self._resets = 0

    @classmethod
    def for_run(cls, cfg: TrainConfig, seed: int) -> EpsilonGreedySampler:
        """The sampler of one of a run's actors: ``cfg.env`` (made by `make_env`), with its
        bounds, re-creation schedule and frame stack, and ``cfg.algo``."""
        env_cfg = cfg.env
        frame_stack = env_cfg.frame_stack
        guards = env_guards(env_cfg)
        return cls(lambda: make_env(env_cfg), cfg.algo, seed, frame_stack=frame_stack, **guards)

    def load_weights(self, weights: Mapping[str, np.ndarray], version: int) -> None:
        """Installs published policy weights (incl. normalizer statistics) of the given version."""
        self.q_net.load(weights)
        self.version = version

    def set_n_step(self, n: int) -> None:
        """Builds ``n``-step transitions from the next episode on (frames: the replay's n)."""
        self._record.set_n(n)

    def act(self, obs: np.ndarray, mask: np.ndarray | None, epsilon: float) -> int:
        """Epsilon-greedy action among the valid ones (a random one until weights arrive)."""
        if self._rng.random() < epsilon or not self.q_net.loaded:
            if mask is None:
                return int(self._rng.integers(self.num_actions))
            return int(self._rng.choice(np.flatnonzero(mask)))
        q = self.q_net(obs[None])[0]
        if mask is not None:
            q = np.where(mask, q, -np.inf)
        return int(q.argmax())

    def step(self, epsilon: float) -> None:
        """Takes one env step (resetting first when needed); never raises on env faults."""
        if self._obs is None and not self._reset():
            return
        action = self.act(self._obs, self._mask, epsilon)
        try:
            with self._recovery.watch():
                next_obs, reward, terminated, truncated, info = self.env.step(action)
            next_mask = action_mask_from_info(info, self.num_actions)
        except Exception as err:  # noqa: BLE001 - any env fault is recovered the same way
            self._recover(err)
            return
        if self._invalid(next_obs, reward):
            self._stats.env_steps += 1  # the step was taken: it cost game time
            return
        self._recovery.succeeded()
        next_obs = np.asarray(next_obs, dtype=self.obs_spec.np_dtype)
        step = EnvStep(
            self._obs,
            action,
            float(reward),
            next_obs,
            terminated,
            truncated,
            next_mask,
            self.version,
        )
        self._record.push(step)
        self._stats.env_steps += 1
        self._episode_return += float(reward)
        self._episode_length += 1
        if terminated or truncated:
            self._stats.returns.append(self._episode_return)
            self._stats.lengths.append(self._episode_length)
            self._stats.metrics.append(episode_metrics_from_info(info))
            self._obs = None
        else:
            self._obs, self._mask = next_obs, next_mask

    def pop_batch(self) -> TransitionBatch | StepBatch | None:
        """What goes to replay since the last call (completed n-step transitions, or steps), or
        None."""
        return self._record.pop()

    @property
    def pending_steps(self) -> int:
        """Env steps not yet in a batch `pop_batch` returns (waiting for later steps)."""
        return self._record.pending

    def pop_stats(self) -> EpisodeStats:
        """Episode statistics since the last call."""
        stats, self._stats = self._stats, EpisodeStats()
        return stats

    def env_busy_s(self) -> float:
        """Seconds the current env step or reset has been running (0 between calls)."""
        return self._recovery.busy_s()

    def close(self) -> None:
        """Closes the env."""
        self.env.close()

    # --- lending the env to an evaluation (`soulsai_ray.evaluation.EnvLease`) ---------------

    def eval_env(self) -> gym.Env:
        """The env, for a greedy evaluation; the running episode is given up (never reported)."""
        self._record.reset()
        self._obs = None
        return self.env

    def watch_env(self) -> contextlib.AbstractContextManager[None]:
        """Marks an evaluation's env call as running, for :meth:`env_busy_s`."""
        return self._recovery.watch()

    def recover_env(self, err: Exception) -> None:
        """An evaluation's env call failed: counted and recovered like a sampling fault."""
        self._recover(err)

    def _reset(self) -> bool:
        if self._recovery.hard_reset_due():
            self.env = self._recovery.hard_reset(self.env)
        try:
            with self._recovery.watch():
                obs, info = self.env.reset(seed=self._seed if self._resets == 0 else None)
            mask = action_mask_from_info(info, self.num_actions)
        except Exception as err:  # noqa: BLE001
            self._recover(err)
            return False
        if self._invalid(obs, 0.0):
            return False
        self._resets += 1
        self._obs, self._mask = np.asarray(obs, dtype=self.obs_spec.np_dtype), mask
        self._episode_return, self._episode_length = 0.0, 0
        return True

    def _invalid(self, obs: object, reward: object) -> bool:
        """True if the env returned garbage: the partial episode is dropped and the env reset."""
        problem = env_output_problem(obs, reward, *self._bounds)
        if problem is None:
            return False
        logger.debug("dropping the episode: %s", problem)
        self._stats.invalid_steps += 1
        self._record.reset()
        self._obs = None
        return True

    def _recover(self, err: Exception) -> None:
        """Discards the partial episode and re-creates the env after a capped back-off."""
        self._stats.env_errors += 1
        self._record.reset()
        self._obs = None
        self.env = self._recovery.recreate(self.env, err)
