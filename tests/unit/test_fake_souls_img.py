"""The Iudex fight seen as frames: FakeSoulsImg's renderer and info, SoulsGymIudexImg-v0 checked
against soulsgym's own env class, the configs, the preflight and a serial DQN run."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from run_configs import SOULS_ANGLES, image_dqn, run_config
from soulsgym_envs import soulsgym_env_without_game

from soulsai_ray import algo_config
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.compose import compose_config
from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.factory import check_data_env_id, make_env, probe_env_spec
from soulsai_ray.envs.fake_souls import InvalidActionError
from soulsai_ray.envs.fake_souls_img import (
    BAR_WIDTH,
    ENV_ID,
    FRAME_SHAPE,
    HUD_ROWS,
    WINDUP_COLORS,
    FakeSoulsImgEnv,
)
from soulsai_ray.envs.soulsgym import (
    frame_fight_outcome,
    is_souls_image_id,
    iudex_boss_max_hp,
)
from soulsai_ray.experiment import build_experiment
from soulsai_ray.observations import ObsSpec
from soulsai_ray.preflight import check_before_start, check_replay_memory
from soulsai_ray.torsos import conv_torso
from soulsai_ray.typed_config import ConfigError

FAKE_IMG = f"soulsai_ray.envs.fake_souls_img:{ENV_ID}"
FRAME = ObsSpec.image(90, 160, 3)
SMALL_REPLAY = {
    "dqn": ["algo.buffer_size=5000"],
    "dqn_efficient": ["algo.buffer_size=5000"],
    "ppo": [],
}
"""Overrides that keep the preflight's replay memory check within any test machine's memory."""


def _env(seed: int = 0) -> tuple[FakeSoulsImgEnv, np.ndarray, dict]:
    env = FakeSoulsImgEnv(valid_action_prob=1.0)
    obs, info = env.reset(seed=seed)
    return env, obs, info


def _bar_pixels(frame: np.ndarray, row: int, col: int) -> int:
    """Filled (not grey) pixels of the HUD bar whose top left is (row, col)."""
    bar = frame[row, col : col + BAR_WIDTH]
    return int((bar != 50).any(axis=1).sum())


def test_frames_are_uint8_images_of_the_space_and_info_is_iudex_imgs():
    env, obs, info = _env()
    assert env.observation_space.shape == FRAME_SHAPE == obs.shape and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert set(info) == {"allowed_actions", "boss_hp"}
    assert info["boss_hp"] == iudex_boss_max_hp() and info["allowed_actions"] == list(range(20))
    obs, _, _, _, info = env.step(19)
    assert env.observation_space.contains(obs) and 19 in info["allowed_actions"]
    env._mask[3] = False
    with pytest.raises(InvalidActionError):
        env.step(3)


def test_the_bosss_windup_changes_the_frame_step_by_step():
    env, _, _ = _env()
    duel = env._duel
    duel.boss_xy = duel.player_xy + np.array([2.0, 0.0])
    frames = {}
    for windup in (0, 3, 2, 1):
        duel.windup = windup
        frames[windup] = env._observation()
    view = {k: f[HUD_ROWS:].reshape(-1, 3) for k, f in frames.items()}
    for windup, color in WINDUP_COLORS.items():
        assert not np.array_equal(frames[windup], frames[0])
        shown = (view[windup] == color).all(axis=1).sum()
        assert shown > 40, f"windup {windup}: boss and reach ring in {color}"
        assert not (view[0] == color).all(axis=1).any()
    assert len({f.tobytes() for f in frames.values()}) == 4


def test_hp_and_stamina_bars_track_the_fight():
    env, obs, _ = _env()
    assert _bar_pixels(obs, 1, 2) == _bar_pixels(obs, 5, 2) == _bar_pixels(obs, 1, 82) == 76
    duel = env._duel
    duel.player_hp, duel.boss_hp, duel.player_sp = env._player_max_hp / 2, 0.0, 0.0
    frame = env._observation()
    assert _bar_pixels(frame, 1, 2) == 38 and _bar_pixels(frame, 1, 82) == 0
    assert _bar_pixels(frame, 5, 2) == 0
    duel.boss_hp = env._boss_max_hp * 0.25
    assert _bar_pixels(env._observation(), 1, 82) == 19


def test_frames_are_deterministic_per_seed():
    def episode(seed: int) -> list[np.ndarray]:
        env = FakeSoulsImgEnv()
        obs, info = env.reset(seed=seed)
        frames, rng = [obs], np.random.default_rng(seed)
        for _ in range(60):
            obs, _, terminated, _, info = env.step(rng.choice(info["allowed_actions"]))
            frames.append(obs)
            if terminated:
                break
        return frames

    first, again, other = episode(3), episode(3), episode(4)
    assert len(first) == len(again) and all(map(np.array_equal, first, again))
    assert not all(map(np.array_equal, first, other))
    assert len({f.tobytes() for f in first}) > 10  # the view follows the fight


def test_a_frame_renders_in_well_under_a_millisecond():
    env, _, _ = _env()
    render = env._renderer.render
    best = min(_seconds_per_call(render, env._duel) for _ in range(5))
    assert best < 1e-3, f"{best * 1e3:.3f} ms per frame"


def _seconds_per_call(fn, arg, calls: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(arg)
    return (time.perf_counter() - start) / calls


def test_a_won_fight_reports_win_and_boss_hp_from_info():
    env = make_env(EnvConfig(id=FAKE_IMG, kwargs={"valid_action_prob": 1.0}))
    env.reset(seed=0)
    duel = env.unwrapped._duel
    duel.boss_xy = duel.player_xy + np.array([1.0, 0.0])
    duel.boss_hp = 50.0
    _, _, terminated, _, info = env.step(16)  # light attack in reach
    assert terminated and info["episode_metrics"] == {"boss_hp_final": 0.0, "win": 1.0}
    env = make_env(EnvConfig(id=FAKE_IMG, max_episode_steps=3))
    _, info = env.reset(seed=0)
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(19)
    assert truncated and not terminated
    assert info["episode_metrics"] == {"boss_hp_final": 1.0, "win": 0.0}
    assert is_souls_image_id(ENV_ID) and is_souls_image_id("SoulsGymIudexImg-v0")
    with pytest.raises(ValueError, match=r"info\['boss_hp'\]; got \['allowed_actions'\]"):
        frame_fight_outcome({"allowed_actions": [19]}, iudex_boss_max_hp())
    check_data_env_id(FAKE_IMG)  # a checkpoint's config may name it: the module only registers


def test_fake_souls_img_has_the_spaces_and_info_of_soulsgyms_iudex_img_env(monkeypatch):
    from soulsgym.core.game_state import GameState

    cfg = compose_config("dqn", "iudex_img", [])
    real = soulsgym_env_without_game(monkeypatch, "IudexImgEnv", **cfg.env.kwargs)
    ours, _, info = _env()
    assert real.observation_space == ours.observation_space
    assert real.observation_space.dtype == ours.observation_space.dtype
    assert real.action_space == ours.action_space
    real._internal_state = GameState(boss_hp=500, boss_max_hp=1037, player_animation="Idle")
    assert set(real.info) == set(info)
    assert real.env_args.boss_max_hp == iudex_boss_max_hp()


@pytest.mark.parametrize("env", ["fake_souls_img", "iudex_img"])
@pytest.mark.parametrize("algo", ["dqn", "dqn_efficient", "ppo"])
def test_configs_compose_with_a_cnn_that_fits_the_frames(algo, env):
    cfg = compose_config(algo, env, [])
    assert cfg.algo.name == algo.removesuffix("_efficient") and cfg.algo.torso == "nature_cnn"
    assert not cfg.algo.normalize_obs and cfg.env.angle_keys == []
    module, width = conv_torso(cfg.algo.torso, FRAME)
    assert module is not None and width == 64 * 7 * 16  # 90x160 -> 21x39 -> 9x18 -> 7x16
    check_before_start(compose_config(algo, env, SMALL_REPLAY[algo]))


def test_iudex_img_trains_dqn_efficient_by_default_and_runs_on_game_pcs():
    cfg = compose_config("dqn_efficient", "iudex_img", [])
    assert cfg.env.id == "SoulsGymIudexImg-v0" and cfg.env.actor_resources == {"soulsgym": 1.0}
    assert cfg.algo.torso == "nature_cnn" and not cfg.algo.normalize_obs and cfg.algo.layer_norm
    check_before_start(compose_config("dqn_efficient", "iudex_img", SMALL_REPLAY["dqn_efficient"]))
    assert probe_env_spec(compose_config("dqn", "fake_souls_img", []).env).obs == FRAME


def test_preflight_on_iudex_img_reads_the_frames_spec(monkeypatch):
    monkeypatch.setitem(algo_config.MIN_SIDES, "nature_cnn", 100)
    with pytest.raises(
        ConfigError, match=r"^algo.torso: nature_cnn: .*at least 100x100, .*90x160x3 uint8 image"
    ):
        check_before_start(compose_config("dqn", "iudex_img", SMALL_REPLAY["dqn"]))
    monkeypatch.undo()
    normalized = compose_config("dqn_efficient", "iudex_img", ["algo.normalize_obs=true"])
    with pytest.raises(ConfigError, match=r"^algo.normalize_obs: .*90x160x3 uint8 image"):
        check_before_start(normalized)
    vectors = compose_config("dqn", "iudex", ["algo.torso=nature_cnn"])  # FakeSouls' spec
    with pytest.raises(ConfigError, match=r"^algo.torso: .*needs image.*109 float32"):
        check_before_start(vectors)
    cfg = compose_config("dqn", "iudex_img", [])  # each frame stored once: 4.0 GiB
    need = r"100,000 frames of 90x160x3 uint8 image need 4\.0 GiB of replay, but this machine has"
    with pytest.raises(ConfigError, match=rf"^algo.buffer_size: {need} 1\.0 GiB available"):
        check_replay_memory(cfg, available=2**30)
    check_replay_memory(cfg, available=int(4.5e9))
    transitions = compose_config("dqn", "iudex_img", ["algo.replay_layout=transitions"])
    with pytest.raises(ConfigError, match=r"^algo.buffer_size: 100,000 transitions of 90x160x3"):
        check_replay_memory(transitions, available=int(4.5e9))  # obs and next_obs: 8.1 GiB


def test_a_serial_dqn_run_on_frames_writes_a_checkpoint_and_fight_metrics(tmp_path):
    algo = image_dqn("nature_cnn", batch_size=8, replay_ratio=2, buffer_size=1000)
    algo = dataclasses.replace(
        algo, learning_starts=150, target_update_every=20, eps_decay_steps=200
    )
    env = EnvConfig(id=FAKE_IMG, max_episode_steps=50)
    cfg = run_config(algo, env, steps=400, serial=True, checkpoint_every=10, log_every_s=0.05)
    summary = build_experiment(cfg, tmp_path).run()
    assert summary["stop_reason"] == "env_steps" and summary["updates"] > 0
    assert summary["episodes"] >= 4 and summary["counters"]["env_errors"] == 0
    metrics = summary["episode_metrics"]
    assert 0.0 <= metrics["win_rate"] <= 1.0 and 0.0 <= metrics["boss_hp_final_mean"] <= 1.0
    assert (tmp_path / "summary.json").is_file()
    latest = CheckpointManager(tmp_path / "checkpoints").latest()
    assert latest is not None and latest.meta["updates"] == summary["updates"]


@pytest.mark.parametrize("algo", ["dqn", "dqn_efficient", "ppo"])
def test_fake_souls_is_the_same_fight_as_vectors_for_comparing_with_frames(algo):
    """env=fake_souls and env=fake_souls_img: the same fight, episodes and actions; one gives
    the state vector an MLP reads, the other frames a CNN reads."""
    vectors, frames = (
        compose_config(algo, "fake_souls", []),
        compose_config(algo, "fake_souls_img", []),
    )
    vector_spec, frame_spec = probe_env_spec(vectors.env), probe_env_spec(frames.env)
    assert vector_spec.obs == ObsSpec.vector(vector_spec.obs.size) and frame_spec.obs == FRAME
    assert vector_spec.num_actions == frame_spec.num_actions == 20
    assert vectors.algo.torso == "mlp" and vectors.env.angle_keys == SOULS_ANGLES
    check_before_start(compose_config(algo, "fake_souls", SMALL_REPLAY[algo]))
    play = make_env(vectors.env)
    try:
        obs, info = play.reset(seed=0)
        assert obs.shape == vector_spec.obs.shape and info["action_mask"].shape == (20,)
    finally:
        play.close()
