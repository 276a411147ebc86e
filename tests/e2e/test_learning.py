"""Learning tests: the shipped configs reach a target return within a bounded number of env steps."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.learning

DQN_CARTPOLE_STEP_BUDGET = 100_000
PPO_CARTPOLE_STEP_BUDGET = 150_000


def test_dqn_solves_cartpole_with_shipped_config(train, tmp_path):
    """Shipped DQN config (with conf/algo_env/dqn_cartpole.yaml), seed 0: 100-episode mean >= 195
    within 100k env steps (~30k seen)."""
    proc = train(
        "algo=dqn",
        "env=cartpole",
        "seed=0",
        "stop.return_mean=195",
        f"stop.env_steps={DQN_CARTPOLE_STEP_BUDGET}",
        "telemetry.console=false",
        f"hydra.run.dir={tmp_path}",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop_reason"] == "return_mean", summary
    assert summary["return_mean"] >= 195
    assert summary["env_steps_to_target"] <= DQN_CARTPOLE_STEP_BUDGET


def test_ppo_solves_cartpole_with_shipped_config(train, tmp_path):
    """Shipped PPO config (2 actors x 4 envs), seed 0: mean >= 475 within 150k env steps (~61k seen)."""
    proc = train(
        "algo=ppo",
        "env=cartpole",
        "seed=0",
        "stop.return_mean=475",
        f"stop.env_steps={PPO_CARTPOLE_STEP_BUDGET}",
        "telemetry.console=false",
        f"hydra.run.dir={tmp_path}",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop_reason"] == "return_mean", summary
    assert summary["return_mean"] >= 475
    assert summary["env_steps_to_target"] <= PPO_CARTPOLE_STEP_BUDGET
