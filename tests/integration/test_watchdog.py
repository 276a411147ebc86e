"""Faults that raise nothing: frozen envs and processes, lost actors, failing checkpoint writes."""

from __future__ import annotations

import errno
import os
import resource
import signal
import threading
import time

import pytest
import ray
from run_configs import FAKE_SOULS_ID, run_config
from scenarios import run_beside

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig
from soulsai_ray.experiment import Experiment, build_experiment

pytestmark = pytest.mark.usefixtures("ray_local")

DQN = DQNConfig(hidden_sizes=[32], learning_starts=300, batch_size=32, replay_ratio=16)
PPO = PPOConfig(hidden_sizes=[32], n_steps=64, epochs=1, minibatch_size=64, iteration_timeout_s=5)


def _experiment(algo, tmp_path, env: EnvConfig | str, **run) -> Experiment:
    """A run of ``algo`` on ``env`` with ``run``'s stop and cluster settings (see `run_config`)."""
    cfg = run_config(algo, env, checkpoint_every=100, keep_last=2, seed=3, **run)
    return build_experiment(cfg, tmp_path)


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_a_hanging_env_step_is_killed_restarted_and_counted(algo, tmp_path):
    env = EnvConfig(id=FAKE_SOULS_ID, kwargs={"step_hang_prob": 0.003}, step_timeout_s=2.0)
    experiment = _experiment(algo, tmp_path, env, steps=1000, time_s=240)
    summary = experiment.run()
    counters = summary["counters"]
    assert summary["stop_reason"] == "env_steps", summary
    print("stall test counters", summary["wall_s"], counters)
    assert counters["env_stalls"] >= 1
    # a killed actor is restarted by Ray, and the GCS counts it
    assert counters["actor_restarts"] >= counters["env_stalls"] - 1
    assert summary["updates"] > 0
    experiment.close()


def test_a_frozen_rollout_process_is_noticed_by_its_silent_heartbeat(tmp_path):
    # paced at 200 steps/s per actor: the healthy actor and the learner would otherwise use
    # every core they get while the test waits on the frozen one
    env = EnvConfig(id="CartPole-v1", step_timeout_s=2.0, step_latency_s=0.005)
    experiment = _experiment(DQN, tmp_path, env, time_s=120)
    loop = experiment.loop
    frozen = {}

    def freeze_one() -> None:
        while loop.counters.updates == 0:
            time.sleep(0.1)
        frozen["pid"] = ray.get(loop.fleet.actors[0].pid.remote())
        os.kill(frozen["pid"], signal.SIGSTOP)  # a frozen game PC process: no answer at all
        frozen["at"] = time.monotonic()
        while loop.fleet.stalls == 0 and time.monotonic() - frozen["at"] < 60:
            time.sleep(0.05)
        frozen["noticed_s"] = time.monotonic() - frozen["at"]
        time.sleep(3.0)
        steps = loop.counters.env_steps
        while loop.fleet.num_alive < 2 or loop.counters.env_steps < steps + 500:
            time.sleep(0.1)
        frozen["back_s"] = time.monotonic() - frozen["at"]

    summary = run_beside(experiment, freeze_one, "recovery watched")
    assert summary["stop_reason"] == "recovery watched", summary  # not the 120 s limit
    assert summary["counters"]["env_stalls"] == 1
    assert frozen["noticed_s"] < 2.0 * 1.25 + 2.0, frozen  # timeout, probe interval, a poll
    new_pid = ray.get(loop.fleet.actors[0].pid.remote(), timeout=60)
    assert new_pid != frozen["pid"] and loop.fleet.num_alive == 2
    loop.close()


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_a_learner_gone_for_good_ends_the_run_with_a_summary(algo, tmp_path):
    experiment = _experiment(algo, tmp_path, "CartPole-v1", time_s=300, actor_max_restarts=0)
    loop = experiment.loop
    killed = {}

    def kill_learner() -> None:
        while loop.counters.updates == 0:
            time.sleep(0.1)
        pid = ray.get(loop.learner.__ray_call__.remote(lambda self: os.getpid()))
        os.kill(pid, signal.SIGKILL)
        killed["at"] = time.monotonic()

    thread = threading.Thread(target=kill_learner, daemon=True)
    thread.start()
    summary = experiment.run()
    ended_after = time.monotonic() - killed["at"]
    assert summary["stop_reason"] == "learner_lost"
    assert summary["exit_status"] == 1
    assert ended_after < 45, ended_after
    assert (tmp_path / "summary.json").is_file()
    loop.close()


def test_failed_checkpoint_writes_are_counted_and_training_goes_on(tmp_path):
    experiment = _experiment(DQN, tmp_path, "CartPole-v1", steps=6000)
    manager, calls = experiment.loop.recorder.checkpoints, {"n": 0}
    real_save = manager.save

    def disk_full_twice(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    manager.save = disk_full_twice
    summary = experiment.run()
    assert summary["counters"]["write_failures"] == {"checkpoint": 2}
    assert summary["stop_reason"] == "env_steps"
    assert calls["n"] >= 4  # retried at the next interval and at the end
    latest = manager.latest()
    assert latest is not None and latest.meta["env_steps"] == summary["env_steps"]
    experiment.close()


def test_the_driver_sleeps_while_rollouts_are_paused_and_the_learner_has_no_data(tmp_path):
    """Every step is corrupt (NaN rewards), so replay stays empty: sampling runs past the
    slack and pauses, and every learner call returns at once with no update. The driver must
    wait without spinning."""
    env = EnvConfig(id=FAKE_SOULS_ID, kwargs={"nan_reward_prob": 1.0})
    algo = DQNConfig(hidden_sizes=[32], learning_starts=100, batch_size=32, ratio_slack_steps=200)
    experiment = _experiment(algo, tmp_path, env, time_s=120)
    loop = experiment.loop
    measured = {}

    def measure() -> None:
        while not loop.ratio.sampling_paused():
            time.sleep(0.1)
        start, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(6)
        end = resource.getrusage(resource.RUSAGE_SELF)
        used = (end.ru_utime - cpu.ru_utime) + (end.ru_stime - cpu.ru_stime)
        measured["cpu_share"] = used / (time.monotonic() - start)

    # stopped once measured rather than at the time limit
    summary = run_beside(experiment, measure, "measured")
    assert summary["stop_reason"] == "measured", summary
    assert summary["counters"]["env_invalid_steps"] > 0 and summary["updates"] == 0
    assert measured["cpu_share"] < 0.15, measured
    loop.close()
