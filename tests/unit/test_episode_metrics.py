"""Episode metrics end to end without Ray: the SoulsGym adapter, the samplers, the rolling window
and the renamed soulsgym kwargs."""

from __future__ import annotations

import inspect
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.factory import make_env
from soulsai_ray.envs.soulsgym import (
    SoulsEpisodeMetrics,
    adapt_soulsgym_kwargs,
    ensure_soulsgym,
    fight_outcome,
)
from soulsai_ray.envs.wrappers import vector_episode_metrics
from soulsai_ray.episode_window import (
    MAX_TRACKED_METRICS,
    EpisodeWindow,
    metric_summary_name,
    summarize_episodes,
)
from soulsai_ray.models import q_network, state_dict_to_numpy
from soulsai_ray.sampling.epsilon_greedy import EpsilonGreedySampler
from soulsai_ray.sampling.on_policy import OnPolicySampler

pytest.importorskip("soulsgym")
FAKE_SOULS = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"
ANGLES = ["player_pose[3]", "boss_pose[3]"]
CONF = Path(__file__).resolve().parents[2] / "conf"


def _souls_env(**kwargs) -> gym.Env:
    return make_env(EnvConfig(id=FAKE_SOULS, kwargs=kwargs, angle_keys=ANGLES))


def _play_random(env: gym.Env, episodes: int, seed: int) -> list[tuple[dict, dict]]:
    """(final info, final raw observation pieces) of random episodes among valid actions."""
    rng = np.random.default_rng(seed)
    ends = []
    obs, info = env.reset(seed=seed)
    while len(ends) < episodes:
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs, _, terminated, truncated, info = env.step(action)
        assert info["boss_phase"] == 1
        if terminated or truncated:
            duel = env.unwrapped._duel
            ends.append(
                (info, {"boss": duel.boss_hp, "player": duel.player_hp, "term": terminated})
            )
            obs, info = env.reset()
    return ends


def test_souls_envs_report_the_fight_outcome_at_every_episode_end():
    env = _souls_env()
    boss_max, player_max = env.unwrapped._boss_max_hp, env.unwrapped._player_max_hp
    ends = _play_random(env, episodes=40, seed=3)
    outcomes = {info["episode_metrics"]["win"] for info, _ in ends}
    for info, raw in ends:
        metrics = info["episode_metrics"]
        assert set(metrics) == {"boss_hp_final", "player_hp_final", "win"}
        assert metrics["boss_hp_final"] == pytest.approx(raw["boss"] / boss_max)
        assert metrics["player_hp_final"] == pytest.approx(raw["player"] / player_max)
        assert metrics["win"] == (1.0 if raw["boss"] <= 0 else 0.0)
    assert outcomes <= {0.0, 1.0}


def test_fight_outcome_without_max_hp_reports_hp_and_a_win_at_zero():
    assert fight_outcome({"boss_hp": np.array([0.0]), "player_hp": np.array([3.0])}) == {
        "boss_hp_final": 0.0,
        "player_hp_final": 3.0,
        "win": 1.0,
    }
    lost = fight_outcome({"boss_hp": 12.5, "player_hp": 0, "boss_max_hp": 50, "player_max_hp": 9})
    assert lost == {"boss_hp_final": 0.25, "player_hp_final": 0.0, "win": 0.0}


class _OwnMetricsEnv(gym.Env):
    """A SoulsGym-shaped Dict env that also reports a number of its own; ends in 3 steps."""

    observation_space = gym.spaces.Dict(
        {
            "phase": gym.spaces.Discrete(2, start=1),
            "boss_hp": gym.spaces.Box(0, 100, (1,)),
            "player_hp": gym.spaces.Box(0, 100, (1,)),
        }
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {
            "phase": 1 + (self.t >= 2),
            "boss_hp": np.array([max(100.0 - 50 * self.t, 0.0)]),
            "player_hp": np.array([7.0]),
        }

    def step(self, action):
        self.t += 1
        done = self.t == 3
        info = {"episode_metrics": {"dodges": 4.0, "win": 0.5}} if done else {}
        return self._obs(), 1.0, done, False, info


def test_the_envs_own_metrics_are_kept_and_the_phase_is_reported_each_step():
    env = SoulsEpisodeMetrics(_OwnMetricsEnv())
    _, info = env.reset()
    assert info["boss_phase"] == 1
    phases = []
    for _ in range(3):
        _, _, done, _, info = env.step(0)
        phases.append(info["boss_phase"])
    assert phases == [1, 2, 2] and done
    # the env's own numbers win over the adapter's: it knows its fight best
    assert info["episode_metrics"] == {
        "boss_hp_final": 0.0,
        "player_hp_final": 7.0,
        "win": 0.5,
        "dodges": 4.0,
    }
    with pytest.raises(ValueError, match="boss_hp"):
        SoulsEpisodeMetrics(gym.make("CartPole-v1"))


def test_the_dqn_sampler_reports_metrics_aligned_with_returns():
    cfg = DQNConfig(hidden_sizes=[16], n_step=2)
    sampler = EpsilonGreedySampler(lambda: _souls_env(), cfg, seed=1)
    net = q_network(cfg, sampler.obs_spec, sampler.num_actions)
    sampler.load_weights(state_dict_to_numpy(net), 0)
    for _ in range(1500):
        sampler.step(epsilon=1.0)
    stats = sampler.pop_stats()
    assert len(stats.returns) == len(stats.metrics) >= 3
    assert all(set(m) == {"boss_hp_final", "player_hp_final", "win"} for m in stats.metrics)
    sampler.close()


def test_the_ppo_sampler_reports_each_sub_envs_metrics():
    cfg = PPOConfig(hidden_sizes=[16])
    sampler = OnPolicySampler(lambda: _souls_env(), 3, cfg, seed=2)
    finished = 0
    for _ in range(8):
        _, stats = sampler.collect(128)
        assert len(stats.returns) == len(stats.metrics)
        for ret, metrics in zip(stats.returns, stats.metrics, strict=True):
            assert set(metrics) == {"boss_hp_final", "player_hp_final", "win"}
            # FakeSouls pays +1 for a kill: a win shows in the return
            assert (metrics["win"] == 1.0) == (ret > 0.5) or metrics["win"] == 0.0
        finished += len(stats.returns)
    assert finished > 0
    sampler.close()


def test_vector_metrics_come_from_the_final_info_of_the_env_that_ended():
    infos = {
        "final_info": {
            "episode_metrics": {
                "win": np.array([0.0, 1.0, 0.0]),
                "_win": np.array([False, True, True]),
                "x": np.array([5.0, 6.0, 7.0]),
                "_x": np.array([False, True, False]),
            },
            "_episode_metrics": np.array([False, True, True]),
        },
    }
    assert vector_episode_metrics(infos, 1) == {"win": 1.0, "x": 6.0}
    assert vector_episode_metrics(infos, 2) == {"win": 0.0}
    assert vector_episode_metrics(infos, 0) == {}
    assert vector_episode_metrics({}, 0) == {}


def test_window_means_follow_the_last_episodes_of_each_metric():
    window = EpisodeWindow(window=3)
    assert window.means() == {} and window.return_mean is None
    for i in range(5):
        metrics = {"win": float(i % 2)}
        if i >= 3:
            metrics["boss_hp_final"] = 0.1 * i
        window.add(float(i), 10 + i, metrics)
    means = window.means()
    assert means["episode/return_mean"] == pytest.approx(3.0)  # 2, 3, 4
    assert means["episode/length_mean"] == pytest.approx(13.0)
    assert means["episode/win_rate"] == pytest.approx(1 / 3)  # 0, 1, 0
    assert means["episode/boss_hp_final_mean"] == pytest.approx(0.35)  # 0.3, 0.4
    restored = EpisodeWindow(window=3)
    restored.load(window.state())
    assert restored.means() == means


def test_the_window_tracks_a_bounded_number_of_metric_names(caplog):
    window = EpisodeWindow(window=2)
    for i in range(MAX_TRACKED_METRICS + 10):
        window.add(0.0, 1, {f"m{i}": 1.0})
    assert len(window.metrics) == MAX_TRACKED_METRICS
    assert sum("ignored" in r.message for r in caplog.records) == 1  # warned once, not per episode


def test_summaries_name_wins_a_rate_and_other_metrics_a_mean():
    assert metric_summary_name("win") == "win_rate"
    assert metric_summary_name("boss_hp_final") == "boss_hp_final_mean"
    summary = summarize_episodes([1.0, 3.0], [10, 20], [{"win": 1.0}, {"win": 0.0, "x": 2.0}])
    assert summary == {
        "return_mean": 2.0,
        "return_std": 1.0,
        "length_mean": 15.0,
        "episodes": 2,
        "win_rate": 0.5,
        "x_mean": 2.0,
    }
    assert summarize_episodes([], [])["return_mean"] is None


class _RenamedKwargEnv(gym.Env):
    """An env of a soulsgym release that calls the pose switch ``random_player_pose``."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, game_speed: int = 1, random_player_pose: bool = False) -> None:
        self.random_player_pose = random_player_pose


gym.register("soulsai_ray/RenamedKwarg-v0", entry_point=_RenamedKwargEnv)


def test_renamed_soulsgym_kwargs_are_spelled_as_the_installed_release_does():
    new = adapt_soulsgym_kwargs("soulsai_ray/RenamedKwarg-v0", {"init_pose_randomization": True})
    assert new == {"random_player_pose": True}
    ensure_soulsgym()
    old = adapt_soulsgym_kwargs("SoulsGymIudex-v0", {"random_player_pose": True, "phase": 2})
    assert old == {"init_pose_randomization": True, "phase": 2}
    unknown = {"not_a_kwarg": 1, "init_pose_randomization": False}
    assert adapt_soulsgym_kwargs("SoulsGymIudex-v0", unknown) == unknown  # the env names it
    assert adapt_soulsgym_kwargs("no-such-env", {"x": 1}) == {"x": 1}


@pytest.mark.parametrize(
    ("name", "cls_path"),
    [("iudex", "IudexEnv"), ("iudex_demo", "IudexEnvDemo")],
)
def test_the_shipped_soulsgym_configs_fit_the_installed_release(name, cls_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from soulsai_ray.config import parse_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"env={name}"])
    env = parse_config(OmegaConf.to_container(cfg, resolve=True)).env
    ensure_soulsgym()
    import soulsgym.envs.darksouls3.iudex as iudex

    kwargs = adapt_soulsgym_kwargs(env.id, env.kwargs)
    inspect.signature(getattr(iudex, cls_path).__init__).bind(None, **kwargs)
    assert gym.spec(env.id).entry_point.endswith(cls_path)
