"""Fault injection: every actor kind SIGKILLed at random moments (seeded), mid-training."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import traceback

import pytest
import ray
from run_configs import run_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig
from soulsai_ray.experiment import build_experiment

pytestmark = pytest.mark.usefixtures("ray_local")

SEED = int(os.environ.get("SOULSAI_FAULT_SEED", "0"))
COUNTER_OF = {
    "rollout": "actor_restarts",
    "learner": "learner_restarts",
    "replay": "replay_restarts",
    "weights": "weight_store_restarts",
}


PACED_CARTPOLE = EnvConfig(id="CartPole-v1", step_latency_s=0.005)
"""CartPole at 200 steps/s per actor, as a fast game: the run lasts as long as its faults do,
and unpaced actors and learner would spend that time using every core they get."""

RESTARTING = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    ray.exceptions.GetTimeoutError,
)
"""What a call to an actor that Ray is restarting raises."""


def _pid(actor, timeout_s: float = 60.0) -> int:
    """The actor's pid once it is up (waits while Ray restarts it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=10)
        except RESTARTING:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


RECOVERY_TIMEOUT_S = 90.0
FAULTS_DONE = "fault injection over"


def _wait_for_recovery(loop) -> float:
    """Seconds until every actor is back, training goes on and new weights reached every actor."""
    start = time.monotonic()
    for actor in loop.all_actors():
        _pid(actor, timeout_s=RECOVERY_TIMEOUT_S)
    updates, version = loop.counters.updates, loop.counters.weight_version
    while time.monotonic() - start < RECOVERY_TIMEOUT_S:
        time.sleep(0.2)
        try:
            held = [
                ray.get(a.__ray_call__.remote(lambda self: self.sampler.version), timeout=10)
                for a in loop.fleet.actors
            ]
        except RESTARTING:  # a rollout actor killed a moment ago is still restarting
            continue
        if loop.counters.updates > updates + 20 and min(held) > version:
            return time.monotonic() - start
    raise AssertionError(f"no recovery within {RECOVERY_TIMEOUT_S:.0f}s: {loop.counters}")


def _inject_faults(loop, kinds: list[str], log: dict) -> None:
    """Kills a random actor of each kind, and of one kind twice, in a random order 0.5-2 s
    apart (often while the one killed before is still being restarted), waits for the recovery, then
    stops the run."""
    rng = random.Random(SEED)
    try:
        while not loop.singletons.get("learner") or loop.counters.updates == 0:
            time.sleep(0.1)
        schedule = [*kinds, rng.choice(kinds)]
        rng.shuffle(schedule)
        start = time.monotonic()
        for kind in schedule:
            time.sleep(rng.uniform(0.5, 2.0))
            actors = loop.fleet.actors if kind == "rollout" else [loop.singletons[kind]]
            os.kill(_pid(rng.choice(actors)), signal.SIGKILL)
            log["kills"][kind] += 1
            log["updates_at_last_kill"] = loop.counters.updates
            log["timeline"].append(
                (round(time.monotonic() - start, 1), kind, loop.counters.updates)
            )
        log["recovered_s"] = _wait_for_recovery(loop)
    except Exception as err:  # noqa: BLE001 - reported by the test
        log["error"] = f"{err!r}\n{traceback.format_exc()}"
    finally:
        loop.stop(FAULTS_DONE)


def _run_with_faults(algo, kinds: list[str], tmp_path) -> tuple[dict, dict, object]:
    cfg = run_config(algo, PACED_CARTPOLE, time_s=600.0, checkpoint_every=200, keep_last=2)
    experiment = build_experiment(cfg, tmp_path)
    loop = experiment.loop
    log = {"kills": dict.fromkeys(kinds, 0), "timeline": []}
    thread = threading.Thread(target=_inject_faults, args=(loop, kinds, log), daemon=True)
    thread.start()
    summary = experiment.run()
    thread.join(timeout=60)
    assert "error" not in log, log["error"]
    assert summary["stop_reason"] == FAULTS_DONE, summary  # not the 600 s limit
    return summary, log, loop


def _last(tmp_path, tag: str) -> float:
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    return acc.Scalars(tag)[-1].value


def _assert_every_restart_counted(summary: dict, log: dict, tmp_path) -> None:
    counters = summary["counters"]
    for kind, kills in log["kills"].items():
        assert kills >= 1
        assert counters[COUNTER_OF[kind]] == kills, (kind, counters, log)
    # training went on after the faults, and new weights reached every rollout actor
    assert log["recovered_s"] < RECOVERY_TIMEOUT_S
    assert summary["exit_status"] == 0
    assert _last(tmp_path, "dist/actor_restarts") == counters["actor_restarts"]
    assert _last(tmp_path, "dist/learner_restarts") == counters["learner_restarts"]


def test_dqn_survives_killed_actors_of_every_kind(tmp_path):
    algo = DQNConfig(hidden_sizes=[64], learning_starts=500, batch_size=64, replay_ratio=32)
    kinds = ["rollout", "learner", "replay", "weights"]
    summary, log, loop = _run_with_faults(algo, kinds, tmp_path)
    _assert_every_restart_counted(summary, log, tmp_path)
    counters = summary["counters"]
    assert _last(tmp_path, "dist/replay_restarts") == log["kills"]["replay"]
    assert _last(tmp_path, "dist/weight_store_restarts") == log["kills"]["weights"]
    stats = ray.get(loop.replay.stats.remote())
    # the run's count is replay's own: the current replay's count on top of what earlier
    # replays had reported before they were killed
    assert stats["incarnation"] == loop._replay_counts.incarnation
    assert counters["samples_accepted"] >= stats["accepted"] > 0
    assert sum(stats["accepted_by_node"].values()) == stats["accepted"]
    loop.close()


def test_ppo_survives_killed_actors_and_learner(tmp_path):
    algo = PPOConfig(
        hidden_sizes=[32], n_steps=128, epochs=2, minibatch_size=128, iteration_timeout_s=20
    )
    summary, log, loop = _run_with_faults(algo, ["rollout", "learner"], tmp_path)
    _assert_every_restart_counted(summary, log, tmp_path)
    counters = summary["counters"]
    # every accepted rollout step was trained on exactly once
    assert counters["samples_trained"] == counters["samples_accepted"] - counters["samples_invalid"]
    assert counters["samples_trained"] > 0
    loop.close()
