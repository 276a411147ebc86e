"""A SoulsGym-shaped env (Iudex observation space, 20 masked actions, crashes) through Ray.

The fake env raises if it is given an action its mask forbids; with no injected crashes a run
therefore proves that no masked action was ever taken (every env error would be counted).
"""

from __future__ import annotations

import math

import pytest

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import (
    CheckpointConfig,
    ClusterConfig,
    EnvConfig,
    StopConfig,
    TelemetryConfig,
    TrainConfig,
)
from soulsai_ray.experiment import build_experiment

pytestmark = pytest.mark.usefixtures("ray_local")

FAKE_SOULS = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"
ANGLES = ["player_pose[3]", "boss_pose[3]"]


def _run(
    algo,
    tmp_path,
    steps: int,
    error_prob: float,
    nan_reward_prob: float = 0.0,
    glitch_reward: float = float("nan"),
    return_target: float | None = None,
) -> dict:
    cfg = TrainConfig(
        algo=algo,
        env=EnvConfig(
            id=FAKE_SOULS,
            kwargs={
                "step_error_prob": error_prob,
                "reset_error_prob": error_prob,
                "nan_reward_prob": nan_reward_prob,
                "glitch_reward": glitch_reward,
            },
            angle_keys=ANGLES,
        ),
        cluster=ClusterConfig(num_rollout_actors=2, rollout_num_cpus=0),
        stop=StopConfig(env_steps=steps, return_mean=return_target),
        checkpoint=CheckpointConfig(every_updates=10**9),
        telemetry=TelemetryConfig(console=False, prometheus=False),
    )
    experiment = build_experiment(cfg, tmp_path)
    summary = experiment.run()
    import ray

    for actor in experiment.loop.all_actors():
        ray.kill(actor)
    return summary


DQN = DQNConfig(
    hidden_sizes=[64],
    learning_starts=500,
    batch_size=32,
    replay_ratio=32,
    collect_steps=128,
    n_step=3,
)
PPO = PPOConfig(hidden_sizes=[64], n_steps=128, epochs=2, minibatch_size=128)


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_masked_actions_are_never_taken(algo, tmp_path):
    summary = _run(algo, tmp_path, steps=3000, error_prob=0.0)
    counters = summary["counters"]
    assert counters["env_errors"] == 0  # a masked action would have raised inside the env
    assert counters["batches_rejected"] == {} and counters["env_invalid_steps"] == 0
    assert summary["env_steps"] >= 3000 and summary["episodes"] > 0 and summary["updates"] > 0


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_injected_game_crashes_are_recovered_and_counted(algo, tmp_path):
    summary = _run(algo, tmp_path, steps=3000, error_prob=0.005)
    counters = summary["counters"]
    assert counters["env_errors"] > 0
    assert counters["actor_failures"] == 0  # crashes never kill a rollout actor
    assert counters["samples_invalid"] == 0
    assert summary["env_steps"] >= 3000 and summary["updates"] > 0


@pytest.mark.parametrize(
    ("algo", "glitch"),
    [(DQN, math.inf), (PPO, math.nan), (DQN, 3.4e38)],
    ids=["dqn-inf", "ppo-nan", "dqn-float32-max"],
)
def test_corrupt_rewards_are_dropped_counted_and_never_solve_a_run(algo, glitch, tmp_path):
    """Only a corrupt reward could reach the return target: the run must end at its step limit."""
    summary = _run(
        algo,
        tmp_path,
        steps=3000,
        error_prob=0.0,
        nan_reward_prob=0.01,
        glitch_reward=glitch,
        return_target=1e6,
    )
    counters = summary["counters"]
    assert summary["stop_reason"] == "env_steps"
    assert summary["return_mean"] is not None and abs(summary["return_mean"]) < 1e4
    assert counters["env_invalid_steps"] > 0
    assert counters["batches_rejected"] == {}  # dropped at the source, not shipped
    assert counters["nan_rollbacks"] == 0  # nothing non-finite reached a loss
    assert summary["updates"] > 0


def _tags(run_dir) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return set(events.Tags()["scalars"])


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_fight_outcomes_are_logged_and_evaluations_keep_the_best_agent(algo, tmp_path):
    """Wins and boss HP reach TensorBoard and summary.json; every new best evaluation writes a
    checkpoint holding exactly the evaluated weights, and ``best`` names the top one."""
    import json

    import ray

    from soulsai_ray.checkpoint import CheckpointManager
    from soulsai_ray.checkpoint_folder import load_checkpoint
    from soulsai_ray.config import EvalConfig

    cfg = TrainConfig(
        algo=algo,
        env=EnvConfig(id=FAKE_SOULS, angle_keys=ANGLES),
        cluster=ClusterConfig(num_rollout_actors=2, rollout_num_cpus=0),
        stop=StopConfig(env_steps=4000),
        checkpoint=CheckpointConfig(every_updates=10**9, keep_last=1),
        eval=EvalConfig(every_updates=20, episodes=2),
        telemetry=TelemetryConfig(console=False, prometheus=False, window=5),
    )
    experiment = build_experiment(cfg, tmp_path)
    summary = experiment.run()
    for actor in experiment.loop.all_actors():
        ray.kill(actor)

    tags = _tags(tmp_path)
    for tag in (
        "episode/win",
        "episode/win_rate",
        "episode/boss_hp_final",
        "episode/boss_hp_final_mean",
        "episode/player_hp_final_mean",
        "episode/length_mean",
        "eval/return_mean",
        "eval/win_rate",
        "eval/boss_hp_final_mean",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    metrics = summary["episode_metrics"]
    assert 0.0 <= metrics["win_rate"] <= 1.0 and 0.0 <= metrics["boss_hp_final_mean"] <= 1.0
    assert summary["counters"]["evaluations"] >= 2
    assert summary["best_metric"] == "eval/return_mean" and summary["last_eval"]["episodes"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())["episode_metrics"] == metrics

    manager = CheckpointManager(tmp_path / "checkpoints")
    best = manager.best()
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
