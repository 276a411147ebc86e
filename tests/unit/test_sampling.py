"""Samplers recover from env crashes without ever emitting data that crosses a crash."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.envs.wrappers import Float32Observation
from soulsai_ray.frame_replay import FrameReplay
from soulsai_ray.observations import ObsSpec
from soulsai_ray.sampling.epsilon_greedy import EpsilonGreedySampler
from soulsai_ray.sampling.on_policy import OnPolicySampler


class CrashingCounterEnv(gym.Env):
    """obs = [episode id, step in episode]; crashes at random in step and reset."""

    episodes = 0  # class-wide, so a re-created env continues the numbering
    rng = np.random.default_rng(0)  # class-wide, so a re-created env does not repeat its crashes

    def __init__(self, crash_prob: float = 0.05, length: int = 12) -> None:
        self.observation_space = gym.spaces.Box(0, 1e6, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.crash_prob, self.length = crash_prob, length
        self.episode, self.t = 0, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        if self.rng.random() < self.crash_prob:
            raise RuntimeError("crash in reset")
        CrashingCounterEnv.episodes += 1
        self.episode, self.t = CrashingCounterEnv.episodes, 0
        return self._obs(), {"action_mask": np.array([True, True, self.t % 2 == 0])}

    def step(self, action):
        if self.rng.random() < self.crash_prob:
            raise RuntimeError("crash in step")
        if action == 2 and self.t % 2 == 1:
            raise AssertionError("masked action taken")
        self.t += 1
        done = self.t >= self.length
        info = {"action_mask": np.array([True, True, self.t % 2 == 0])}
        return self._obs(), 1.0, done and self.t % 3 == 0, done and self.t % 3 != 0, info


def _factory() -> gym.Env:
    return Float32Observation(CrashingCounterEnv())


def _run(sampler: EpsilonGreedySampler, steps: int, epsilon: float):
    """Steps ``sampler`` ``steps`` times; returns all its transitions as one batch, and its stats."""
    batches = []
    for _ in range(steps):
        sampler.step(epsilon)
        chunk = sampler.pop_batch()
        if chunk is not None:
            batches.append(chunk)
    return batches[0].concat(batches), sampler.pop_stats()


def test_dqn_sampler_transitions_never_cross_a_crash():
    sampler = EpsilonGreedySampler(
        _factory, DQNConfig(hidden_sizes=[8], n_step=3), seed=0, max_backoff_s=0.0
    )
    b, stats = _run(sampler, 3000, epsilon=0.5)
    assert stats.env_errors > 20  # crashes happened and were survived
    same_episode = b.obs[:, 0] == b.next_obs[:, 0]
    assert same_episode.all()
    span = b.next_obs[:, 1] - b.obs[:, 1]
    assert ((span >= 1) & (span <= 3)).all()
    # every finished episode in the stats ran to its natural end
    assert set(stats.lengths) == {12}


def test_dqn_sampler_steps_for_a_frames_replay_never_cross_a_crash_either():
    cfg = DQNConfig(hidden_sizes=[8], n_step=3, replay_layout="frames")
    sampler = EpsilonGreedySampler(_factory, cfg, seed=1, max_backoff_s=0.0)
    sampler.version = 0  # the steps' version, as after a first install (acting stays random)
    replay = FrameReplay(10_000, ObsSpec.vector(2), 3, n=3, gamma=0.9)
    for _ in range(3000):
        sampler.step(0.5)
        assert sampler.pending_steps == 0
        steps = sampler.pop_batch()
        if steps is not None:
            replay.add(steps)
    assert sampler.pop_stats().env_errors > 20
    slots = np.arange(replay.ring.written)
    b = replay.ring.transitions(slots[replay.ring.valid(slots)])
    assert len(b) > 1000
    assert (b.obs[:, 0] == b.next_obs[:, 0]).all()
    span = b.next_obs[:, 1] - b.obs[:, 1]
    assert ((span >= 1) & (span <= 3)).all()


def test_ppo_sampler_batches_stop_before_a_crash():
    cfg = PPOConfig(hidden_sizes=[8])
    sampler = OnPolicySampler(_factory, num_envs=2, cfg=cfg, seed=0, max_backoff_s=0.0)
    errors, rows, masked_rows, steps = 0, 0, 0, 0
    for _ in range(200):
        batch, stats = sampler.collect(16)
        errors += stats.env_errors
        if batch is None:
            continue
        rows += len(batch)
        done = batch.terminated | batch.truncated
        for t in range(len(batch.obs) - 1):
            cont = ~done[t]
            # consecutive rows of a running episode are consecutive steps of the same episode
            np.testing.assert_array_equal(batch.obs[t + 1][cont, 0], batch.obs[t][cont, 0])
            np.testing.assert_array_equal(batch.obs[t + 1][cont, 1], batch.obs[t][cont, 1] + 1)
        masked_rows += int((~batch.masks[..., 2]).sum())
        steps += int(batch.masks[..., 0].sum())
    assert errors > 5 and rows > 1000
    assert 0 < masked_rows < steps  # masks from info were recorded with the samples


def test_scheduled_hard_reset_recreates_the_env_between_episodes():
    created = []

    def factory() -> gym.Env:
        created.append(CrashingCounterEnv(crash_prob=0.0))
        return Float32Observation(created[-1])

    sampler = EpsilonGreedySampler(
        factory, DQNConfig(hidden_sizes=[8]), seed=0, hard_reset_every_s=1e-6
    )
    for _ in range(60):  # five 12-step episodes
        sampler.step(epsilon=1.0)
    stats = sampler.pop_stats()
    assert stats.env_errors == 0 and stats.lengths == [12] * 5
    assert len(created) == 1 + 5  # the first env, then a fresh one before each of the 5 resets


class GlitchingEnv(CrashingCounterEnv):
    """Like CrashingCounterEnv without crashes, but some steps return a corrupt reward or obs."""

    def __init__(self, glitch: str, prob: float = 0.05) -> None:
        super().__init__(crash_prob=0.0)
        self.glitch, self.prob = glitch, prob
        self.glitch_rng = np.random.default_rng(1)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.glitch_rng.random() < self.prob:
            if self.glitch == "obs":
                obs = np.array([self.episode, 1e9], np.float32)
            else:
                reward = {"inf": np.inf, "nan": np.nan, "huge": 3.4e38}[self.glitch]
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("glitch", ["inf", "nan", "huge", "obs"])
def test_dqn_sampler_drops_episodes_with_corrupt_env_data(glitch):
    sampler = EpsilonGreedySampler(
        lambda: Float32Observation(GlitchingEnv(glitch)),
        DQNConfig(hidden_sizes=[8], n_step=3),
        seed=0,
        max_abs_obs=1e6,
        max_abs_reward=1e6,
    )
    b, stats = _run(sampler, 2000, epsilon=1.0)
    assert stats.invalid_steps > 20 and stats.env_errors == 0
    assert stats.env_steps == 2000  # corrupt steps were taken too: they cost game time
    assert set(stats.lengths) == {12}  # only whole, clean episodes are reported
    assert stats.returns and all(r == 12.0 for r in stats.returns)
    assert np.isfinite(b.rewards).all() and np.abs(b.rewards).max() <= 3.0
    assert np.abs(b.next_obs).max() < 1e6 and (b.obs[:, 0] == b.next_obs[:, 0]).all()


@pytest.mark.parametrize("glitch", ["inf", "obs"])
def test_ppo_sampler_stops_the_rollout_before_corrupt_env_data(glitch):
    sampler = OnPolicySampler(
        lambda: Float32Observation(GlitchingEnv(glitch)),
        num_envs=2,
        cfg=PPOConfig(hidden_sizes=[8]),
        seed=0,
        max_abs_obs=1e6,
        max_abs_reward=1e6,
    )
    invalid, returns = 0, []
    for _ in range(100):
        batch, stats = sampler.collect(16)
        invalid += stats.invalid_steps
        returns += stats.returns
        assert stats.env_errors == 0
        if batch is not None:
            assert np.isfinite(batch.rewards).all() and np.abs(batch.obs).max() < 1e6
    assert invalid > 0 and returns and all(r == 12.0 for r in returns)


def test_a_runs_samplers_take_the_env_and_its_guards_from_the_config():
    from soulsai_ray.config import EnvConfig, TrainConfig

    env = EnvConfig(
        id="CartPole-v1",
        num_envs_per_actor=3,
        hard_reset_every_s=60.0,
        max_abs_obs=7.0,
        max_abs_reward=9.0,
    )
    dqn = EpsilonGreedySampler.for_run(TrainConfig(algo=DQNConfig(hidden_sizes=[8]), env=env), 1)
    ppo = OnPolicySampler.for_run(TrainConfig(algo=PPOConfig(hidden_sizes=[8]), env=env), 1)
    assert (
        (dqn.obs_spec, dqn.num_actions) == (ppo.obs_spec, ppo.num_actions) == (ObsSpec.vector(4), 2)
    )
    assert dqn._bounds == ppo._bounds == (7.0, 9.0) and ppo.num_envs == 3
    assert dqn._recovery.hard_reset_every_s == ppo._recovery.hard_reset_every_s == 60.0
