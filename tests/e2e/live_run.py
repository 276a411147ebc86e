"""Starts and observes a training run as a user's own tools would (imported by
tests/e2e/test_live_run.py by this name, which no other test folder uses).

The default local run starts Ray's dashboard on 127.0.0.1, which serves the state API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from script_runs import script_args

ROOT = Path(__file__).resolve().parents[2]
RAY_CLI = str(Path(sys.executable).with_name("ray"))
DQN_ACTOR_CLASSES = {"RolloutActor", "LearnerActor", "ReplayActor", "WeightStore"}
"""The actor classes of a DQN run, as `ray list actors` and the dashboard show them."""
STOP_WITHIN_S = 60


def start_training(run_dir: Path, *overrides: str, time_s: int = 60) -> subprocess.Popen:
    """Starts a DQN CartPole run of at most ``time_s`` with the default (local) cluster config.

    Its output goes to ``<run_dir>.out``. ``RAY_TMPDIR`` and ``RAY_ADDRESS`` are dropped so the
    run starts its own Ray in the default temp folder, as a user's run does.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_TMPDIR", "RAY_ADDRESS")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    args = (
        "algo=dqn",
        "env=cartpole",
        "cluster.num_rollout_actors=2",
        "algo.learning_starts=500",
        "algo.hidden_sizes=[64,64]",
        f"stop.time_s={time_s}",
        "stop.return_mean=null",
        "telemetry.console=false",
        "telemetry.log_every_s=0.5",
        f"hydra.run.dir={run_dir}",
        *overrides,
    )
    with open(f"{run_dir}.out", "w") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "train.py"), *script_args("train.py", args)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def output_of(run_dir: Path) -> str:
    path = Path(f"{run_dir}.out")
    return path.read_text()[-3000:] if path.exists() else ""


def ray_process_args(proc: subprocess.Popen, run_dir: Path, timeout_s: float = 60) -> list[str]:
    """Command-line arguments of the Ray processes ``proc`` started.

    Waits for the raylet, which Ray starts after the dashboard has its address.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"training exited early:\n{output_of(run_dir)}"
        args = []
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                args.extend(child.cmdline())
            except psutil.Error:
                continue
        if any("--webui=" in arg for arg in args):
            return args
        assert time.monotonic() < deadline, f"no Ray started:\n{output_of(run_dir)}"
        time.sleep(0.2)


def session_dir(ray_args: list[str]) -> Path:
    """The session folder of the run's own Ray (other Ray sessions may run on the machine)."""
    (folder,) = {a.split("=", 1)[1] for a in ray_args if a.startswith("--session-dir=")}
    return Path(folder)


def node_port(session: Path, name: str, timeout_s: float = 30) -> int:
    """A port the run's (single) node wrote into its session folder, e.g. ``gcs_server_port``."""
    deadline = time.monotonic() + timeout_s
    while not (files := list(session.glob(f"{name}_*"))) or not files[0].read_text().strip():
        assert time.monotonic() < deadline, f"{session} has no {name}_* file"
        time.sleep(0.2)
    (file,) = files
    return int(file.read_text().strip())


def stop_training(proc: subprocess.Popen, run_dir: Path) -> dict:
    """Stops the run with SIGINT, as Ctrl+C does; returns its summary."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=STOP_WITHIN_S)
    assert proc.returncode == 0, output_of(run_dir)
    return json.loads((run_dir / "summary.json").read_text())


def kill_if_running(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def ray_cli(*args: str) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    }
    return subprocess.run(
        [RAY_CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def dashboard_url(ray_args: list[str]) -> str:
    """The dashboard's URL, as Ray hands it to its workers (``--webui=HOST:PORT``)."""
    (address,) = set(re.findall(r"--webui=(\S+)", " ".join(ray_args)))
    return f"http://{address}"


def alive_actor_classes(address: str) -> tuple[set[str], str]:
    """Classes of the alive actors `ray list actors --address address` shows, and its output."""
    listed = ray_cli("list", "actors", "--address", address, "--format", "json", "--limit", "1000")
    try:
        actors = json.loads(listed.stdout)
    except ValueError:
        return set(), listed.stdout[-1000:] + listed.stderr[-1000:]
    return {a["class_name"] for a in actors if a["state"] == "ALIVE"}, listed.stdout[-1000:]


def wait_for_actor_classes(proc: subprocess.Popen, run_dir: Path, address: str) -> None:
    """Waits until `ray list actors` at ``address`` shows every DQN actor class alive."""
    deadline, classes, output = time.monotonic() + 120, set(), ""
    while not classes >= DQN_ACTOR_CLASSES:
        assert proc.poll() is None, output_of(run_dir)
        assert time.monotonic() < deadline, f"{address}: alive actors {classes}\n{output}"
        time.sleep(1)
        classes, output = alive_actor_classes(address)
