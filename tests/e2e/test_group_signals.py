"""A signal to the driver's whole process group (systemd's KillMode=control-group, ``timeout``,
Slurm, a closed terminal or SSH session) stops a local run gracefully: the local Ray's processes
live in a session of their own, so only the driver hears it, and it finishes with a final
checkpoint and a summary before it shuts Ray down."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from script_runs import start_script

from soulsai_ray.checkpoint import CheckpointManager

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_the_drivers_process_group_stops_the_run_gracefully(tmp_path, sig):
    run_dir = tmp_path / "run"
    args = [
        "env=cartpole",
        "stop.env_steps=10000000",
        "checkpoint.every_updates=100",
        "telemetry.console=false",
        "cluster.include_dashboard=false",
        f"hydra.run.dir={run_dir}",
    ]
    # a session of its own, as a terminal or a systemd unit gives it
    proc = start_script("train.py", *args, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while CheckpointManager(run_dir / "checkpoints").latest() is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)
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
