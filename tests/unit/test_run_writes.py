"""Every write of a run goes through one guarded path: a full disk, a read-only or deleted run
folder never ends a run, each failed write is counted by target, and writing resumes."""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from run_configs import run_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray import telemetry as telemetry_module
from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.experiment import build_experiment
from soulsai_ray.run_lock import RunFolderLock
from soulsai_ray.run_writes import WriteGuard
from soulsai_ray.telemetry import Telemetry
from soulsai_ray.typed_config import ConfigError

DQN = DQNConfig(hidden_sizes=[32], learning_starts=200, batch_size=32, replay_ratio=16)


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_target_is_counted_each_time_and_logged_once_per_streak(caplog):
    guard = WriteGuard()
    with caplog.at_level(logging.WARNING, logger="soulsai_ray.run_writes"):
        assert not guard.attempt("checkpoint", _disk_full)
        assert not guard.attempt("checkpoint", _disk_full)
        assert guard.attempt("summary", lambda: None)
        assert guard.failing("checkpoint") and not guard.failing("summary")
        assert guard.attempt("checkpoint", lambda: None)
        assert not guard.attempt("checkpoint", _disk_full)
    assert guard.failures == {"checkpoint": 3}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot write the run's checkpoint" in line for line in lines) == 2, lines
    assert sum("works again (2 writes failed so far)" in line for line in lines) == 1, lines


def test_other_errors_are_not_swallowed_and_targets_are_fixed():
    guard = WriteGuard()
    with pytest.raises(ZeroDivisionError):
        guard.attempt("summary", lambda: 1 / 0)
    with pytest.raises(ValueError, match="unknown write target"):
        guard.attempt("somewhere", lambda: None)
    assert guard.failures == {}


def test_a_final_write_is_tried_again_and_counts_go_where_the_run_keeps_them():
    guard = WriteGuard()
    guard.attempt("console", _disk_full)
    counters = {"checkpoint": 4}
    guard.count_into(counters)
    assert counters == {"checkpoint": 4, "console": 1}
    calls = []

    def fails_twice() -> None:
        calls.append(1)
        if len(calls) < 3:
            _disk_full()

    assert guard.attempt_final("summary", fails_twice, tries=3, pause_s=0)
    assert counters == {"checkpoint": 4, "console": 1, "summary": 2}
    assert not guard.attempt_final("learning_curve", _disk_full, tries=2, pause_s=0)
    assert counters["learning_curve"] == 2


def test_a_broken_log_file_is_counted_not_printed(tmp_path, capsys):
    root = logging.getLogger(f"test_run_writes_{uuid.uuid4().hex}")
    handler = logging.FileHandler(tmp_path / "train.log")
    root.addHandler(handler)
    guard = WriteGuard()
    guard.watch_log_files(root)
    handler.stream.close()  # every write now raises, as on a full disk
    root.error("first")
    root.error("second")
    root.removeHandler(handler)
    assert guard.failures["log"] >= 2
    assert "Traceback" not in capsys.readouterr().err


def test_tensorboard_opens_a_new_event_file_when_its_folder_is_back(tmp_path, monkeypatch):
    monkeypatch.setattr(telemetry_module, "TB_RETRY_S", 0.0)
    run_dir = tmp_path / "run"
    t = Telemetry(run_dir, console=False)
    t.log_scalars(1, {"a": 1.0})
    t.close()  # flushed: the first event file is complete
    t = Telemetry(run_dir, console=False)
    shutil.rmtree(run_dir)
    for step in range(2, 5):
        t.log_scalars(step, {"a": float(step)})
    t.close()
    assert t.writes.failures.get("tensorboard", 0) >= 1
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("a")][-1] == 4


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"\0" * (1 << 20))
    return filler


def _remount(disk: Path, mode: str) -> None:  # only while no file there is open for writing
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


def test_a_run_whose_disk_fills_trains_on_and_writes_again_once_space_is_back(
    small_disk, monkeypatch
):
    monkeypatch.setattr(telemetry_module, "TB_RETRY_S", 0.0)
    run_dir = small_disk / "run"
    cfg = run_config(
        DQN, steps=4000, serial=True, checkpoint_every=20, keep_last=2, log_every_s=0.001
    )
    experiment = build_experiment(cfg, run_dir)
    loop, steps = experiment.loop, {"struck": False, "freed_at": None}
    step = loop.step
    filler: list[Path] = []

    def step_with_fault() -> None:  # strikes after the first checkpoint, lasts three intervals
        updates = loop.counters.updates
        if not steps["struck"] and updates >= 30:
            steps["struck"] = True
            filler.append(_fill(small_disk))
        if steps["struck"] and steps["freed_at"] is None and updates >= 90:
            filler[0].unlink()
            steps["freed_at"] = loop.counters.env_steps
        step()

    loop.step = step_with_fault
    with experiment:
        summary = experiment.run()
    assert steps["freed_at"] is not None and summary["env_steps"] > steps["freed_at"]
    assert summary["stop_reason"] == "env_steps" and summary["exit_status"] == 0
    failures = summary["counters"]["write_failures"]
    assert failures.get("checkpoint", 0) >= 1 and failures.get("tensorboard", 0) >= 1, failures
    latest = CheckpointManager(run_dir / "checkpoints").latest()  # written once space came back
    assert latest is not None and latest.meta["env_steps"] == summary["env_steps"]
    assert latest.meta["write_failures"] == failures
    assert (run_dir / "summary.json").is_file() and (run_dir / "learning_curve.png").is_file()
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "io/write_failures/checkpoint" in tags
    assert max(e.step for e in events.Scalars("episode/return")) > steps["freed_at"]


def test_a_deleted_run_folder_is_written_again(tmp_path):
    run_dir = tmp_path / "run"
    cfg = run_config(DQN, steps=3000, serial=True, checkpoint_every=20, keep_last=2)
    experiment = build_experiment(cfg, run_dir)
    loop, steps = experiment.loop, {"n": 0}
    step = loop.step

    def step_then_delete() -> None:
        steps["n"] += 1
        if steps["n"] == 30:
            while run_dir.exists():  # a writer thread may add a file while the tree goes
                shutil.rmtree(run_dir, ignore_errors=True)
        step()

    loop.step = step_then_delete
    with experiment:
        summary = experiment.run()
    assert summary["stop_reason"] == "env_steps" and summary["exit_status"] == 0
    latest = CheckpointManager(run_dir / "checkpoints").latest()
    assert latest is not None and latest.meta["env_steps"] == summary["env_steps"]
    assert (run_dir / "summary.json").is_file()


def test_a_run_folder_that_cannot_be_written_is_one_config_error(small_disk):
    _remount(small_disk, "ro")
    with pytest.raises(ConfigError, match="cannot write the run folder .*Read-only"):
        RunFolderLock.take(small_disk / "run")
    cfg = run_config(DQN, steps=100, serial=True)
    with pytest.raises(ConfigError, match="hydra.run.dir: cannot write"):
        build_experiment(cfg, small_disk / "run")
