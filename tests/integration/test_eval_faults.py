"""Evaluations during training under faults: the evaluating actor killed at seeded random
moments, and games that freeze or crash in the middle of an evaluation, for both algorithms."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import ray
from run_configs import FAKE_SOULS_ID, SOULS_ANGLES, run_config

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig
from soulsai_ray.experiment import Experiment, build_experiment
from soulsai_ray.loops.evaluation import EvalCall

pytestmark = pytest.mark.usefixtures("ray_local")

DQN = DQNConfig(hidden_sizes=[32], learning_starts=300, batch_size=32, replay_ratio=16)
PPO = PPOConfig(hidden_sizes=[32], n_steps=64, epochs=1, minibatch_size=64, iteration_timeout_s=5)


def _experiment(algo, tmp_path, env: EnvConfig, seconds: float) -> Experiment:
    cfg = run_config(algo, env, time_s=seconds, keep_last=1, eval_every=5, eval_episodes=2, seed=5)
    return build_experiment(cfg, tmp_path)


def _run_watched(experiment: Experiment, watch: Callable[[threading.Event], None]) -> dict:
    """Runs ``experiment`` with ``watch(done)`` in a thread beside it (``done`` is set once the
    run ends), then kills the run's actors; returns the run's summary."""
    done = threading.Event()
    thread = threading.Thread(target=watch, args=(done,), daemon=True)
    thread.start()
    try:
        return experiment.run()
    finally:
        done.set()
        thread.join(timeout=10)
        experiment.close()


def _evaluating(loop) -> int | None:
    """The index of the rollout actor running an evaluation now, if any."""
    fleet = getattr(loop, "fleet", None)
    if fleet is None:
        return None
    for call in list(fleet.calls._calls.values()):
        if isinstance(call.extra, EvalCall):
            return call.key
    return None


@pytest.mark.parametrize(("algo", "seed"), [(DQN, 11), (PPO, 12)], ids=["dqn", "ppo"])
def test_the_evaluating_actor_killed_at_random_moments(algo, seed, tmp_path):
    """SIGKILL-like kills of whichever actor evaluates, after a seeded random delay into the
    evaluation: the run goes on, evaluations resume on the restarted fleet, nothing is lost."""
    env = EnvConfig(id=FAKE_SOULS_ID, angle_keys=SOULS_ANGLES, step_latency_s=0.002)
    experiment = _experiment(algo, tmp_path, env, seconds=120)
    loop = experiment.loop
    rng = np.random.default_rng(seed)
    kills: list[int] = []
    evals_at_last_kill = [0]

    def killer(stop: threading.Event) -> None:
        while not stop.is_set() and len(kills) < 3:
            index = _evaluating(loop)
            if index is None:
                time.sleep(0.02)
                continue
            time.sleep(float(rng.uniform(0.0, 0.5)))  # somewhere inside the evaluation
            if _evaluating(loop) == index:
                evals_at_last_kill[0] = loop.counters.evaluations
                ray.kill(loop.fleet.actors[index], no_restart=False)
                kills.append(index)
        # as a signal would: the loop finishes normally once evaluations went on after the kills
        while not stop.wait(0.2):
            if loop.counters.evaluations >= max(2, evals_at_last_kill[0] + 1):
                experiment.stop("enough")
                return

    summary = _run_watched(experiment, killer)
    counters = summary["counters"]
    assert len(kills) == 3, "evaluations were not running often enough to be killed 3 times"
    assert summary["stop_reason"] == "enough", counters  # not the 120 s limit
    assert counters["actor_failures"] >= 1 and summary["exit_status"] == 0
    assert counters["evaluations"] > evals_at_last_kill[0]  # evaluations went on after the kills
    assert summary["last_eval"]["episodes"] == 2
    assert counters["batches_rejected"] == {}


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_a_game_freezing_or_crashing_during_evaluations_is_recovered(algo, tmp_path):
    """Crashes and freezes strike at seeded random steps, sampling and evaluating alike: the
    watchdog kills frozen actors, crashed evaluation episodes are played again, and evaluations
    keep finishing (an evaluation lost with a killed actor once stopped all later ones)."""
    env = EnvConfig(
        id=FAKE_SOULS_ID,
        angle_keys=SOULS_ANGLES,
        kwargs={"step_error_prob": 0.003, "step_hang_prob": 0.0003},
        step_timeout_s=2.0,
    )
    experiment = _experiment(algo, tmp_path, env, seconds=120)
    loop = experiment.loop

    def stop_once_seen_enough(done: threading.Event) -> None:  # as a signal would: the loop ends
        while not done.wait(0.2):
            c = loop.counters
            if c.evaluations >= 3 and c.env_stalls >= 1 and c.env_errors >= 1:
                experiment.stop("enough")
                return

    summary = _run_watched(experiment, stop_once_seen_enough)
    counters = summary["counters"]
    assert summary["stop_reason"] == "enough", counters  # not the 120 s limit
    assert counters["evaluations"] >= 3 and counters["env_stalls"] >= 1
    assert summary["exit_status"] == 0
    assert 0.0 <= summary["last_eval"]["win_rate"] <= 1.0
