"""Learning tests: the shipped configs reach a target return within a bounded number of env steps.

They train through ``cluster=serial`` (the same samplers, replay and learner as a Ray run, in
lock-step in one process): the learning is what is checked, deterministically and in a fraction
of a Ray run's time; that the parts reach each other through Ray is checked by the integration
and end-to-end tests of the Ray loops."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.learning

DQN_CARTPOLE_STEP_BUDGET = 100_000
PPO_CARTPOLE_STEP_BUDGET = 150_000


@pytest.mark.parametrize(
    ("algo", "target", "budget"),
    [
        # with conf/algo_env/dqn_cartpole.yaml; seed 0 reaches the target after 26.6k env steps
        ("dqn", 195, DQN_CARTPOLE_STEP_BUDGET),
        # 2 samplers x 4 envs (conf/algo_env/ppo_cartpole.yaml); seed 0: 71.7k env steps
        ("ppo", 475, PPO_CARTPOLE_STEP_BUDGET),
    ],
)
def test_shipped_config_solves_cartpole(train, tmp_path, algo, target, budget):
    """Shipped config, seed 0: the 100-episode mean return reaches ``target`` within ``budget``
    env steps. DQN's update runs eager (the train fixture's default): compiling it first would
    cost a cold compile, and each compiled update is the eager one (test_compiled_step.py)."""
    proc = train(
        f"algo={algo}",
        "env=cartpole",
        "cluster=serial",
        "seed=0",
        f"stop.return_mean={target}",
        f"stop.env_steps={budget}",
        "telemetry.console=false",
        f"hydra.run.dir={tmp_path}",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop_reason"] == "return_mean", summary
    assert summary["return_mean"] >= target
    assert summary["env_steps_to_target"] <= budget
