"""Runs that survive their driver: SIGKILL + resume=auto, graceful SIGINT, corrupt checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from script_runs import start_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.checkpoint import Checkpoint, CheckpointManager
from soulsai_ray.checkpoint_folder import verify_checkpoint

ROOT = Path(__file__).resolve().parents[2]

SHORT_DQN = [
    "algo=dqn",
    "env=cartpole",
    "algo.hidden_sizes=[64,64]",
    "algo.learning_starts=500",
    "algo.replay_ratio=64",
    "checkpoint.every_updates=400",
    "checkpoint.save_replay=true",
    "stop.return_mean=null",
    "telemetry.log_every_s=0.5",
    "telemetry.console=false",
    "cluster.include_dashboard=false",  # the dashboard's start-up is test_live_run.py's
]
SERIAL = "cluster=serial"
"""Tests of what the driver does with checkpoints alone run in one process: the same driver code,
without Ray's start-up (the Ray-side restore is the first SIGKILL test's)."""


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return start_script("train.py", *SHORT_DQN, *overrides, f"hydra.run.dir={run_dir}")


def _wait_for_checkpoints(
    run_dir: Path, count: int, proc: subprocess.Popen, timeout: float = 240
) -> None:
    manager = CheckpointManager(run_dir / "checkpoints")
    deadline = time.monotonic() + timeout
    while len(manager.list()) < count:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


REQUIRED_SCALARS = {
    "episode/return",
    "episode/length",
    "train/loss",
    "train/q_mean",
    "train/epsilon",
    "perf/env_steps_per_s",
    "perf/updates_per_s",
    "dist/model_lag_mean",
    "dist/samples_stale",
    "dist/actors_alive",
    "dist/nodes_alive",
}


def _scalar_steps(events_file: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(events_file))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_resume_without_a_saved_replay_after_driver_sigkill_continues_counters_and_curves(
    tmp_path,
):
    """Without a saved buffer the resumed replay starts empty while the lifetime counters say
    sampling is far ahead of learning: the run must sample again, not deadlock. The resumed run
    (local Ray, 2 rollout actors) ends at its env steps and writes every output of a run."""
    run_dir = tmp_path / "run"
    overrides = ("checkpoint.save_replay=false", "algo.ratio_slack_steps=500")
    overrides += ("checkpoint.every_updates=100",)
    proc = _start(run_dir, "stop.env_steps=200000", *overrides)
    _wait_for_checkpoints(run_dir, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before, first_events = _killed_run(run_dir)
    assert before.meta["updates"] >= 100
    target = before.meta["env_steps"] + 2000
    proc = _start(run_dir, "resume=auto", f"stop.env_steps={target}", *overrides)
    out, _ = proc.communicate(timeout=300)
    _assert_continues(run_dir, out, proc.returncode, before, first_events, target)
    _assert_writes_every_output(run_dir)


def _assert_writes_every_output(run_dir: Path) -> None:
    """A summary with every key, a final checkpoint among the periodic ones, the learning curve
    and the TensorBoard scalars a run promises."""
    summary = json.loads((run_dir / "summary.json").read_text())
    keys = ("env_steps", "episodes", "updates", "wall_s", "return_mean", "time_to_target_s")
    assert set(keys) <= set(summary) and summary["checkpoint"]
    assert summary["stop_reason"] == "env_steps" and summary["time_to_target_s"] is None
    checkpoint = run_dir / "checkpoints" / summary["checkpoint"].split("/")[-1]
    assert (checkpoint / "manifest.json").is_file() and (checkpoint / "state.pt").is_file()
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["env_steps"] == summary["env_steps"]  # the final one
    assert len(list((run_dir / "checkpoints").glob("ckpt_*"))) >= 2
    png = (run_dir / "learning_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) >= REQUIRED_SCALARS
    assert events.Scalars("dist/actors_alive")[-1].value == 2


def test_sigkill_mid_checkpoint_write_then_resume_continues_counters_and_curves(tmp_path):
    """The driver dies while a checkpoint (with the replay buffer) is being written, after two
    complete ones (periodic or new-best): the resumed run starts from the newest complete one
    and its counters and curves go on. The driver writes checkpoints the same way with or
    without Ray, so this runs in one process (the actors' restore is the test above's)."""
    run_dir = tmp_path / "run"
    overrides = ("checkpoint.every_updates=300", "algo.ratio_slack_steps=500", SERIAL)
    proc = _start(run_dir, "stop.env_steps=200000", *overrides)
    root = run_dir / "checkpoints"
    manager = CheckpointManager(root)
    deadline = time.monotonic() + 240
    while not (
        len(manager.list()) >= 2 and any(p.name.startswith(".tmp-") for p in root.iterdir())
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "no third write seen"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before, first_events = _killed_run(run_dir)
    assert before.meta["updates"] > 0
    target = before.meta["env_steps"] + 1500
    proc = _start(run_dir, "resume=auto", f"stop.env_steps={target}", *overrides)
    out, _ = proc.communicate(timeout=300)
    _assert_continues(run_dir, out, proc.returncode, before, first_events, target)
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())
    for checkpoint in manager.list():
        verify_checkpoint(checkpoint.path)


def _killed_run(run_dir: Path) -> tuple[Checkpoint, list[Path]]:
    """The checkpoint a killed run resumes from (every one it left verifies) and its event
    files."""
    manager = CheckpointManager(run_dir / "checkpoints")
    for checkpoint in manager.list():
        verify_checkpoint(checkpoint.path)  # a killed writer never leaves a corrupt checkpoint
    latest = manager.latest()
    assert latest is not None and latest.meta["env_steps"] > 0
    return latest, sorted((run_dir / "tb").glob("events.out.tfevents.*"))


def _assert_continues(
    run_dir: Path,
    out: str,
    returncode: int,
    before: Checkpoint,
    first_events: list[Path],
    target: int,
) -> None:
    """The resumed run started from ``before``, reached ``target`` env steps, and its counters
    and TensorBoard axis went on from the checkpoint's instead of restarting at 0."""
    assert returncode == 0, out[-3000:]
    assert f"resuming from {before.path}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    after, was = summary["counters"], before.meta
    assert after["resumes"] == 1
    assert after["env_steps"] >= target
    assert after["updates"] > was["updates"]
    assert after["episodes"] > was["episodes"]
    assert after["weight_version"] > was["weight_version"]
    assert summary["episodes"] == after["episodes"]
    new_events = [
        f for f in sorted((run_dir / "tb").glob("events.out.tfevents.*")) if f not in first_events
    ]
    assert len(new_events) == 1
    steps = _scalar_steps(new_events[0], "progress/updates")
    assert steps and min(steps) >= was["env_steps"]  # the TensorBoard axis did not restart at 0


def test_sigkill_before_learning_starts_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    no_best = "telemetry.window=5000"  # no full window: no new-best checkpoint before the kill
    proc = _start(run_dir, SERIAL, no_best, "stop.env_steps=200000", "algo.learning_starts=100000")
    deadline = time.monotonic() + 120
    while not (run_dir / "tb").is_dir() or not list((run_dir / "tb").glob("events.*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert CheckpointManager(run_dir / "checkpoints").latest() is None
    proc = _start(run_dir, SERIAL, "resume=auto", "stop.env_steps=1500")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "no checkpoint" in out
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 1500


def test_sigint_stops_with_a_checkpoint_and_a_corrupt_one_is_refused_and_auto_falls_back(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, SERIAL, "stop.env_steps=500000", "checkpoint.every_updates=200")
    _wait_for_checkpoints(run_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "resume=auto" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGINT"
    manager = CheckpointManager(run_dir / "checkpoints")
    final = manager.latest()
    assert final is not None and final.meta["env_steps"] == summary["env_steps"]
    assert (run_dir / "learning_curve.png").is_file()
    newest, older = manager.list()[:2]
    state = newest.path / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))

    proc = _start(tmp_path / "other", SERIAL, f"resume={newest.path}", "stop.env_steps=1")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out[-2000:]
    assert str(newest.path) in out and "sha256" in out

    target = older.meta["env_steps"] + 500
    proc = _start(run_dir, SERIAL, "resume=auto", f"stop.env_steps={target}")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert f"resuming from {older.path}" in out


def test_a_forged_checkpoint_is_refused_by_resume_and_runs_nothing(tmp_path, forge_checkpoint):
    marker = tmp_path / "marker"
    forged = forge_checkpoint(tmp_path / "shared" / "ckpt_000000100_00000001000", marker)
    proc = _start(tmp_path / "run", SERIAL, f"resume={forged}", "stop.env_steps=1")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("resume error:")]
    assert len(errors) == 1 and str(forged / "state.pt") in errors[0], out[-2000:]
    assert not marker.exists()
    assert not (tmp_path / "run" / "summary.json").exists()  # nothing ran
