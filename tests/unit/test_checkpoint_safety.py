"""Tests for soulsai_ray.checkpoint: a save that fails (full disk, crash) loses nothing, and a
checkpoint holds only plain data, so loading a forged one runs no code."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from checkpoint_saves import CONFIG, names, save_step

from soulsai_ray import checkpoint_folder
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import CheckpointError, load_checkpoint, verify_checkpoint


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def _fail_torch_save(monkeypatch: pytest.MonkeyPatch) -> None:
    def torch_save(*args: object, **kwargs: object) -> None:
        raise _disk_full()

    monkeypatch.setattr(checkpoint_folder, "save_state", torch_save)


def _fail_write_text_of(fname: str) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        write_text = Path.write_text

        def failing(self: Path, *args: Any, **kwargs: Any) -> int:
            if self.name == fname:
                write_text(self, "partial", encoding="utf-8")
                raise _disk_full()
            return write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", failing)

    return patch


def _fail_move_into_place(monkeypatch: pytest.MonkeyPatch) -> None:
    rename = os.rename

    def failing(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(".tmp-"):
            raise _disk_full()
        rename(src, dst)

    monkeypatch.setattr(os, "rename", failing)


@pytest.mark.parametrize(
    "fail",
    [
        _fail_torch_save,
        _fail_write_text_of("meta.json"),
        _fail_write_text_of("manifest.json"),
        _fail_move_into_place,
    ],
    ids=["torch_save", "meta_json", "manifest", "rename"],
)
@pytest.mark.parametrize("same_name", [False, True], ids=["new_name", "replacing"])
def test_failed_save_raises_and_leaves_existing_checkpoints_intact(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail: Callable[[pytest.MonkeyPatch], None],
    same_name: bool,
) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    save_step(manager, 1, 1.0)
    save_step(manager, 2, 2.0)
    before = sorted(p.name for p in tmp_path.iterdir())
    latest = (tmp_path / "latest").read_text()

    fail(monkeypatch)
    with pytest.raises(OSError) as raised:
        save_step(manager, 2 if same_name else 3, 3.0)
    monkeypatch.undo()

    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .tmp-* or .trash-* left
    assert (tmp_path / "latest").read_text() == latest
    assert names(manager) == ["ckpt_000000002", "ckpt_000000001"]  # nothing pruned
    for checkpoint in manager.list():
        verify_checkpoint(checkpoint.path)
    assert manager.latest().name == "ckpt_000000002"
    assert load_checkpoint(manager.latest().path)[0]["step"] == 2


def test_a_really_full_disk_fails_the_save_with_oserror_and_keeps_the_old_checkpoints(tmp_path):
    """A tiny tmpfs that fills up mid-write (torch reports that as a RuntimeError)."""
    import subprocess

    root = tmp_path / "ckpt"
    root.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        manager = CheckpointManager(root, keep_last=3)
        manager.save("ckpt_small", {"w": torch.zeros(10)}, {"updates": 1, "env_steps": 1}, "")
        with pytest.raises(OSError):
            manager.save(
                "ckpt_big", {"w": torch.zeros(2_000_000)}, {"updates": 2, "env_steps": 2}, ""
            )
        assert [c.name for c in manager.list()] == ["ckpt_small"]
        assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
        verify_checkpoint(root / "ckpt_small")
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.mark.parametrize("format_version", [1, 2])
def test_a_forged_checkpoint_is_refused_without_running_its_code(
    tmp_path, forge_checkpoint, format_version
):
    marker = tmp_path / "marker"
    folder = forge_checkpoint(tmp_path / "ckpt_forged", marker, format_version)
    verify_checkpoint(folder)  # the manifest matches: only the payload gives it away
    with pytest.raises(CheckpointError, match="not plain data") as refused:
        load_checkpoint(folder)
    assert str(folder / "state.pt") in str(refused.value)
    assert "system" in str(refused.value)  # names what it asked to run
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_numbers_and_strings(tmp_path):
    rng = np.random.default_rng(3)
    payload = {
        "replay": {"obs": np.ones((4, 3), np.float32), "actions": np.arange(4), "ok": np.bool_(1)},
        "rng": rng.bit_generator.state,  # 128-bit Python ints
        "pairs": [(1, 2.5), ("x", None)],
        "step": np.int64(7),
    }
    path = CheckpointManager(tmp_path).save("ckpt", payload, {}, CONFIG)
    state = torch.load(path / "state.pt", weights_only=True)  # no allow-list needed
    assert isinstance(state["replay"]["obs"]["__ndarray__"], torch.Tensor)
    loaded, _ = load_checkpoint(path)
    assert loaded["replay"]["obs"].dtype == np.float32 and loaded["replay"]["obs"].shape == (4, 3)
    np.testing.assert_array_equal(loaded["replay"]["actions"], np.arange(4))
    assert loaded["rng"] == rng.bit_generator.state
    assert loaded["pairs"] == [(1, 2.5), ("x", None)] and loaded["step"] == 7
    assert type(loaded["step"]) is int


def test_saving_an_object_that_is_not_plain_data_fails_and_writes_nothing(tmp_path):
    manager = CheckpointManager(tmp_path)
    for bad in ({"f": print}, {"o": np.array([object()])}, {"s": {1, 2}}):
        with pytest.raises(ValueError, match="cannot be checkpointed"):
            manager.save("ckpt", bad, {}, CONFIG)
    assert manager.list() == [] and not list(tmp_path.iterdir())


def test_a_checkpoint_of_the_previous_format_loads_its_numpy_arrays_safely(tmp_path):
    """Format 1 pickled numpy arrays; they load through numpy's reconstructors only."""
    path = CheckpointManager(tmp_path).save("ckpt", {"x": 1}, {}, CONFIG)
    legacy = {"curve": {"steps": np.arange(3), "returns": np.ones(3)}, "mean": np.float64(1.5)}
    torch.save(legacy, path / "state.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["version"] = 1
    manifest["files"]["state.pt"] = {
        "size": (path / "state.pt").stat().st_size,
        "sha256": hashlib.sha256((path / "state.pt").read_bytes()).hexdigest(),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded, _ = load_checkpoint(path)
    np.testing.assert_array_equal(loaded["curve"]["returns"], np.ones(3))
    assert loaded["mean"] == 1.5
    manifest["version"] = 7
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format version 7"):
        load_checkpoint(path)


def test_numpy_arrays_of_every_shape_and_layout_round_trip_exactly(tmp_path: Path) -> None:
    """0-d arrays (a normalizer's count), read-only and strided arrays keep shape and values."""
    readonly = np.arange(6, dtype=np.float32).reshape(2, 3)
    readonly.setflags(write=False)
    arrays = {
        "scalar": np.array(7.0),
        "empty": np.zeros((0, 4), dtype=np.int64),
        "readonly": readonly,
        "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],
        "bools": np.array([True, False]),
    }
    manager = CheckpointManager(tmp_path)
    path = manager.save("ckpt_1", {"arrays": arrays}, {"updates": 1}, "")
    payload, _ = load_checkpoint(path)
    for name, array in arrays.items():
        loaded = payload["arrays"][name]
        assert loaded.shape == array.shape and loaded.dtype == array.dtype, name
        np.testing.assert_array_equal(loaded, array)
