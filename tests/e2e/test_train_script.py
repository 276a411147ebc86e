"""scripts/train.py end to end: config errors, refused folders and clusters, signals during the
start-up (a run's outputs are checked on the resumed Ray run of test_resume.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("algo.batch_size=0", "algo.batch_size"),
        ("algo.n_step=0", "algo.n_step"),
        ("algo.lr=fast", "algo.lr"),
        ("algo.batch_sise=64", "algo.batch_sise"),
        ("+algo.batch_sise=64", "algo.batch_sise"),
        ("cluster.num_rollout_actors=-1", "cluster.num_rollout_actors"),
        ("stop.time_s=inf", "stop.time_s"),
        ("env.id=NoSuchEnv-v0", "env.id"),  # before Ray starts
        ("env.id=CartPole-v9", "env.id"),
        ("algo.buffer_size=4000000000", "algo.buffer_size"),  # 343 GiB of LunarLander replay
    ],
)
def test_bad_override_exits_2_naming_the_key(train, tmp_path, override, key):
    proc = train(override, f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert key in lines[0]
    assert not (tmp_path / "run").exists()  # no run folder left behind


def test_unknown_config_group_option_exits_2(train, tmp_path):
    proc = train("env=atari", f"hydra.run.dir={tmp_path}", timeout=120)
    assert proc.returncode == 2
    assert "env" in proc.stderr and "atari" in proc.stderr


HOLD_FOLDER = """
import sys, time
from pathlib import Path
from soulsai_ray.run_lock import RunFolderLock
lock = RunFolderLock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def test_a_folder_held_by_another_run_is_refused_before_anything_is_written(train, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = train("env=cartpole", "cluster=serial", f"hydra.run.dir={tmp_path}", timeout=120)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"config error: hydra.run.dir: {tmp_path} is in use by another run (pid {holder.pid}); "
        "give this run a folder of its own, or wait for that one to end"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # no .hydra/, no train.log


def test_a_read_only_run_folder_is_one_line_and_exit_2(train, tmp_path):
    disk = tmp_path / "ro"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs")
    try:
        proc = train("env=cartpole", "cluster=serial", f"hydra.run.dir={disk}/run", timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"config error: hydra.run.dir: cannot write the run folder {disk}/run: "
        "Read-only file system"
    ]


NO_AUTH_HEAD = """
import os, sys
os.environ["RAY_AUTH_MODE"] = "disabled"
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""


def test_joining_a_cluster_without_token_auth_is_one_line_and_exit_2(train, tmp_path):
    """A head started with a plain ``ray start --head`` would cancel every actor the run makes.
    The answer is the same whether or not this machine holds a token: such a head has none to
    copy."""
    holds_a_token = {"RAY_AUTH_TOKEN": "t" * 64}
    holds_none = {"RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no_token")}
    head = subprocess.Popen(
        [sys.executable, "-c", NO_AUTH_HEAD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    runs = {}
    try:
        address = head.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        for name, env in (("token", holds_a_token), ("no token", holds_none)):
            start = time.monotonic()
            run_dir = tmp_path / name / "run"
            proc = train(
                "env=cartpole",
                "cluster=remote",
                f"cluster.address={address}",
                "cluster.num_rollout_actors=1",
                f"hydra.run.dir={run_dir}",
                timeout=120,
                env=env,
            )
            runs[name] = (proc, time.monotonic() - start, run_dir)
    finally:
        head.communicate(input="", timeout=60)
    for name, (proc, took, run_dir) in runs.items():
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert proc.stderr.strip().splitlines()[-1] == (
            f"config error: cluster.address: the cluster at {address} does not use token "
            "authentication; start the head with scripts/start_head.sh"
        ), name
        assert took < 15 and not run_dir.exists(), name


def test_cfg_job_prints_the_composed_config(train):
    proc = train("--cfg", "job", "env=cartpole", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "id: CartPole-v1" in proc.stdout and "name: dqn" in proc.stdout


def test_local_run_that_cannot_place_rollout_actors_exits_2_fast(train, tmp_path):
    start = time.monotonic()
    proc = train("env=iudex", "stop.env_steps=10", f"hydra.run.dir={tmp_path}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("config error")]
    assert len(lines) == 1 and "env.actor_resources" in lines[0]
    assert "cluster=remote" in lines[0] and "env.actor_resources=null" in lines[0]
    assert "Ray GCS address" not in proc.stderr  # refused before Ray started
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("moment", ["ray_starting", "waiting_for_actors"])
def test_sigterm_during_start_up_stops_gracefully(tmp_path, moment):
    """Rollout actors ask for more CPUs than the local Ray has, so start-up waits for them.

    The signal comes while ``ray.init`` starts the local node (it replaces the process's SIGTERM
    handler with one that exits at once, unless the driver keeps its own), or while the driver
    waits for the actors. Either way the run stops with a summary and exit status 0.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "env=cartpole",
            "cluster.num_cpus=1",
            "cluster.rollout_num_cpus=8",
            "telemetry.console=false",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    driver = psutil.Process(proc.pid)
    if moment == "ray_starting":  # Ray's first process is up; its node is seconds from ready
        ready = lambda: bool(driver.children())  # noqa: E731
    else:
        ready = lambda: any("Ray GCS address" in line for line in lines)  # noqa: E731
    deadline = time.monotonic() + 90
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-2000:]
        time.sleep(0.02)
    if moment == "waiting_for_actors":
        time.sleep(2)
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    stopped_after = time.monotonic() - sent
    reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 0, out[-2000:]
    # while Ray starts, the stop follows its start-up (seconds on a busy 2-core machine)
    assert stopped_after < (5 if moment == "waiting_for_actors" else 45), out[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGTERM" and summary["env_steps"] == 0
