"""On-policy rollouts for PPO from a gymnasium vector env (plain Python, no Ray).

Order of calls::

    sampler = OnPolicySampler(env_factory, num_envs, cfg, seed)   # or .for_run(train_cfg, seed)
    sampler.load_weights(weights, version)
    batch, stats = sampler.collect(n_steps)      # RolloutBatch of [n_steps, num_envs]
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping

import gymnasium as gym
import numpy as np

from soulsai_ray.algo_config import PPOConfig
from soulsai_ray.config import TrainConfig
from soulsai_ray.envs.factory import env_spec, make_env
from soulsai_ray.envs.wrappers import action_mask_from_info, vector_episode_metrics
from soulsai_ray.inbound import env_output_problem
from soulsai_ray.observations import ObsSpec
from soulsai_ray.policies import actor_critic_policy
from soulsai_ray.sampling.episodes import EnvRecovery, EpisodeStats, env_guards
from soulsai_ray.transitions import RolloutBatch

logger = logging.getLogger(__name__)


class OnPolicySampler:
    """Steps ``num_envs`` envs in lock-step with a stochastic policy and records PPO rollouts.

    The vector env resets finished sub-envs in the same step (the final observation comes in
    ``info["final_obs"]`` and is used to bootstrap truncated episodes). An env exception ends
    the rollout early: the steps before it form a valid, shorter batch bootstrapped from the
    last good observation; the interrupted episodes are discarded, the envs are re-created
    after a growing back-off, and the fault is counted.
    """

    def __init__(
        self,
        env_factory: Callable[[], gym.Env],
        num_envs: int,
        cfg: PPOConfig,
        seed: int,
        max_backoff_s: float = 30.0,
        hard_reset_every_s: float | None = None,
        max_abs_obs: float = math.inf,
        max_abs_reward: float = math.inf,
    ) -> None:
        self._bounds = (max_abs_obs, max_abs_reward)
        self._env_factory = env_factory
        self.num_envs = num_envs
        self._seed = seed
        self._recovery = EnvRecovery(self._make_envs, max_backoff_s, hard_reset_every_s)
        self._rng = np.random.default_rng(seed)
        self.envs = self._make_envs()
        spec = env_spec(self.envs)
        self.obs_spec, self.num_actions = spec.obs, spec.num_actions
        self.model = actor_critic_policy(cfg, self.obs_spec, self.num_actions)
        self.version = -1
        self._stats = EpisodeStats()
        self._obs: np.ndarray | None = None
        self._masks = np.ones((num_envs, self.num_actions), dtype=bool)
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._first_reset = True

    @classmethod
    def for_run(cls, cfg: TrainConfig, seed: int) -> OnPolicySampler:
        """The sampler of one of a run's actors: ``env.num_envs_per_actor`` copies of ``cfg.env``
        (made by `make_env`), with its bounds and re-creation schedule, and ``cfg.algo``."""
        env_cfg = cfg.env
        envs = env_cfg.num_envs_per_actor
        return cls(lambda: make_env(env_cfg), envs, cfg.algo, seed=seed, **env_guards(env_cfg))

    def load_weights(self, weights: Mapping[str, np.ndarray], version: int) -> None:
        """Installs published policy weights (incl. normalizer statistics) of ``version``."""
        self.model.load(weights)
        self.version = version

    def collect(self, n_steps: int) -> tuple[RolloutBatch | None, EpisodeStats]:
        """Runs up to ``n_steps`` steps in every env; None if no step succeeded."""
        if self._recovery.hard_reset_due():
            # Episodes still running end here uncounted; the rollout starts on fresh envs.
            self.envs = self._recovery.hard_reset(self.envs)
            self._obs = None
        if self._obs is None and not self._reset():
            return None, self._pop_stats()
        buf = _Buffers(n_steps, self.num_envs, self.obs_spec, self.num_actions)
        for t in range(n_steps):
            obs, masks = self._obs, self._masks
            actions, logprobs, values = self.model.act(obs, masks, self._rng)
            try:
                with self._recovery.watch():
                    next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
                next_masks = self._masks_from(infos)
            except Exception as err:  # noqa: BLE001 - any env fault is recovered the same way
                self._recover(err)
                return buf.finish(t, self.model.value(obs), self.version), self._pop_stats()
            problem = env_output_problem(next_obs, rewards, *self._bounds)
            if problem is not None:
                # Never train on it: end the rollout before this step; the envs are reset.
                self._stats.env_steps += self.num_envs  # the step was taken: it cost game time
                self._invalid_output()
                return buf.finish(t, self.model.value(obs), self.version), self._pop_stats()
            self._recovery.succeeded()
            final_values = self._final_values(infos, truncated & ~terminated)
            buf.record(
                t,
                obs,
                actions,
                logprobs,
                values,
                rewards,
                terminated,
                truncated,
                final_values,
                masks,
            )
            self._track_episodes(rewards, terminated | truncated, infos)
            self._obs, self._masks = np.asarray(next_obs, dtype=self.obs_spec.np_dtype), next_masks
        return buf.finish(n_steps, self.model.value(self._obs), self.version), self._pop_stats()

    def env_busy_s(self) -> float:
        """Seconds the current env step or reset has been running (0 between calls)."""
        return self._recovery.busy_s()

    def close(self) -> None:
        """Closes the envs."""
        self.envs.close()

    # --- lending an env to an evaluation (`soulsai_ray.evaluation.EnvLease`) ----------------

    def eval_env(self) -> gym.Env:
        """The first sub-env, for a greedy evaluation; the running episodes are given up and
        every env is reset at the next rollout."""
        self._obs = None
        return self.envs.envs[0]

    def watch_env(self) -> contextlib.AbstractContextManager[None]:
        """Marks an evaluation's env call as running, for :meth:`env_busy_s`."""
        return self._recovery.watch()

    def recover_env(self, err: Exception) -> None:
        """An evaluation's env call failed: counted and recovered like a sampling fault."""
        self._recover(err)

    def _make_envs(self) -> gym.vector.SyncVectorEnv:
        return gym.vector.SyncVectorEnv(
            [self._env_factory] * self.num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )

    def _reset(self) -> bool:
        try:
            seed = [self._seed + i for i in range(self.num_envs)] if self._first_reset else None
            with self._recovery.watch():
                obs, infos = self.envs.reset(seed=seed)
            self._masks = self._masks_from(infos)
        except Exception as err:  # noqa: BLE001
            self._recover(err)
            return False
        if env_output_problem(obs, 0.0, *self._bounds) is not None:
            self._invalid_output()
            return False
        self._first_reset = False
        self._obs = np.asarray(obs, dtype=self.obs_spec.np_dtype)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return True

    def _masks_from(self, infos: dict) -> np.ndarray:
        masks = np.ones((self.num_envs, self.num_actions), dtype=bool)
        for key, present in (
            ("action_mask", "_action_mask"),
            ("allowed_actions", "_allowed_actions"),
        ):
            if key not in infos:
                continue
            for i in np.flatnonzero(infos.get(present, np.ones(self.num_envs, dtype=bool))):
                mask = action_mask_from_info({key: infos[key][i]}, self.num_actions)
                if mask is not None:
                    masks[i] = mask
        return masks

    def _final_values(self, infos: dict, truncated: np.ndarray) -> np.ndarray:
        final_values = np.zeros(self.num_envs, dtype=np.float32)
        if truncated.any():
            final_obs = np.stack(
                [
                    np.asarray(infos["final_obs"][i], dtype=self.obs_spec.np_dtype)
                    for i in np.flatnonzero(truncated)
                ]
            )
            final_values[truncated] = self.model.value(final_obs)
        return final_values

    def _track_episodes(self, rewards: np.ndarray, done: np.ndarray, infos: dict) -> None:
        self._returns += rewards
        self._lengths += 1
        self._stats.env_steps += self.num_envs
        for i in np.flatnonzero(done):
            self._stats.returns.append(float(self._returns[i]))
            self._stats.lengths.append(int(self._lengths[i]))
            self._stats.metrics.append(vector_episode_metrics(infos, int(i)))
            self._returns[i], self._lengths[i] = 0.0, 0

    def _pop_stats(self) -> EpisodeStats:
        stats, self._stats = self._stats, EpisodeStats()
        return stats

    def _invalid_output(self) -> None:
        """Corrupt env data: the running episodes are dropped and every env is reset."""
        self._stats.invalid_steps += self.num_envs
        self._obs = None

    def _recover(self, err: Exception) -> None:
        self._stats.env_errors += 1
        self._obs = None
        self.envs = self._recovery.recreate(self.envs, err)


class _Buffers:
    """Preallocated time-major arrays for one rollout."""

    def __init__(self, n_steps: int, num_envs: int, obs: ObsSpec, num_actions: int) -> None:
        shape = (n_steps, num_envs)
        self.obs = obs.zeros(*shape)
        self.actions = np.zeros(shape, dtype=np.int64)
        self.logprobs = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.final_values = np.zeros(shape, dtype=np.float32)
        self.masks = np.ones((*shape, num_actions), dtype=bool)

    def record(
        self, t, obs, actions, logprobs, values, rewards, terminated, truncated, final_values, masks
    ) -> None:  # noqa: ANN001
        self.obs[t], self.actions[t], self.logprobs[t], self.values[t] = (
            obs,
            actions,
            logprobs,
            values,
        )
        self.rewards[t], self.terminated[t], self.truncated[t] = rewards, terminated, truncated
        self.final_values[t], self.masks[t] = final_values, masks

    def finish(self, steps: int, last_values: np.ndarray, version: int) -> RolloutBatch | None:
        if steps == 0:
            return None
        return RolloutBatch(
            obs=self.obs[:steps],
            actions=self.actions[:steps],
            logprobs=self.logprobs[:steps],
            values=self.values[:steps],
            rewards=self.rewards[:steps],
            terminated=self.terminated[:steps],
            truncated=self.truncated[:steps],
            final_values=self.final_values[:steps],
            last_values=np.asarray(last_values, dtype=np.float32),
            masks=self.masks[:steps],
            version=version,
        )
