"""Helpers for running the scripts as a user would."""

from __future__ import annotations

import subprocess

import pytest
from script_runs import run_script


@pytest.fixture
def train():
    """Runs train.py without Ray's dashboard (1-3 s of start-up each on a small machine); the
    default, dashboard on, is what test_live_run.py runs."""

    def train(
        *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        if not any("include_dashboard" in arg for arg in args):
            args = (*args, "cluster.include_dashboard=false")  # after flags such as --cfg job
        return run_script("train.py", *args, timeout=timeout, env=env)

    return train
