"""The counts of a SoulsGym-shaped fight arrive from Ray's rollout actors: game crashes, fight
outcomes and evaluations (the samplers' own behaviour, corrupt rewards included, is checked in
one process by ``tests/unit/test_souls_fight_runs.py``)."""

from __future__ import annotations

import time

import pytest
from run_configs import (
    FIGHT_TAGS,
    SOULS_DQN,
    SOULS_PPO,
    fake_souls,
    run_config,
    scalar_tags,
)
from scenarios import run_beside

from soulsai_ray.experiment import build_experiment

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.parametrize("algo", [SOULS_DQN, SOULS_PPO], ids=["dqn", "ppo"])
def test_crashes_fight_outcomes_and_evaluations_are_counted_through_ray(algo, tmp_path):
    env = fake_souls(step_error_prob=0.002, reset_error_prob=0.002)
    cfg = run_config(algo, env, time_s=180, return_mean=1e6, eval_every=20, window=5)
    with build_experiment(cfg, tmp_path) as experiment:
        loop = experiment.loop

        def sample_4000_steps_and_finish_an_evaluation() -> None:
            # a crash cuts an evaluation's episode short and it is played again: when crashes
            # strike it several times, the first evaluation can finish after the 4,000th step
            deadline = time.monotonic() + 170
            while loop.counters.env_steps < 4000 or loop.counters.evaluations < 1:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)

        summary = run_beside(experiment, sample_4000_steps_and_finish_an_evaluation, "done")
    counters = summary["counters"]
    assert summary["stop_reason"] == "done" and summary["updates"] > 0
    assert counters["env_steps"] >= 4000
    assert counters["env_errors"] > 0
    assert counters["actor_failures"] == 0  # crashes never kill a rollout actor
    assert counters["batches_rejected"] == {} and counters["samples_invalid"] == 0
    # an evaluation replays an episode a crash cut short, up to 4 crashes; then it holds fewer
    assert counters["evaluations"] >= 1 and 1 <= summary["last_eval"]["episodes"] <= 2
    assert 0.0 <= summary["episode_metrics"]["win_rate"] <= 1.0
    assert set(FIGHT_TAGS) <= scalar_tags(tmp_path)
