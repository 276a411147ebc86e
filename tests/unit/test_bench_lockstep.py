"""python -m soulsai_bench lockstep: a run's samplers, replay and learner in one process, at the
configured replay ratio, to the env's target."""

from __future__ import annotations

import pytest

from soulsai_bench.lockstep import lockstep_run

# algo=dqn env=cartpole: 1 update of 128 per 4 env steps (conf/algo_env/dqn_cartpole.yaml); the
# update eager, as a compiled one is compiled first (tests/unit/test_compiled_step.py checks it)
SMALL = ["algo.hidden_sizes=[16]", "algo.learning_starts=200", "algo.compile=false"]


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
    # the samplers step in turn: the round that reached the target ends the run
    assert run.solved and run.env_steps_to_target <= run.env_steps < min(
        run.env_steps_to_target + 2, 5000
    )
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


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_screen_trains_on_the_configured_kind_of_replay(prioritized):
    run = _run("stop.return_mean=null", f"algo.prioritized={str(prioritized).lower()}", steps=400)
    assert run.env_steps == 400 and run.replay_ratio > 0
