"""Helpers for running the scripts as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``scripts/<script>`` with this interpreter; returns the finished process."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def train():
    """Runs train.py without Ray's dashboard (1-3 s of start-up each on a small machine); the
    default, dashboard on, is what test_resume.py, test_ray_state_api.py and
    test_prometheus_scrape.py run."""

    def train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        if not any("include_dashboard" in arg for arg in args):
            args = (*args, "cluster.include_dashboard=false")  # after flags such as --cfg job
        return run_script("train.py", *args, timeout=timeout)

    return train
