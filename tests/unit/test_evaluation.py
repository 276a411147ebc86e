"""Greedy play (soulsai_ray.evaluation) and the driver's evaluation books, without Ray."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import CheckpointError
from soulsai_ray.config import EnvConfig, EvalConfig
from soulsai_ray.evaluation import (
    GreedyPolicy,
    OwnEnv,
    PhasePolicy,
    PlaySetup,
    load_trained_policy,
    merge_results,
    play_checkpoints,
    play_episodes,
    policy_weights,
)
from soulsai_ray.loops.evaluation import BestScore, EvalCall, PeriodicEval
from soulsai_ray.loops.fleet import Outcome
from soulsai_ray.models import ActorCritic, QNetwork, state_dict_to_numpy


def _dqn_policy(q_bias: list[float]) -> GreedyPolicy:
    """A Q-net whose Q-values are ``q_bias`` whatever the observation."""
    policy = GreedyPolicy(DQNConfig(hidden_sizes=[4], dueling=False), 3, len(q_bias))
    weights = {k: np.zeros(shape, np.float32) for k, shape in policy.net.layout.items()}
    weights["advantage.bias"] = np.asarray(q_bias, dtype=np.float32)
    policy.load(weights, version=5)
    return policy


def test_greedy_dqn_takes_the_best_valid_action() -> None:
    policy = _dqn_policy([1.0, 3.0, 2.0])
    obs = np.zeros(3, dtype=np.float32)
    assert policy(obs, None, {}) == 1
    assert policy(obs, np.array([True, False, True]), {}) == 2
    assert policy(obs, np.array([True, False, False]), {}) == 0
    assert policy.version == 5


def test_greedy_ppo_takes_the_most_likely_valid_action_with_its_normalizer() -> None:
    algo = PPOConfig(hidden_sizes=[4], normalize_obs=True)
    policy = GreedyPolicy(algo, 2, 3)
    model = ActorCritic(2, 3, [4], "tanh", True)
    weights = {k: np.zeros_like(v) for k, v in state_dict_to_numpy(model).items()}
    weights["actor.1.bias"] = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    weights["normalizer.count"] = np.array(3.0)
    policy.load(weights)
    obs = np.ones(2, dtype=np.float32)
    assert policy(obs, None, {}) == 2
    assert policy(obs, np.array([True, True, False]), {}) == 0
    with pytest.raises(RuntimeError):  # a DQN net's weights do not fit a PPO policy
        policy.load(state_dict_to_numpy(QNetwork(2, 3, [4], True)))


def test_phase_policy_switches_on_the_reported_boss_phase() -> None:
    p1, p2 = _dqn_policy([1.0, 0.0]), _dqn_policy([0.0, 1.0])
    both = PhasePolicy({1: p1, 2: p2})
    obs = np.zeros(3, dtype=np.float32)
    assert both(obs, None, {}) == 0  # no phase reported: the first phase's policy
    assert both(obs, None, {"boss_phase": 1}) == 0
    assert both(obs, None, {"boss_phase": 2}) == 1
    assert both(obs, None, {"boss_phase": 3}) == 0
    with pytest.raises(ValueError):
        PhasePolicy({})


class _CrashyEnv(gym.Env):
    """5-step episodes paying 1 per step; crashes at seeded random steps; a mask on odd steps."""

    observation_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.Discrete(2)
    created = 0

    def __init__(self, crash_prob: float, rng: np.random.Generator) -> None:
        type(self).created += 1
        self.crash_prob, self.rng, self.t = crash_prob, rng, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(3, dtype=np.float32), {"action_mask": np.array([True, True])}

    def step(self, action):
        if self.rng.random() < self.crash_prob:
            raise RuntimeError("injected crash")
        assert self.t % 2 == 0 or action == 0, "a masked action was taken"
        self.t += 1
        mask = np.array([True, self.t % 2 == 0])
        done = self.t == 5
        info = {"action_mask": mask, **({"episode_metrics": {"win": 1.0}} if done else {})}
        return np.zeros(3, dtype=np.float32), 1.0, done, False, info


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_episodes_lost_to_crashes_are_played_again_and_counted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lease = OwnEnv(lambda: _CrashyEnv(0.1, rng), max_backoff_s=0.0)
    result = play_episodes(lease, _dqn_policy([0.0, 1.0]), 6, 2, max_env_errors=100)
    assert result.returns == [5.0] * 6 and result.lengths == [5] * 6
    assert result.metrics == [{"win": 1.0}] * 6
    assert result.env_errors == lease.env_errors
    summary = result.summary()
    assert summary["win_rate"] == 1.0 and summary["episodes"] == 6


def test_a_hopeless_env_ends_the_evaluation_after_the_fault_limit() -> None:
    rng = np.random.default_rng(0)
    lease = OwnEnv(lambda: _CrashyEnv(1.0, rng), max_backoff_s=0.0)
    result = play_episodes(lease, _dqn_policy([0.0, 1.0]), 3, 2, max_env_errors=4)
    assert result.returns == [] and result.env_errors == 5


def test_merged_results_hold_every_episode() -> None:
    rng = np.random.default_rng(0)
    parts = [
        play_episodes(OwnEnv(lambda: _CrashyEnv(0.0, rng)), _dqn_policy([1.0, 0.0]), n, 2)
        for n in (2, 3)
    ]
    merged = merge_results(parts)
    assert len(merged.returns) == len(merged.metrics) == 5


def test_policy_weights_prefer_the_evaluated_ones() -> None:
    q_net = QNetwork(3, 2, [4], True)
    learner = {"learner": {"q_net": q_net.state_dict()}, "version": 9}
    weights, version = policy_weights(learner)
    assert version == 9 and set(weights) == set(q_net.state_dict())
    evaluated = {**learner, "eval_policy": {"version": 7, "weights": {"a": torch.ones(2)}}}
    weights, version = policy_weights(evaluated)
    assert version == 7 and list(weights) == ["a"] and isinstance(weights["a"], np.ndarray)
    with pytest.raises(KeyError):
        policy_weights({"replay": {}})


def test_load_trained_policy_follows_best_and_refuses_a_foreign_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "checkpoints")
    q_net = QNetwork(4, 2, [8], True)
    config = "algo:\n  name: dqn\n  hidden_sizes: [8]\n"
    payload = {"learner": {"q_net": q_net.state_dict()}, "version": 3}
    manager.save("ckpt_1", payload, {"updates": 1, "score": 2.0}, config)
    trained, run_config = load_trained_policy(tmp_path / "checkpoints" / "best")
    assert trained.version == 3 and trained.algo.hidden_sizes == [8]
    assert run_config["algo"]["name"] == "dqn"
    setup = PlaySetup(EnvConfig(id="CartPole-v1"), {1: trained})
    assert len(play_checkpoints(setup, 2, seed=0).returns) == 2
    manager.save("ckpt_2", {"replay": {}}, {"updates": 2}, config)
    with pytest.raises(CheckpointError, match="ckpt_2"):
        load_trained_policy(tmp_path / "checkpoints" / "ckpt_2")
    wrong_env = PlaySetup(EnvConfig(id="LunarLander-v3"), {1: trained})
    with pytest.raises(ValueError, match="LunarLander-v3"):
        play_checkpoints(wrong_env, 1, seed=0)


def test_checkpoints_rank_by_score_then_by_return_mean(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=1)
    manager.save("a", {}, {"updates": 1, "return_mean": 50.0}, "")
    manager.save("b", {}, {"updates": 2, "return_mean": 10.0, "score": 80.0}, "")
    manager.save("c", {}, {"updates": 3, "return_mean": 90.0, "score": None}, "")
    manager.save("d", {}, {"updates": 4, "return_mean": 0.0, "score": math.nan}, "")
    manager.save("e", {}, {"updates": 5, "return_mean": 60.0}, "")  # from before scores
    # "c" and "d" were not evaluated (score null / NaN): their training return never counts
    assert manager.best().name == "b"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["b", "e"]
    manager.save("f", {}, {"updates": 6, "return_mean": 85.0}, "")
    assert manager.best().name == "f"


class _FakeFleet:
    def __init__(self, size: int) -> None:
        self.calls: list[tuple[int, object]] = []
        self.size = size
        self.up = list(range(size))

    def available(self) -> list[int]:
        return self.up

    def __len__(self) -> int:
        return self.size

    def submit(self, index, call) -> None:
        class _Actor:
            class evaluate:  # noqa: N801 - stands in for a Ray actor method
                @staticmethod
                def remote(*args):
                    return args

        self.calls.append((index, call(_Actor())))


def test_evaluations_take_turns_and_one_runs_at_a_time() -> None:
    evals = PeriodicEval(EvalConfig(every_updates=100, episodes=3), updates=0)
    fleet = _FakeFleet(size=2)
    assert not evals.due(99) and evals.due(100)
    assert evals.submit(fleet, 4, ["ref"], 130) == 0
    assert not evals.due(10_000)  # one at a time
    (index, (args, call)) = fleet.calls[0]
    assert args == (4, ["ref"], 3) and call == EvalCall(4, ["ref"])
    assert evals.take(Outcome(0, "report", None, failed=False)) is None  # not an evaluation
    assert evals.take(Outcome(0, "report", call, failed=False)) == call
    assert not evals.due(199) and evals.due(200)
    assert evals.submit(fleet, 5, ["ref"], 200) == 1  # the next actor's turn
    evals.take(Outcome(1, None, fleet.calls[1][1][1], failed=True))
    assert evals.due(201)  # a failed evaluation is tried again at once, on the next actor
    fleet.up = [1]  # actor 0 is down: its turn passes to one that is up
    assert evals.submit(fleet, 6, ["ref"], 201) == 1
    evals.take(Outcome(1, "report", fleet.calls[2][1][1], failed=False))
    fleet.up = []
    assert evals.submit(fleet, 7, ["ref"], 300) is None and evals.due(300)  # waits for an actor
    assert not PeriodicEval(EvalConfig(every_updates=None), 0).due(10**9)


def test_best_score_needs_a_real_improvement_and_throttles_the_rolling_metric(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("soulsai_ray.loops.evaluation.time.monotonic", lambda: now[0])
    best = BestScore(best=5.0, min_interval_s=30.0)
    assert not best.worth_saving(5.0, throttled=False)
    assert not best.worth_saving(None, throttled=False)
    assert not best.worth_saving(math.inf, throttled=False)
    assert best.worth_saving(6.0, throttled=True)
    best.saved(6.0)
    assert not best.worth_saving(7.0, throttled=True)  # within the interval
    assert best.worth_saving(7.0, throttled=False)  # an evaluation is never throttled
    now[0] += 30.0
    assert best.worth_saving(7.0, throttled=True)
    assert BestScore(None, 0.0).worth_saving(-1e9, throttled=True)
