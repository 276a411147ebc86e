"""``make train`` as the README's quick start runs it, with a short stop: the Makefile's install
step finds the venv, and train.py runs with the arguments ``ARGS`` passes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_train_trains_with_the_given_arguments(tmp_path):
    if not (ROOT / ".venv" / ".installed").is_file():
        pytest.skip("make train would install the venv first (make test has done so in CI)")
    args = (
        "env=cartpole cluster=serial stop.env_steps=600 stop.return_mean=null "
        f"telemetry.console=false hydra.run.dir={tmp_path}"
    )
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        ["make", "--no-print-directory", "train", f"ARGS={args}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] >= 600 and summary["stop_reason"] == "env_steps"
    assert "finished (env_steps)" in proc.stderr + proc.stdout
