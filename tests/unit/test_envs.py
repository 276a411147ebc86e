"""make_env, the fake SoulsGym env, LatencyWrapper and action-mask extraction."""

import time

import gymnasium as gym
import numpy as np
import pytest

from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.factory import make_env
from soulsai_ray.envs.fake_souls import ENV_ID, NOOP, FakeSoulsEnv, InvalidActionError
from soulsai_ray.envs.wrappers import action_mask_from_info, next_tick

FAKE_ID = f"soulsai_ray.envs.fake_souls:{ENV_ID}"
BOSS_MAX_HP, PLAYER_MAX_HP = 1037.0, 454.0


@pytest.mark.parametrize(
    ("env_id", "obs_dim", "num_actions"), [("LunarLander-v3", 8, 4), ("CartPole-v1", 4, 2)]
)
def test_make_env_gives_float32_vectors_and_discrete_actions(env_id, obs_dim, num_actions):
    env = make_env(EnvConfig(id=env_id))
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert env.observation_space.shape == (obs_dim,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(num_actions)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (obs_dim,)
    obs, *_ = env.step(0)
    assert obs.dtype == np.float32 and obs.shape == (obs_dim,)
    env.close()


def test_module_colon_id_with_a_namespace_builds_the_fake_env():
    env = make_env(EnvConfig(id=FAKE_ID))
    assert env.observation_space.shape == (107,) and env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(20)
    assert env.spec.max_episode_steps == 200
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["action_mask"].shape == (20,) and info["action_mask"][NOOP]
    angled = make_env(EnvConfig(id=FAKE_ID, angle_keys=["player_pose[3]", "boss_pose[3]"]))
    assert angled.observation_space.shape == (109,)


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        (EnvConfig(id="no_such_module_xyz:Foo-v0"), "cannot import module"),
        (EnvConfig(id="NoSuchEnv-v0"), "NoSuchEnv"),
        (EnvConfig(id="CartPole-v1", angle_keys=["x"]), "Dict observation"),
        (EnvConfig(id=FAKE_ID, angle_keys=["player_hp[4]"]), "out of range"),
    ],
)
def test_make_env_errors_name_the_env(cfg, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        make_env(cfg)
    assert cfg.id in str(info.value)


# --- FakeSoulsEnv ----------------------------------------------------------------------------


def _random_valid_action(info: dict, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(info["action_mask"])))


def test_fake_masks_change_and_noop_is_always_valid():
    env = FakeSoulsEnv()
    _, info = env.reset(seed=1)
    masks = [info["action_mask"]]
    for _ in range(50):
        _, _, terminated, _, info = env.step(NOOP)
        masks.append(info["action_mask"])
        if terminated:
            break
    masks = np.array(masks)
    assert masks.dtype == bool and masks.shape[1] == 20
    assert masks[:, NOOP].all()
    assert not masks.all()  # some actions are masked out
    assert len({m.tobytes() for m in masks}) > 1  # and the subset changes


def test_fake_raises_on_a_masked_action_and_counts_steps():
    env = FakeSoulsEnv()
    _, info = env.reset(seed=2)
    while info["action_mask"].all():
        _, _, _, _, info = env.step(NOOP)
    steps = env.step_count
    invalid = int(np.flatnonzero(~info["action_mask"])[0])
    with pytest.raises(InvalidActionError, match=f"action {invalid}"):
        env.step(invalid)
    assert env.step_count == steps
    env.step(NOOP)
    assert env.step_count == steps + 1


def test_fake_is_deterministic_under_a_seed():
    runs = []
    for _ in range(2):
        env, rng = FakeSoulsEnv(), np.random.default_rng(0)
        obs, info = env.reset(seed=7)
        trace = [obs["player_pose"].copy(), info["action_mask"]]
        for _ in range(60):
            obs, reward, terminated, _, info = env.step(_random_valid_action(info, rng))
            trace += [obs["boss_pose"].copy(), obs["player_hp"].copy(), reward, info["action_mask"]]
            if terminated:
                obs, info = env.reset()
        runs.append(trace)
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fake_episodes_end_and_observations_stay_in_the_space():
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(0)
    endings = {"terminated": 0, "truncated": 0}
    for episode in range(20):
        obs, info = env.reset(seed=episode)
        for _ in range(201):
            assert env.observation_space.contains(obs)
            obs, _, terminated, truncated, info = env.step(_random_valid_action(info, rng))
            if terminated or truncated:
                endings["terminated" if terminated else "truncated"] += 1
                break
        else:
            pytest.fail("episode ran past the 200-step limit")
    assert endings["terminated"] > 0
    assert sum(endings.values()) == 20


def test_fake_time_limit_truncates():
    env = make_env(EnvConfig(id=FAKE_ID, max_episode_steps=3))
    env.reset(seed=0)
    results = [env.step(NOOP)[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (False, True)]


def _fake_in_reach(**kwargs) -> FakeSoulsEnv:
    """A reset env with every action valid and the player 1 m from the boss."""
    env = FakeSoulsEnv(valid_action_prob=1.0, **kwargs)
    env.reset(seed=0)
    duel = env._duel
    duel.player_xy = duel.boss_xy - np.array([1.0, 0.0])
    return env


def test_fake_light_attack_in_reach_damages_the_boss():
    env = _fake_in_reach()
    obs, reward, terminated, _, _ = env.step(16)
    assert obs["boss_hp"][0] == BOSS_MAX_HP - 60
    assert reward == pytest.approx(60 / BOSS_MAX_HP)
    assert not terminated


def test_fake_killing_the_boss_terminates_with_a_bonus():
    env = _fake_in_reach()
    env._duel.boss_hp = 50.0
    obs, reward, terminated, _, _ = env.step(16)
    assert terminated and obs["boss_hp"][0] == 0
    assert reward == pytest.approx(50 / BOSS_MAX_HP + 1.0)


@pytest.mark.parametrize(
    ("action", "player_loss", "boss_loss"),
    [(NOOP, 100.0, 0.0), (8, 0.0, 0.0), (18, 0.0, 150.0)],  # hit, dodged by a roll, parried
)
def test_fake_landing_boss_attack(action, player_loss, boss_loss):
    env = _fake_in_reach()
    env._duel.windup = 1  # the boss's attack lands in this step
    obs, reward, _, _, _ = env.step(action)
    assert obs["player_hp"][0] == PLAYER_MAX_HP - player_loss
    assert obs["boss_hp"][0] == BOSS_MAX_HP - boss_loss
    assert reward == pytest.approx(boss_loss / BOSS_MAX_HP - player_loss / PLAYER_MAX_HP)


def test_fake_player_death_terminates_with_a_penalty():
    env = _fake_in_reach()
    env._duel.windup, env._duel.player_hp = 1, 40.0
    obs, reward, terminated, _, _ = env.step(NOOP)
    assert terminated and obs["player_hp"][0] == 0
    assert reward == pytest.approx(-40 / PLAYER_MAX_HP - 1.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(NOOP)


def test_fake_step_errors_come_at_the_configured_rate():
    env = FakeSoulsEnv(step_error_prob=0.1)
    env.reset(seed=0)
    errors = 0
    for _ in range(2000):
        try:
            _, _, terminated, _, _ = env.step(NOOP)
        except RuntimeError as err:
            assert str(err) == "injected game crash"
            errors += 1
            continue
        if terminated:
            env.reset()
    assert 140 <= errors <= 260  # 200 expected, +-4.5 standard deviations
    assert env.injected_errors == errors and env.step_count == 2000 - errors


def test_fake_reset_errors_come_at_the_configured_rate():
    env = FakeSoulsEnv(reset_error_prob=0.5)
    errors = 0
    for attempt in range(400):
        try:
            env.reset(seed=attempt)
        except RuntimeError as err:
            assert str(err) == "injected game crash"
            errors += 1
    assert 160 <= errors <= 240  # 200 expected, +-4 standard deviations
    assert env.reset_count == 400 - errors


def test_fake_without_error_probabilities_never_fails():
    env, rng = FakeSoulsEnv(), np.random.default_rng(1)
    _, info = env.reset(seed=0)
    for _ in range(1000):
        _, _, terminated, truncated, info = env.step(_random_valid_action(info, rng))
        if terminated or truncated:
            _, info = env.reset()
    assert env.injected_errors == 0 and env.step_count == 1000


# --- LatencyWrapper and action masks ---------------------------------------------------------


def test_latency_wrapper_holds_steps_and_resets():
    env = make_env(EnvConfig(id="CartPole-v1", step_latency_s=0.05, reset_latency_s=0.08))
    start = time.perf_counter()
    env.reset(seed=0)
    assert time.perf_counter() - start >= 0.08
    for k in range(1, 4):
        env.step(0)
        # on the ticks after the reset's (measured from before the reset: a process descheduled
        # after the reset returned would see the first tick come early)
        assert time.perf_counter() - start >= 0.08 + k * 0.05 - 1e-3


def test_latency_wrapper_keeps_its_rate_when_steps_return_late():
    env = make_env(EnvConfig(id="CartPole-v1", step_latency_s=0.02))
    env.reset(seed=0)
    start = time.perf_counter()
    for i in range(50):
        if i % 5 == 0:
            time.sleep(0.015)  # the agent (or a busy machine) is late now and then
        _, _, terminated, truncated, _ = env.step(i % 2)
        if terminated or truncated or i % 25 == 24:
            env.reset(seed=i)  # a reset's time is the reset's
    # 20 ms a step: the ten late steps cost nothing (waiting for each would add 150 ms)
    assert 50 * 0.02 <= time.perf_counter() - start < 50 * 0.02 + 0.075


def test_next_tick_follows_the_clock_and_starts_anew_after_a_long_stall():
    assert next_tick(10.0, 0.05, now=10.02) == pytest.approx(10.05)
    assert next_tick(10.0, 0.05, now=10.08) == pytest.approx(10.05)  # late: no wait, on the grid
    assert next_tick(10.0, 0.05, now=10.30) == 10.30  # stalled for many ticks: no catching up


def test_action_mask_from_a_bool_array():
    mask = action_mask_from_info({"action_mask": np.array([True, False, True])}, 3)
    np.testing.assert_array_equal(mask, [True, False, True])


def test_action_mask_from_allowed_indices():
    mask = action_mask_from_info({"allowed_actions": [0, 3]}, 4)
    np.testing.assert_array_equal(mask, [True, False, False, True])


def test_no_mask_in_info_gives_none():
    assert action_mask_from_info({"other": 1}, 4) is None


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        ({"action_mask": np.zeros(3, dtype=bool)}, "no valid action"),
        ({"allowed_actions": []}, "no valid action"),
        ({"action_mask": np.ones(2, dtype=bool)}, "shape"),
    ],
)
def test_bad_masks_raise(info, fragment):
    with pytest.raises(ValueError, match=fragment):
        action_mask_from_info(info, 3)
