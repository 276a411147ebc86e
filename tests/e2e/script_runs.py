"""Runs the scripts as a user would (imported by the e2e conftest and tests by this name, which no
other test folder uses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EAGER_UPDATE = "algo.compile=false"
"""What a DQN test run adds unless it names ``algo.compile``: compiling the update costs seconds
of CPU at each learner start, and these runs are short (tests/unit/test_compiled_step.py checks
each compiled update against the eager one, tests/integration/test_dqn_actors.py runs it in a
Ray worker)."""


def script_args(script: str, args: tuple[str, ...]) -> tuple[str, ...]:
    """``args`` for ``scripts/<script>``: DQN runs of train.py get :data:`EAGER_UPDATE`."""
    if script != "train.py" or "algo=ppo" in args or any("algo.compile" in a for a in args):
        return args
    return (*args, EAGER_UPDATE)


def run_script(
    script: str, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs ``scripts/<script>`` with this interpreter (``env`` adds to the environment);
    returns the finished process."""
    path = str(ROOT / "scripts" / script)
    return run_python(path, *script_args(script, args), timeout=timeout, env=env)


def run_python(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` (this interpreter) from the checkout, Ray kept on loopback; ``env``
    adds to the environment."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_script(script: str, *args: str, **popen: object) -> subprocess.Popen:
    """Starts ``scripts/<script>`` with this interpreter, its output (stdout and stderr) in a pipe;
    ``popen`` adds to or replaces the `subprocess.Popen` arguments."""
    options = {
        "cwd": ROOT,
        "env": {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        **popen,
    }
    command = [sys.executable, str(ROOT / "scripts" / script), *script_args(script, args)]
    return subprocess.Popen(command, **options)
