"""A SoulsGym-shaped fight (Iudex observation space, 20 masked actions, crashes, corrupt
rewards) through the run's samplers, replay and learners, in one process (``cluster=serial``).

The fake env raises if it is given an action its mask forbids; with no injected crashes a run
therefore proves that no masked action was ever taken (every env error would be counted).
``tests/integration/test_souls_fight_on_ray.py`` checks that the same counts arrive from Ray's
rollout actors.
"""

from __future__ import annotations

import json
import math

import pytest
from run_configs import (
    FIGHT_TAGS,
    SOULS_DQN,
    SOULS_EVAL_EVERY,
    SOULS_PPO,
    fake_souls,
    run_config,
    scalar_tags,
)

from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import load_checkpoint
from soulsai_ray.experiment import build_experiment

DQN, PPO, EVAL_EVERY = SOULS_DQN, SOULS_PPO, SOULS_EVAL_EVERY
ALGOS = pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])


def _run(algo, tmp_path, steps: int = 3000, return_target: float | None = None, **env) -> dict:
    cfg = run_config(algo, fake_souls(**env), steps=steps, return_mean=return_target, serial=True)
    return build_experiment(cfg, tmp_path).run()


@ALGOS
def test_masked_actions_are_never_taken(algo, tmp_path):
    summary = _run(algo, tmp_path)
    counters = summary["counters"]
    assert counters["env_errors"] == 0  # a masked action would have raised inside the env
    assert counters["batches_rejected"] == {} and counters["env_invalid_steps"] == 0
    assert summary["env_steps"] >= 3000 and summary["episodes"] > 0 and summary["updates"] > 0


@ALGOS
def test_injected_game_crashes_are_recovered_and_counted(algo, tmp_path):
    summary = _run(algo, tmp_path, step_error_prob=0.005, reset_error_prob=0.005)
    counters = summary["counters"]
    assert counters["env_errors"] > 0
    assert counters["samples_invalid"] == 0
    assert summary["env_steps"] >= 3000 and summary["updates"] > 0


@pytest.mark.parametrize(
    ("algo", "glitch"),
    [(DQN, math.inf), (PPO, math.nan), (DQN, 3.4e38)],
    ids=["dqn-inf", "ppo-nan", "dqn-float32-max"],
)
def test_corrupt_rewards_are_dropped_counted_and_never_solve_a_run(algo, glitch, tmp_path):
    """Only a corrupt reward could reach the return target: the run must end at its step limit."""
    summary = _run(algo, tmp_path, return_target=1e6, nan_reward_prob=0.01, glitch_reward=glitch)
    counters = summary["counters"]
    assert summary["stop_reason"] == "env_steps"
    assert summary["return_mean"] is not None and abs(summary["return_mean"]) < 1e4
    assert counters["env_invalid_steps"] > 0
    assert counters["batches_rejected"] == {}  # dropped at the source, never stored
    assert counters["nan_rollbacks"] == 0  # nothing non-finite reached a loss
    assert summary["updates"] > 0


@ALGOS
def test_fight_outcomes_are_logged_and_evaluations_keep_the_best_agent(algo, tmp_path):
    """Wins and boss HP reach TensorBoard and summary.json; every new best evaluation writes a
    checkpoint holding exactly the evaluated weights, and ``best`` names the top one."""
    cfg = run_config(
        algo,
        fake_souls(),
        steps=4000,
        serial=True,
        keep_last=1,
        window=5,
        eval_every=EVAL_EVERY[algo.name],
    )
    summary = build_experiment(cfg, tmp_path).run()
    tags = scalar_tags(tmp_path)
    for tag in FIGHT_TAGS:
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    metrics = summary["episode_metrics"]
    assert 0.0 <= metrics["win_rate"] <= 1.0 and 0.0 <= metrics["boss_hp_final_mean"] <= 1.0
    assert summary["counters"]["evaluations"] >= 2
    assert summary["best_metric"] == "eval/return_mean" and summary["last_eval"]["episodes"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())["episode_metrics"] == metrics

    best = CheckpointManager(tmp_path / "checkpoints").best()
    assert best is not None and best.name.endswith("_eval")
    assert best.meta["score"] == summary["best_score"]
    assert best.meta["score_metric"] == "eval/return_mean"
    assert (tmp_path / "checkpoints" / "best").read_text().strip() == best.name
    payload, _ = load_checkpoint(best.path)
    evaluated = payload["eval_policy"]
    assert 0 < evaluated["version"] <= payload["version"]
    learner = payload["learner"]
    net = learner["q_net"] if "q_net" in learner else learner["model"]
    assert {k: tuple(v.shape) for k, v in evaluated["weights"].items()} == {
        k: tuple(v.shape) for k, v in net.items()
    }
