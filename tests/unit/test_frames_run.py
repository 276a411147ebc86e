"""algo.replay_layout=frames in runs: the frame stack wrapper, the shipped image configs, the
replay's memory, and a serial run that trains, checkpoints its replay and resumes with it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from run_configs import image_dqn, run_config

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import load_checkpoint
from soulsai_ray.compose import compose_config
from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.factory import make_env, probe_env_spec
from soulsai_ray.envs.wrappers import StackFrames
from soulsai_ray.experiment import build_experiment
from soulsai_ray.frame_replay import FrameReplay
from soulsai_ray.observations import ObsSpec
from soulsai_ray.preflight import check_resume_matches
from soulsai_ray.prioritized_frames import PrioritizedFrameReplay
from soulsai_ray.replay_factory import replay_buffer, replay_bytes
from soulsai_ray.typed_config import ConfigError


class CountingFrames(gym.Env):
    """Frames [2, 3, 1] whose pixels all hold the step number within the episode."""

    observation_space = gym.spaces.Box(0, 255, (2, 3, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.full((2, 3, 1), 100, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((2, 3, 1), 100 + self.t, np.uint8), 0.0, False, False, {}


def test_stack_frames_concatenates_the_last_k_frames_oldest_first_padding_at_reset():
    env = StackFrames(CountingFrames(), 3)
    assert env.observation_space.shape == (2, 3, 3) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 3) and obs[0, 0].tolist() == [100, 100, 100]
    seen = [env.step(0)[0][0, 0].tolist() for _ in range(4)]
    assert seen == [[100, 100, 101], [100, 101, 102], [101, 102, 103], [102, 103, 104]]
    assert env.reset()[0][0, 0].tolist() == [100, 100, 100]  # no frame of the last episode
    with pytest.raises(ValueError, match="needs an image space"):
        StackFrames(gym.make("CartPole-v1"), 2)


def test_make_env_stacks_image_frames_and_refuses_to_stack_vectors():
    minatar = EnvConfig(id="soulsai_ray.envs.minatar:MinAtar/Breakout-v1", frame_stack=2)
    pytest.importorskip("soulsai_ray.envs.minatar")
    assert probe_env_spec(minatar).obs == ObsSpec.image(10, 10, 8, high=1)
    with pytest.raises(ValueError, match="env.frame_stack=4 stacks image frames"):
        make_env(EnvConfig(id="CartPole-v1", frame_stack=4))


@pytest.mark.parametrize(
    ("algo", "env"),
    [
        ("dqn", "iudex_img"),
        ("dqn_efficient", "iudex_img"),
        ("dqn", "fake_souls_img"),
        ("dqn_efficient", "fake_souls_img"),
        ("dqn", "atari_breakout"),
    ],
)
def test_the_image_dqn_configs_store_each_frame_once(algo, env):
    """dqn_efficient anneals n on frames as on vectors: its replay holds the largest n."""
    cfg = compose_config(algo, env, [])
    assert cfg.algo.replay_layout == "frames" and not cfg.algo.prioritized
    vector = compose_config(algo, env.removesuffix("_img"), []) if algo != "dqn" else cfg
    assert cfg.algo.n_step_start == vector.algo.n_step_start
    assert (cfg.algo.n_step_start is None) == (algo == "dqn")
    assert cfg.env.frame_stack == (4 if env == "atari_breakout" else 1)
    replay = replay_buffer(replace(cfg.algo, buffer_size=10), ObsSpec.image(90, 160, 3), 20, 0)
    assert replay.n == cfg.algo.max_n_step


def test_frames_are_prioritized_on_request_and_bad_frame_settings_name_the_key():
    cfg = compose_config("dqn", "fake_souls_img", ["algo.prioritized=true"])
    frame = ObsSpec.image(90, 160, 3)
    replay = replay_buffer(replace(cfg.algo, buffer_size=1000), frame, 20, seed=0)
    assert isinstance(replay, PrioritizedFrameReplay) and replay.alpha == cfg.algo.per_alpha
    assert replay.nbytes == replay_bytes(replace(cfg.algo, buffer_size=1000), frame, 20)
    with pytest.raises(ConfigError, match=r"^env.frame_stack: must be > 0"):
        compose_config("dqn", "fake_souls_img", ["env.frame_stack=0"])


def test_a_frames_replay_of_100k_souls_frames_takes_one_frame_per_slot():
    algo = DQNConfig(replay_layout="frames", buffer_size=100_000)
    frame = ObsSpec.image(90, 160, 3)
    need = replay_bytes(algo, frame, 20)
    assert need <= 4.5e9 < replay_bytes(replace(algo, replay_layout="transitions"), frame, 20)
    replay = replay_buffer(algo, frame, 20, seed=0)  # the 4.3 GB of zeros stay untouched
    assert isinstance(replay, FrameReplay) and replay.nbytes == need
    stacked = replay_buffer(algo, ObsSpec.image(84, 84, 4), 4, seed=0, frame_stack=4)
    assert stacked.obs_spec == ObsSpec.image(84, 84, 1) and stacked.stack == 4
    assert replay_bytes(algo, ObsSpec.image(84, 84, 4), 4, frame_stack=4) == stacked.nbytes


def test_a_resume_keeps_the_replay_layout_and_frame_stack():
    cfg = compose_config("dqn", "fake_souls_img", [])
    saved = {"algo": {"replay_layout": "transitions"}, "env": {"frame_stack": 2}}
    with pytest.raises(ConfigError) as info:
        check_resume_matches(cfg, saved, Path("ckpt"))
    assert info.value.key == "algo.replay_layout,env.frame_stack"


MINATAR = EnvConfig(
    id="soulsai_ray.envs.minatar:MinAtar/Breakout-v1", max_episode_steps=200, frame_stack=2
)
FRAMES_DQN = image_dqn(learning_starts=300, replay_layout="frames")


@pytest.mark.parametrize(
    ("prioritized", "n_step_start"), [(False, 6), (True, None)], ids=["annealed_n", "prioritized"]
)
def test_a_serial_frames_run_trains_and_resumes_with_its_saved_replay(
    tmp_path, prioritized, n_step_start
):
    pytest.importorskip("soulsai_ray.envs.minatar")
    algo = replace(FRAMES_DQN, prioritized=prioritized, n_step_start=n_step_start)
    algo = replace(algo, n_step_anneal_steps=400)
    cfg = run_config(algo, MINATAR, steps=400, serial=True, save_replay=True, log_every_s=0.05)
    first = build_experiment(cfg, tmp_path).run()
    assert first["stop_reason"] == "env_steps" and first["updates"] > 0
    pushed = 400 // cfg.algo.push_every * cfg.algo.push_every  # a push every push_every steps
    assert first["counters"]["samples_accepted"] >= pushed - 2  # every pushed step, few stale
    latest = CheckpointManager(tmp_path / "checkpoints").latest()
    payload, _ = load_checkpoint(latest.path)
    buffer = payload["replay"]["buffer"]
    assert buffer["layout"] == "frames" and buffer["stack"] == 2
    assert list(buffer["obs_shape"]) == [10, 10, 4]  # one frame of the 10x10x8 stack
    assert buffer["total_written"] > 400
    if prioritized:  # the learner's TD errors reached the replay
        assert len(np.unique(buffer["priorities"][buffer["priorities"] > 0])) > 10
    # each episode's steps carry the n the schedule gave it: from 6 down towards algo.n_step
    assert buffer["n"] == algo.max_n_step
    horizons = np.unique(buffer["horizons"]).tolist()
    assert len(horizons) >= 3 and max(horizons) <= 6 if n_step_start else horizons == [3]
    # the replay comes back: learning goes on at once instead of after learning_starts steps
    again = replace(cfg, resume="auto", stop=replace(cfg.stop, env_steps=700))
    second = build_experiment(again, tmp_path).run()
    assert second["counters"]["resumes"] == 1
    assert second["updates"] - first["updates"] >= 250
