"""Atari through ale-py: the env config's 84x84x4 uint8 frame stacks, a few steps, the configs."""

from __future__ import annotations

import numpy as np
import pytest

from soulsai_ray.compose import compose_config
from soulsai_ray.envs.factory import check_data_env_id, make_env, probe_env_spec
from soulsai_ray.observations import ObsSpec
from soulsai_ray.preflight import check_before_start
from soulsai_ray.torsos import conv_torso

pytest.importorskip("ale_py")


def test_atari_breakout_gives_stacks_of_four_84x84_frames_as_channels():
    cfg = compose_config("dqn", "atari_breakout", [])
    spec = probe_env_spec(cfg.env)
    assert spec.obs == ObsSpec.image(84, 84, 4) and spec.num_actions == 4
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8 and obs.any()
    for _ in range(8):
        previous = obs
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert not (terminated or truncated)
        # oldest frame first: each step shifts the stack by one frame
        np.testing.assert_array_equal(obs[..., :3], previous[..., 1:])
    env.close()
    check_data_env_id(cfg.env.id)  # a checkpoint's config may name it: the module only registers


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_atari_configs_read_the_frames_with_nature_cnn(algo):
    cfg = compose_config(algo, "atari_breakout", [])
    assert cfg.algo.torso == "nature_cnn" and not cfg.algo.normalize_obs
    assert cfg.algo.hidden_sizes == [512]
    module, width = conv_torso(cfg.algo.torso, ObsSpec.image(84, 84, 4))
    assert module is not None and width == 64 * 7 * 7  # the Nature paper's 3136 features
    # a replay the preflight's memory check passes on any test machine (100k take 5.6 GB)
    small = ["algo.buffer_size=10000", "algo.learning_starts=1000"] if algo == "dqn" else []
    check_before_start(compose_config(algo, "atari_breakout", small))
