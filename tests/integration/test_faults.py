"""Fault injection: rollout actors killed repeatedly and the learner killed once, mid-training."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.config import (
    CheckpointConfig,
    ClusterConfig,
    DQNConfig,
    EnvConfig,
    PPOConfig,
    StopConfig,
    TelemetryConfig,
    TrainConfig,
)
from soulsai_ray.loops.common import MetricsExporter, RunRecorder
from soulsai_ray.loops.dqn_async import DQNAsyncLoop
from soulsai_ray.loops.ppo_sync import PPOSyncLoop

pytestmark = pytest.mark.usefixtures("ray_local")

RUN_S = 30.0
ACTOR_KILL_EVERY_S = 4.0


def _pid(actor) -> int:
    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=60)


def _inject_faults(loop, stop_cfg: StopConfig, kills: dict[str, int]) -> None:
    """Kills a rollout actor every few seconds and the learner once, then ends the run."""
    while not hasattr(loop, "learner") or loop.counters.updates == 0:
        time.sleep(0.1)
    start = time.monotonic()
    manager = CheckpointManager(loop.recorder.checkpoints.root)
    while time.monotonic() - start < RUN_S:
        time.sleep(ACTOR_KILL_EVERY_S)
        victim = loop.fleet.actors[kills["actors"] % len(loop.fleet)]
        try:
            os.kill(_pid(victim), signal.SIGKILL)
            kills["actors"] += 1
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass  # still restarting from the previous kill
        if kills["learner"] == 0 and manager.latest() is not None:
            os.kill(_pid(loop.learner), signal.SIGKILL)
            kills["learner"] = 1
    stop_cfg.time_s = 0.001


def _run_with_faults(loop_cls, algo, tmp_path) -> tuple[dict, dict[str, int], object]:
    cfg = TrainConfig(
        algo=algo,
        env=EnvConfig(id="CartPole-v1"),
        cluster=ClusterConfig(num_rollout_actors=2, rollout_num_cpus=0),
        stop=StopConfig(env_steps=None, time_s=600.0),
        checkpoint=CheckpointConfig(every_updates=200, keep_last=2),
        telemetry=TelemetryConfig(console=False, prometheus=False, log_every_s=0.5),
    )
    recorder = RunRecorder(
        tmp_path, cfg.telemetry, cfg.stop, 2, "", MetricsExporter(False, "faults")
    )
    loop = loop_cls(cfg, recorder)
    kills = {"actors": 0, "learner": 0}
    thread = threading.Thread(target=_inject_faults, args=(loop, cfg.stop, kills), daemon=True)
    thread.start()
    summary = loop.run()
    thread.join(timeout=30)
    return summary, kills, loop


def _last(tmp_path, tag: str) -> float:
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    return acc.Scalars(tag)[-1].value


def _assert_faults_counted(counters: dict, kills: dict[str, int], tmp_path) -> None:
    assert kills["actors"] >= 4 and kills["learner"] == 1
    # every restart Ray completed is counted; the last kill's restart may still be under way
    assert kills["actors"] - 1 <= counters["actor_restarts"] <= kills["actors"]
    assert counters["learner_restarts"] == 1
    assert 1 <= counters["actor_failures"] <= kills["actors"]  # failures the driver saw
    assert counters["learner_failures"] <= 1  # only if a call was under way when it died
    assert _last(tmp_path, "dist/actor_restarts") == counters["actor_restarts"]
    assert _last(tmp_path, "dist/learner_restarts") == 1


def test_dqn_survives_killed_actors_and_learner(tmp_path):
    algo = DQNConfig(hidden_sizes=[64], learning_starts=500, batch_size=64, replay_ratio=32)
    summary, kills, loop = _run_with_faults(DQNAsyncLoop, algo, tmp_path)
    counters = summary["counters"]
    _assert_faults_counted(counters, kills, tmp_path)
    stats = ray.get(loop.replay.stats.remote())
    # replay counted every accepted transition once per actor (no duplicated pushes), and the
    # run's counter is replay's own count, so nothing pushed by a killed actor goes uncounted
    assert stats["total_added"] == sum(stats["accepted_by_actor"].values())
    assert counters["samples_accepted"] == stats["total_added"] > 0
    assert summary["updates"] > 0 and summary["episodes"] > 0
    for actor in [*loop.fleet.actors, loop.learner, loop.replay, loop.weight_store]:
        ray.kill(actor)


def test_ppo_survives_killed_actors_and_learner(tmp_path):
    algo = PPOConfig(
        hidden_sizes=[32], n_steps=128, epochs=2, minibatch_size=128, iteration_timeout_s=20
    )
    summary, kills, loop = _run_with_faults(PPOSyncLoop, algo, tmp_path)
    counters = summary["counters"]
    _assert_faults_counted(counters, kills, tmp_path)
    # every accepted rollout step was trained on exactly once
    assert counters["samples_trained"] == counters["samples_accepted"] - counters["samples_invalid"]
    assert counters["samples_trained"] > 0
    for actor in [*loop.fleet.actors, loop.learner, loop.weight_store]:
        ray.kill(actor)
