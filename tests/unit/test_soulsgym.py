"""SoulsGym adapter: import on gymnasium 1.x, game-not-running error, Iudex spaces and config."""

import inspect
import platform
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from soulsgym_envs import soulsgym_env_without_game

from soulsai_ray.config import EnvConfig, parse_config
from soulsai_ray.envs.factory import make_env
from soulsai_ray.envs.soulsgym import ensure_soulsgym, iudex_observation_space
from soulsai_ray.envs.wrappers import FlattenDictObservation

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_ensure_soulsgym_makes_a_fresh_import_work():
    # A fresh interpreter, so that no earlier import has patched gymnasium already.
    script = (
        "import gymnasium\n"
        "from soulsai_ray.envs.soulsgym import ensure_soulsgym\n"
        "ensure_soulsgym()\n"
        "import soulsgym.envs.darksouls3.iudex\n"
        "print('SoulsGymIudex-v0' in gymnasium.registry)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_soulsgym_import_fails_without_the_patch():
    script = "import soulsgym.envs.darksouls3.iudex\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "RetriesExceededError" in result.stderr


def test_missing_soulsgym_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "soulsgym", None)  # makes `import soulsgym` fail
    with pytest.raises(ImportError, match=r'pip install -e "\.\[soulsgym\]"'):
        ensure_soulsgym()
    with pytest.raises(ImportError, match="soulsgym"):
        make_env(EnvConfig(id="SoulsGymIudex-v0"))


@pytest.mark.skipif(platform.system() == "Windows", reason="the game may be running here")
def test_make_env_without_the_game_says_what_is_missing():
    cfg = EnvConfig(id="SoulsGymIudex-v0", kwargs={"game_speed": 3, "phase": 1})
    with pytest.raises(RuntimeError) as info:
        make_env(cfg)
    message = str(info.value)
    assert "SoulsGymIudex-v0" in message
    assert "Dark Souls III" in message and "Windows" in message


def test_wrong_kwargs_are_not_reported_as_a_missing_game():
    with pytest.raises(TypeError, match="bogus"):
        make_env(EnvConfig(id="SoulsGymIudex-v0", kwargs={"bogus": 1}))


def test_iudex_space_matches_soulsgyms_iudex_env(monkeypatch):
    real = soulsgym_env_without_game(monkeypatch, "IudexEnv", game_speed=3, phase=1)
    real = real.observation_space
    ours = iudex_observation_space()
    assert list(ours.keys()) == list(real.keys())
    for key in real:
        assert ours[key] == real[key], key
        assert ours[key].dtype == real[key].dtype, key


def test_iudex_space_values():
    space = iudex_observation_space()
    assert space["player_max_hp"].n == 1 and space["player_max_hp"].start == 454
    assert space["boss_hp"].high.tolist() == [1037.0]
    assert space["player_animation"].start == -1
    np.testing.assert_allclose(space["player_pose"].low, [110, 540, -73, -3.1416])
    np.testing.assert_allclose(space["camera_pose"].high, [190, 640, -55, 1, 1, 1])


def _compose(env: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"env={env}"])
        return parse_config(OmegaConf.to_container(cfg, resolve=True))


def test_iudex_config_parses():
    cfg = _compose("iudex")
    assert cfg.env.id == "SoulsGymIudex-v0"
    assert cfg.env.kwargs == {"game_speed": 3, "phase": 1, "init_pose_randomization": False}
    assert cfg.env.actor_resources == {"soulsgym": 1.0}
    assert cfg.env.num_envs_per_actor == 1
    assert cfg.env.max_episode_steps is None and cfg.env.return_target is None
    assert cfg.stop.return_mean is None
    assert cfg.env.step_latency_s == 0.0 and cfg.env.reset_latency_s == 0.0


def test_iudex_config_fits_the_real_env():
    cfg = _compose("iudex").env
    ensure_soulsgym()
    from soulsgym.envs.darksouls3.iudex import IudexEnv

    inspect.signature(IudexEnv.__init__).bind(None, **cfg.kwargs)  # raises on unknown kwargs
    wrapper = FlattenDictObservation(_IudexSpaceEnv(), cfg.angle_keys)
    assert wrapper.observation_space.shape == (109,)
    assert ("player_pose[3]", slice(106, 108), "sincos") in wrapper.layout


class _IudexSpaceEnv(gym.Env):
    """Holds the Iudex spaces, for wrappers that only read spaces."""

    def __init__(self) -> None:
        self.observation_space = iudex_observation_space()
        self.action_space = gym.spaces.Discrete(20)
