"""Every ``python -m soulsai_bench`` subcommand as a user runs it, at the smallest size it takes:
it exits 0 and prints (and writes with ``--json``) the rows it promises.

``scale --hosts`` is not here: it needs root and network namespaces, and one game-PC host takes
about a minute (a head started and a PC joined by the cluster scripts, a driver, a window)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from script_runs import run_python

ROOT = Path(__file__).resolve().parents[2]


EAGER = "algo.compile=false"
"""The learner's update runs eager in these short runs: compiling it (seconds of CPU) is checked
by test_bench_learner.py and test_compiled_step.py."""


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python -m soulsai_bench ARGS`` from the checkout; returns the finished process."""
    return run_python("-m", "soulsai_bench", *args, timeout=timeout)


@pytest.fixture
def leaves_no_temporary_files():
    """Runs a ``bench`` command with a temporary folder of its own (Ray's stays where it is);
    the command must leave nothing there but torch's compile cache, which torch keeps."""
    folder = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))  # short: Ray's socket paths

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {"TMPDIR": str(folder), "RAY_TMPDIR": tempfile.gettempdir()}
        proc = run_python("-m", "soulsai_bench", *args, timeout=300, env=env)
        left = [p.name for p in folder.iterdir() if not p.name.startswith("torchinductor_")]
        assert left == [], "left in its temporary folder"
        return proc

    yield run
    shutil.rmtree(folder, ignore_errors=True)


def succeeded(proc: subprocess.CompletedProcess) -> str:
    """The command's stdout, after checking that it exited 0."""
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_help_names_every_subcommand():
    out = succeeded(bench("--help"))
    for command in ("solve", "lockstep", "learner", "throughput", "scale", "soak"):
        assert command in out


def test_solve_reports_a_seed_whether_or_not_it_solved(tmp_path, leaves_no_temporary_files):
    """Its run is serial: solve reads a run's summary, config and folder the same way whatever
    the cluster (train.py's Ray runs are the other e2e tests')."""
    out = succeeded(
        leaves_no_temporary_files(
            "solve",
            "--algo=dqn",
            "--env=cartpole",
            "--seeds=0",
            "--actors=1",
            "--time-limit=3",
            "--override",
            "cluster=serial",
            "algo.learning_starts=200",
            EAGER,
            "--json",
            str(tmp_path / "solve.json"),
            "--runs-dir",
            str(tmp_path / "runs"),
        )
    )
    assert re.search(r"soulsai_ray +seed 0: (target after|target NOT reached)", out)
    assert re.search(r"^\| soulsai_ray \| [01]/1 \|", out, re.MULTILINE)
    [run] = json.loads((tmp_path / "solve.json").read_text())
    assert (run["who"], run["seed"]) == ("soulsai_ray", 0) and run["env_steps"] > 0
    kept = json.loads((tmp_path / "runs" / "dqn_cartpole_0" / "summary.json").read_text())
    assert kept["env_steps"] == run["env_steps"]
    again = bench("solve", "--env=cartpole", "--runs-dir", str(tmp_path / "runs"))
    assert again.returncode != 0 and "dqn_cartpole_0 exist" in again.stderr, again.stderr


def test_lockstep_reports_every_seed(tmp_path):
    out = succeeded(
        bench(
            "lockstep",
            "--algo=dqn",
            "--env=cartpole",
            "--seeds",
            "0",
            "1",
            "--env-steps=300",
            "--actors=1",
            "--jobs=1",  # one worker process: torch is imported once
            "--override",
            "algo.learning_starts=100",
            EAGER,
            "--json",
            str(tmp_path / "lockstep.json"),
        )
    )
    assert "| lockstep | 0/2 | - | - |" in out  # 300 env steps: far from CartPole's 475
    runs = json.loads((tmp_path / "lockstep.json").read_text())
    assert [(r["seed"], r["env_steps"]) for r in runs] == [(0, 300), (1, 300)]
    assert all(r["replay_ratio"] > 0 for r in runs)


def test_learner_times_each_config():
    eager = ("--override", EAGER)
    out = succeeded(
        bench(
            "learner", "--algo", "dqn", "dqn_efficient", "--env=cartpole", "--seconds=0.3", *eager
        )
    )
    for algo in ("dqn", "dqn_efficient"):
        assert f"learner algo={algo} env=cartpole on cpu, eager update (obs 4, 2 actions" in out
    assert len(re.findall(r"ms per update \(.*\), \d+ updates/s", out)) == 2
    assert len(re.findall(r"game PCs at 20 steps/s", out)) == 2


def test_learner_times_the_gpu_where_torch_sees_one():
    import torch

    proc = bench(
        "learner", "--env=cartpole", "--seconds=0.3", "--device", "cpu", "cuda",
        "--override", EAGER,
    )  # fmt: skip
    if torch.cuda.is_available():
        out = succeeded(proc)
        assert "env=cartpole on cpu" in out and "env=cartpole on cuda" in out
    else:  # the CPU's figure first, then one line for the GPU it does not have
        assert proc.returncode != 0 and "env=cartpole on cpu" in proc.stdout
        assert proc.stderr.strip().splitlines()[-1] == (
            "learner: device cuda: torch sees no CUDA device on this machine"
        )


def test_throughput_compares_actors_with_one_process():
    out = succeeded(
        bench("throughput", "--actors=1", "--envs-per-actor=2", "--n-steps=16", "--seconds=1")
    )
    single = re.search(r"single process, 2 envs: +(\d+) env steps/s", out)
    actors = re.search(r"1 rollout actors x 2 envs \(Ray\): +(\d+) env steps/s", out)
    assert single and actors, out
    assert int(single.group(1)) > 0 and int(actors.group(1)) > 0
    assert re.search(r"ratio: \d+\.\d\dx", out)


def test_scale_reports_a_row_per_actor_count(tmp_path, leaves_no_temporary_files):
    """One actor count: each count is a cluster of its own, measured the same way."""
    out = succeeded(
        leaves_no_temporary_files(
            "scale",
            "--actors",
            "2",
            "--nodes=1",
            "--rate=50",
            "--seconds=1",
            "--override",
            EAGER,
            "algo.learning_starts=100",
            "--json",
            str(tmp_path / "scale.json"),
        )
    )
    assert re.search(r"^ +2 +[\d.]+ +100 ", out, re.MULTILINE), out
    rows = json.loads((tmp_path / "scale.json").read_text())
    assert [r["actors"] for r in rows] == [2]
    for r in rows:
        assert r["steps_per_s"] > 0 and r["updates_per_s"] > 0
        assert r["weight_sync_p50_s"] is not None


def test_soak_reports_the_faults_it_struck(tmp_path, leaves_no_temporary_files):
    out = succeeded(
        leaves_no_temporary_files(
            "soak",
            "--minutes=0.2",
            "--nodes=1",
            "--step-latency=0.01",
            "--faults",
            "rollout",
            "--override",
            EAGER,
            "algo.learning_starts=200",  # updates move before the fault
            "--json",
            str(tmp_path / "soak.json"),
        )
    )
    assert re.search(r"^rollout +1 +1 ", out, re.MULTILINE), out
    assert "not recovered within 240s (hangs): 0" in out
    assert "counters continuous across resumes: True" in out
    report = json.loads((tmp_path / "soak.json").read_text())
    assert [f["kind"] for f in report["faults"]] == ["rollout"]
    assert report["summary"]["counters"]["actor_restarts"] >= 1


def test_soak_refuses_faults_its_algo_does_not_have():
    proc = bench("soak", "--algo=ppo", "--faults", "replay")
    assert proc.returncode != 0
    assert "do not apply to algo=ppo" in proc.stderr


def test_the_rllib_baseline_runs_by_path_without_the_project_installed():
    """``solve --baseline rllib`` runs it with .venv-rllib's python, which has neither soulsai_ray
    nor soulsai_bench: ``-S`` leaves out every installed package, ours included."""
    script = ROOT / "soulsai_bench" / "rllib_baseline.py"
    done = subprocess.run(
        [sys.executable, "-S", str(script), "--help"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--algo" in done.stdout and "--time-limit" in done.stdout
