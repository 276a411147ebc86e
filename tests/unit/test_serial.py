"""cluster=serial: a run in one process, without Ray, writing what a Ray run writes."""

from __future__ import annotations

import json
import sys
import time

import pytest
from run_configs import run_config
from scenarios import run_beside
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import load_checkpoint
from soulsai_ray.config import TrainConfig
from soulsai_ray.evaluation import load_trained_policy
from soulsai_ray.experiment import build_experiment

DQN = DQNConfig(hidden_sizes=[32], learning_starts=200, batch_size=32, replay_ratio=16)
PPO = PPOConfig(hidden_sizes=[32], n_steps=128, epochs=1, minibatch_size=128)
ALGOS = pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])


def _cfg(algo, steps: int = 1500, **kwargs) -> TrainConfig:
    """A serial CartPole run that asks for Prometheus (which a serial run must not start)."""
    return run_config(
        algo,
        steps=steps,
        serial=True,
        checkpoint_every=50,
        keep_last=2,
        log_every_s=0.01,
        prometheus=True,
        **kwargs,
    )


@ALGOS
def test_a_serial_run_writes_what_a_ray_run_writes_and_never_imports_ray_runtime(algo, tmp_path):
    summary = build_experiment(_cfg(algo, window=10), tmp_path).run()
    assert summary["stop_reason"] == "env_steps"
    assert summary["env_steps"] >= 1500 and summary["episodes"] > 0 and summary["updates"] > 0
    assert summary["actors"] == 2 and summary["algo"] == algo.name
    assert summary["counters"]["samples_accepted"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["updates"] == summary["updates"]
    for name in ("config.yaml", "learning_curve.png"):
        assert (tmp_path / name).is_file(), name
    checkpoints = CheckpointManager(tmp_path / "checkpoints")
    latest = checkpoints.latest()
    assert latest is not None and latest.meta["updates"] == summary["updates"]
    payload, _ = load_checkpoint(latest.path)
    assert set(payload) >= {"learner", "version", "telemetry"}
    best = checkpoints.best()  # summary.json's best score is checkpoints/best's
    assert best is not None and summary["best_score"] == best.meta["score"]
    policy, config = load_trained_policy(latest.path)  # what scripts/evaluate.py plays
    assert config["env"]["id"] == "CartPole-v1"
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"episode/return_mean", "progress/updates", "dist/actors_alive"} <= tags
    if "ray" in sys.modules:  # the module may be imported, but no Ray was started
        import ray

        assert not ray.is_initialized()


@ALGOS
def test_resume_continues_the_counters_of_a_serial_run(algo, tmp_path):
    first = build_experiment(_cfg(algo, steps=1000), tmp_path).run()
    cfg = _cfg(algo, steps=2000, resume="auto")
    second = build_experiment(cfg, tmp_path).run()
    assert second["counters"]["resumes"] == 1
    assert second["env_steps"] >= 2000 > first["env_steps"]
    assert second["episodes"] > first["episodes"]
    assert second["updates"] >= first["updates"]


@ALGOS
def test_stop_from_another_thread_ends_the_run_with_a_final_checkpoint(algo, tmp_path):
    experiment = build_experiment(_cfg(algo, steps=10**7), tmp_path)
    loop = experiment.loop

    def wait_for_updates() -> None:
        while loop.counters.updates < 60:
            time.sleep(0.01)

    summary = run_beside(experiment, wait_for_updates, "enough")
    assert summary["stop_reason"] == "enough"
    latest = CheckpointManager(tmp_path / "checkpoints").latest()
    assert latest is not None and latest.meta["updates"] == summary["updates"]


def test_evaluations_in_a_serial_run_keep_the_best_agent(tmp_path):
    cfg = _cfg(DQN, steps=2500, eval_every=100, eval_episodes=2)
    summary = build_experiment(cfg, tmp_path).run()
    assert summary["counters"]["evaluations"] >= 2
    assert summary["best_metric"] == "eval/return_mean"
    best = CheckpointManager(tmp_path / "checkpoints").best()
    assert best is not None and best.meta["score"] == summary["best_score"]
    payload, _ = load_checkpoint(best.path)
    # the best is the first evaluation that reached the best score (a tie does not replace it)
    assert payload["eval_policy"]["version"] <= summary["last_eval"]["version"]
    assert best.meta["score"] >= summary["last_eval"]["return_mean"]
    assert payload["eval_policy"]["weights"]


@pytest.mark.parametrize(
    ("cluster", "key"),
    [({"address": "auto"}, "cluster.address"), ({"num_rollout_actors": "auto"}, "num_rollout")],
)
def test_a_serial_config_must_not_name_a_cluster(cluster, key):
    from soulsai_ray.config import parse_config
    from soulsai_ray.typed_config import ConfigError

    with pytest.raises(ConfigError, match=key):
        parse_config({"algo": {"name": "dqn"}, "cluster": {"serial": True, **cluster}})
