"""MinAtar through the whole pipeline: env configs, image specs, preflight and a serial DQN run."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from run_configs import image_dqn, run_config

from soulsai_ray.algo_config import PPOConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.compose import compose_config
from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.factory import check_data_env_id, make_env, probe_env_spec
from soulsai_ray.evaluation import PlaySetup, load_trained_policy, play_checkpoints
from soulsai_ray.experiment import build_experiment
from soulsai_ray.observations import ObsSpec
from soulsai_ray.preflight import check_before_start
from soulsai_ray.typed_config import ConfigError

pytest.importorskip("soulsai_ray.envs.minatar")  # imports MinAtar without its drawing modules

BREAKOUT = "soulsai_ray.envs.minatar:MinAtar/Breakout-v1"

PLAYS_WITHOUT_DRAWING = """
import sys
import gymnasium as gym
import soulsai_ray.envs.minatar
drawing = ("matplotlib.pyplot", "seaborn", "scipy", "pandas")
env = gym.make("MinAtar/Breakout-v1", render_mode="rgb_array", disable_env_checker=True)
env.reset(seed=0)
for _ in range(20):
    env.step(1)
assert not [name for name in drawing if name in sys.modules], sys.modules.keys()
frame = env.render()
assert "seaborn" in sys.modules
print(frame.round(6).tolist())
"""


def test_a_game_plays_without_the_drawing_modules_and_still_renders(monkeypatch):
    """MinAtar imports matplotlib's pyplot and seaborn (with scipy and pandas) to draw frames:
    a process that plays a game never imports them, and ``render`` imports them when called,
    drawing what MinAtar draws with seaborn imported up front."""
    import json
    import subprocess
    import sys

    import gymnasium as gym
    import minatar.gym
    import seaborn

    done = subprocess.run(
        [sys.executable, "-c", PLAYS_WITHOUT_DRAWING],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.setattr(minatar.gym, "sns", seaborn)  # the module itself, as MinAtar has it
    # MinAtar's frames are float RGB in [0, 1] at no declared rate: gymnasium's checker warns
    env = gym.make("MinAtar/Breakout-v1", render_mode="rgb_array", disable_env_checker=True)
    env.reset(seed=0)
    for _ in range(20):
        env.step(1)
    expected = env.render()
    np.testing.assert_array_equal(np.array(json.loads(done.stdout)), expected.round(6))


@pytest.mark.parametrize(
    ("env", "channels", "actions"),
    [("minatar_breakout", 4, 3), ("minatar_space_invaders", 6, 4)],
)
def test_minatar_configs_give_uint8_images_and_a_torso_that_fits(env, channels, actions):
    for algo in ("dqn", "ppo"):
        cfg = compose_config(algo, env, [])
        assert cfg.algo.torso == "minatar_cnn" and not cfg.algo.normalize_obs
    spec = probe_env_spec(cfg.env)
    assert spec.obs == ObsSpec.image(10, 10, channels, high=1) and spec.num_actions == actions
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (10, 10, channels)
    assert set(np.unique(obs)) <= {0, 1} and obs.any()
    check_data_env_id(cfg.env.id)  # a checkpoint's config may name it: the module only registers


def test_a_torso_or_normalizer_that_cannot_read_the_images_is_refused_before_the_run():
    dqn = compose_config("dqn", "minatar_breakout", ["algo.torso=nature_cnn"])
    with pytest.raises(
        ConfigError, match=r"^algo.torso: nature_cnn: .*10x10x4 uint8 image.*impala"
    ):
        check_before_start(dqn)
    ppo = compose_config("ppo", "minatar_breakout", ["algo.normalize_obs=true"])
    with pytest.raises(ConfigError, match=r"^algo.normalize_obs: .*set algo.normalize_obs=false"):
        check_before_start(ppo)
    vectors = compose_config("dqn", "cartpole", ["algo.torso=impala_small"])
    with pytest.raises(ConfigError, match=r"^algo.torso: .*needs image observations.*4 float32"):
        check_before_start(vectors)
    with pytest.raises(ConfigError, match=r"^algo.torso: must be one of"):
        compose_config("dqn", "cartpole", ["algo.torso=resnet"])


DQN = image_dqn()


@pytest.mark.parametrize(
    "algo",
    [
        DQN,
        PPOConfig(
            torso="impala_small",
            hidden_sizes=[32],
            normalize_obs=False,
            n_steps=64,
            epochs=1,
            minibatch_size=64,
        ),
    ],
    ids=["dqn", "ppo"],
)
def test_a_serial_minatar_run_writes_a_checkpoint_and_summary_that_evaluate_plays(algo, tmp_path):
    env = EnvConfig(id=BREAKOUT, max_episode_steps=200)
    cfg = run_config(algo, env, steps=600, serial=True, checkpoint_every=10, log_every_s=0.05)
    summary = build_experiment(cfg, tmp_path).run()
    assert summary["stop_reason"] == "env_steps" and summary["updates"] > 0
    assert summary["episodes"] > 0 and (tmp_path / "summary.json").is_file()
    latest = CheckpointManager(tmp_path / "checkpoints").latest()
    assert latest is not None and latest.meta["updates"] == summary["updates"]
    trained, config = load_trained_policy(latest.path)  # what scripts/evaluate.py plays
    assert config["env"]["id"] == BREAKOUT and trained.algo.torso == algo.torso
    result = play_checkpoints(PlaySetup(env, {1: trained}), episodes=2, seed=0)
    assert len(result.returns) == 2 and all(0 < n <= 200 for n in result.lengths)
    other_game = replace(env, id="soulsai_ray.envs.minatar:MinAtar/SpaceInvaders-v1")
    with pytest.raises(ValueError, match=r"does not fit .*10x10x6 uint8 image, 4 actions"):
        play_checkpoints(PlaySetup(other_game, {1: trained}), episodes=1, seed=0)
