"""PPO keeps training when a rollout actor's process dies mid-iteration."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.config import (
    ClusterConfig,
    EnvConfig,
    PPOConfig,
    StopConfig,
    TelemetryConfig,
    TrainConfig,
)
from soulsai_ray.loops.common import MetricsExporter, RunRecorder
from soulsai_ray.loops.ppo_sync import PPOSyncLoop

pytestmark = pytest.mark.usefixtures("ray_local")


def test_iteration_finishes_without_a_killed_actor_and_the_actor_rejoins(tmp_path):
    cfg = TrainConfig(
        algo=PPOConfig(
            n_steps=100, epochs=2, minibatch_size=100, iteration_timeout_s=30.0, min_workers=1
        ),
        # 100 steps at >= 5 ms each: an iteration's rollouts take about half a second
        env=EnvConfig(id="CartPole-v1", step_latency_s=0.005),
        cluster=ClusterConfig(num_rollout_actors=3, rollout_num_cpus=0),
        stop=StopConfig(env_steps=None, time_s=60.0),
        telemetry=TelemetryConfig(console=False, prometheus=False, log_every_s=0.1),
    )
    recorder = RunRecorder(tmp_path, cfg.telemetry, cfg.stop, 2, "", MetricsExporter(False, "test"))
    loop = PPOSyncLoop(cfg, recorder)
    killed = {}

    def kill_one_actor_mid_iteration() -> None:
        while loop.iteration < 3:
            time.sleep(0.05)
        pid = ray.get(loop.fleet.actors[1].pid.remote())
        time.sleep(0.2)  # the next iteration's rollouts are under way
        killed["iteration"] = loop.iteration
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    def stop_after_recovery() -> None:
        while "pid" not in killed or loop.iteration < killed["iteration"] + 8:
            time.sleep(0.05)
        cfg.stop.time_s = 0.001

    threads = [
        threading.Thread(target=f, daemon=True)
        for f in (kill_one_actor_mid_iteration, stop_after_recovery)
    ]
    for t in threads:
        t.start()
    summary = loop.run()
    assert "pid" in killed, "the actor was never killed"
    assert summary["counters"]["actor_failures"] >= 1
    new_pid = ray.get(loop.fleet.actors[1].pid.remote())
    assert new_pid != killed["pid"]

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    workers = [int(e.value) for e in events.Scalars("dist/iteration_workers")]
    assert workers[: killed["iteration"]] == [3] * killed["iteration"]
    after = workers[killed["iteration"] :]
    assert 2 in after, workers  # an iteration finished with the two survivors
    assert after[-1] == 3, workers  # the restarted actor is back
    assert after.index(2) < len(after) - 1 - after[::-1].index(3)
    for actor in loop.all_actors():
        ray.kill(actor)
