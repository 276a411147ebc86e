"""python -m soulsai_bench learner: the update step of a shipped config, timed, and the game PCs
it keeps."""

from __future__ import annotations

import pytest

from soulsai_bench.learner import LearnerSpeed, measure_learner, report


def test_game_pcs_follow_from_the_update_cost_and_the_replay_ratio():
    # 2 ms per update = 500 updates/s; ratio 512 at batch 128 = 4 updates per env step
    speed = LearnerSpeed("dqn_efficient", "lunarlander", "cpu", 8, 4, 128, 512.0, 2.0, (1.9, 2.2))
    assert speed.updates_per_s == pytest.approx(500.0)
    assert speed.env_steps_per_s == pytest.approx(125.0)
    text = report(speed, game_rate=20.0)
    assert "env=lunarlander on cpu, eager update (obs 8" in text
    assert "2.00 ms per update (1.90-2.20), 500 updates/s" in text
    assert "4 updates per env step" in text
    assert "up to 125 env steps/s: 6.2 game PCs at 20 steps/s" in text
    compiled = LearnerSpeed("dqn", "cartpole", "cpu", 4, 2, 64, 32.0, 0.5, (0.4, 0.6), True)
    assert "env=cartpole on cpu, compiled update (obs 4, 2 actions" in report(compiled, 20.0)


@pytest.mark.parametrize("algo", ["dqn", "dqn_efficient"])
def test_the_shipped_configs_are_timed_with_the_envs_shape(algo):
    """Timed eager: compiling is test_compiled_step.py's and test_learning.py's."""
    speed = measure_learner(algo, "cartpole", ["algo.compile=false"], seconds=0.3, windows=3)
    assert not speed.compiled
    assert (speed.obs_dim, speed.num_actions) == (4, 2)
    # algo=dqn env=cartpole: 32 from conf/algo_env/dqn_cartpole.yaml, the algo x env settings apply
    assert speed.replay_ratio == {"dqn": 32.0, "dqn_efficient": 512.0}[algo]
    low, high = speed.ms_per_update_range
    assert 0 < low <= speed.ms_per_update <= high


def test_game_envs_take_their_sizes_from_the_command_line():
    """SoulsGym needs the game to be created; its sizes come from --obs-dim/--actions."""
    speed = measure_learner(
        "dqn_efficient", "iudex", ["algo.compile=false"], seconds=0.2, windows=2, spec=(30, 20)
    )
    assert (speed.obs_dim, speed.num_actions) == (30, 20)
    # conf/algo_env/dqn_efficient_iudex.yaml: 4 updates of 64 per env step
    assert (speed.batch_size, speed.replay_ratio) == (64, 256.0)


def test_ppo_has_no_replay_learner_to_time():
    with pytest.raises(ValueError, match="not a DQN config"):
        measure_learner("ppo", "cartpole", [], seconds=0.1)
