"""A signal to the driver's whole process group (systemd's KillMode=control-group, ``timeout``,
Slurm, a closed terminal or SSH session) stops a local run gracefully: the local Ray's processes
live in a session of their own, so only the driver hears it, and it finishes with a final
checkpoint and a summary before it shuts Ray down."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import time
from pathlib import Path

import psutil
import pytest
from script_runs import start_script

from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.cluster import token_path
from soulsai_ray.experiment import STOP_SIGNALS
from soulsai_ray.loops.dqn_async import STOP_DRAIN_S

ROOT = Path(__file__).resolve().parents[2]


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def _listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """``(process name, address, port)`` of every listening TCP socket and bound UDP socket of
    ``processes``."""
    pids = {p.pid: p for p in processes}
    found = []
    for conn in psutil.net_connections(kind="inet"):
        listening = conn.status == psutil.CONN_LISTEN or conn.type == socket.SOCK_DGRAM
        if conn.pid in pids and listening and conn.laddr:
            with contextlib.suppress(psutil.Error):
                found.append((pids[conn.pid].name(), conn.laddr.ip, conn.laddr.port))
    return found


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize(
    ("sig", "ray"),
    [(signal.SIGHUP, False), (signal.SIGTERM, True)],
    ids=["SIGHUP-serial", "SIGTERM-ray-with-a-frozen-actor"],
)
def test_a_signal_to_the_drivers_process_group_stops_the_run_gracefully(tmp_path, sig, ray):
    """Every stop signal takes the same graceful path (`STOP_SIGNALS`); SIGHUP's runs in one
    process (``cluster=serial``). With Ray, also: every socket of a local run is on the loopback,
    no process of it outlives it, and a frozen rollout actor (SIGSTOP: a hung game) delays the
    stop by at most `STOP_DRAIN_S`."""
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    run_dir = tmp_path / "run"
    args = [
        "env=cartpole",
        "stop.env_steps=10000000",
        "checkpoint.every_updates=100",
        "telemetry.console=false",
        "algo.learning_starts=200",
        "env.step_latency_s=0.002",  # paced: the stop's wait on a frozen actor costs no CPU
        "cluster.include_dashboard=false" if ray else "cluster=serial",
        f"hydra.run.dir={run_dir}",
    ]
    # a session of its own, as a terminal or a systemd unit gives it
    proc = start_script("train.py", *args, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while CheckpointManager(run_dir / "checkpoints").latest() is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.2)
        processes = psutil.Process(proc.pid).children(recursive=True)
        assert any(p.name() == "gcs_server" for p in processes) == ray
        sockets = _listening(processes)
        assert any(name == "gcs_server" for name, _, _ in sockets) == ray, sockets
        assert [s for s in sockets if s[1] not in LOOPBACK] == []
        if ray:
            actor = next(p for p in processes if p.name().startswith("ray::RolloutActor"))
            actor.suspend()
        signalled = time.monotonic()
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)
        stop_s = time.monotonic() - signalled
        _, still = psutil.wait_procs(processes, timeout=15)
        assert _alive(still) == [], [(p.pid, p.name()) for p in still]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == sig.name
    final = CheckpointManager(run_dir / "checkpoints").latest()
    assert final is not None and final.meta["env_steps"] == summary["env_steps"]
    assert f"finished ({sig.name})" in out
    assert stop_s < STOP_DRAIN_S + 15, stop_s  # the drain, the final checkpoint, Ray's shutdown
    assert ("did not answer within" in out) == ray
    token = token_path()  # the run's token: its owner's alone
    if ray and not os.environ.get("RAY_AUTH_TOKEN"):
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
