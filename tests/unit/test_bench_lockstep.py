"""python -m soulsai_bench lockstep: a run's samplers, replay and learner in one process, at the
configured replay ratio, to the env's target."""

from __future__ import annotations

import numpy as np
import pytest

from soulsai_bench import lockstep
from soulsai_bench.lockstep import lockstep_run, train_on_replay
from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.dqn import DQNLearner
from soulsai_ray.replay import PrioritizedReplayBuffer, ReplayBuffer, replay_buffer
from soulsai_ray.transitions import TransitionBatch

# algo=dqn env=cartpole: 1 update of 128 per 4 env steps (conf/algo_env/dqn_cartpole.yaml)
SMALL = ["algo.hidden_sizes=[16]", "algo.learning_starts=200"]


def _run(*overrides: str, seed: int = 0, steps: int = 600):
    return lockstep_run("dqn", "cartpole", [*SMALL, *overrides], seed, 2, steps, 16)


def test_a_seed_without_a_target_runs_to_the_cap_at_the_configured_ratio():
    run = _run("stop.return_mean=null")
    assert not run.solved and run.env_steps_to_target is None and run.time_to_target_s is None
    assert run.env_steps == 600
    assert run.replay_ratio_configured == 32.0
    # updates begin once replay holds 200 transitions (n-step transitions trail the steps a bit)
    assert 32.0 * (600 - 200 - 10) / 600 <= run.replay_ratio <= 32.0 * (600 - 200) / 600


def test_the_target_is_the_mean_of_the_last_window_of_training_episodes():
    # a random CartPole policy averages about 22: five episodes reach 15 long before the cap
    run = _run("stop.return_mean=15", "telemetry.window=5", steps=5000)
    assert run.solved and run.env_steps_to_target == run.env_steps < 5000
    assert run.return_mean >= 15 and run.time_to_target_s <= run.wall_s
    never = _run("stop.return_mean=1000", "telemetry.window=5", steps=400)
    assert not never.solved and never.env_steps == 400


def test_a_seed_reproduces_and_seeds_differ():
    first, again, other = _run(), _run(), _run(seed=1)
    assert (first.env_steps, first.return_mean) == (again.env_steps, again.return_mean)
    assert first.return_mean != other.return_mean


def test_only_dqn_configs_and_sane_sizes_are_accepted():
    with pytest.raises(ValueError, match="DQN only"):
        lockstep_run("ppo", "cartpole", [], 0, 1, 10, 1)
    with pytest.raises(ValueError, match=">= 1"):
        lockstep_run("dqn", "cartpole", [], 0, 0, 10, 1)


def _filled(cfg: DQNConfig, size: int = 64):
    rng = np.random.default_rng(0)
    buffer = replay_buffer(cfg, 3, 2, seed=0)
    buffer.add(
        TransitionBatch(
            obs=rng.standard_normal((size, 3), dtype=np.float32),
            actions=rng.integers(0, 2, size),
            rewards=rng.standard_normal(size, dtype=np.float32),
            next_obs=rng.standard_normal((size, 3), dtype=np.float32),
            discounts=np.full(size, 0.9, np.float32),
            next_masks=np.ones((size, 2), bool),
            versions=np.zeros(size, np.int64),
        )
    )
    return buffer


def test_prioritized_replay_is_trained_as_in_a_run():
    cfg = DQNConfig(hidden_sizes=[8], batch_size=16, prioritized=True, per_beta_updates=10)
    buffer, learner = _filled(cfg), DQNLearner(cfg, 3, 2)
    before = buffer.state_dict()["priorities"].copy()
    for _ in range(5):
        train_on_replay(learner, buffer, cfg.batch_size)
    # the learner's annealed exponent reaches replay, and TD errors set new priorities
    assert buffer.beta == pytest.approx(learner.per_beta() - 0.6 / 10)
    after = buffer.state_dict()["priorities"]
    assert (after != before).sum() >= cfg.batch_size
    uniform = _filled(DQNConfig(hidden_sizes=[8], batch_size=16))
    train_on_replay(DQNLearner(cfg, 3, 2), uniform, 16)  # uniform replay: no priorities, no error


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_screen_trains_on_the_configured_kind_of_replay(monkeypatch, prioritized):
    seen = []

    def recording(learner, buffer, batch_size):
        seen.append(type(buffer))
        train_on_replay(learner, buffer, batch_size)

    monkeypatch.setattr(lockstep, "train_on_replay", recording)
    run = _run("stop.return_mean=null", f"algo.prioritized={str(prioritized).lower()}", steps=400)
    assert run.env_steps == 400 and seen
    kind = PrioritizedReplayBuffer if prioritized else ReplayBuffer
    assert set(seen) == {kind}
