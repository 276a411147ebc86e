"""Tests for soulsai_ray.checkpoint: round trip, atomicity, corruption detection, ordering, pruning."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from checkpoint_saves import CONFIG, names, save_step

from soulsai_ray import checkpoint as checkpoint_module
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import CheckpointError, load_checkpoint, verify_checkpoint


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_round_trip_restores_payload_meta_and_config(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpts")
    payload = {
        "model": {"w": torch.randn(3, 4), "b": torch.arange(4)},
        "obs_mean": np.arange(5, dtype=np.float32),
        "rng": {"seed": 7, "tags": ["a", "b"]},
    }
    meta = {"env_steps": 12_345, "updates": 100, "return_mean": 1.5}
    path = manager.save("ckpt_000012345", payload, meta, CONFIG)

    assert path == tmp_path / "ckpts" / "ckpt_000012345"
    assert "created_at" not in meta  # the caller's dict is not modified
    loaded, loaded_meta = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert torch.equal(loaded["model"]["b"], payload["model"]["b"])
    np.testing.assert_array_equal(loaded["obs_mean"], payload["obs_mean"])
    assert loaded["rng"] == {"seed": 7, "tags": ["a", "b"]}
    assert loaded_meta["env_steps"] == 12_345 and loaded_meta["return_mean"] == 1.5
    assert isinstance(loaded_meta["created_at"], float)
    assert (path / "config.yaml").read_text() == CONFIG
    assert [p.name for p in (tmp_path / "ckpts").iterdir() if p.name.startswith(".")] == []


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    path = save_step(CheckpointManager(tmp_path), 1)
    manifest = json.loads((path / "manifest.json").read_text())["files"]
    assert set(manifest) == {"state.pt", "meta.json", "config.yaml"}
    for name, entry in manifest.items():
        data = (path / name).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_crash_leftovers_are_ignored_then_cleaned_up(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    good = save_step(manager, 1)
    # A crash mid-write leaves a temp folder; a non-atomic writer could leave a final-named
    # folder without manifest. Both look newer than the good checkpoint.
    tmp_leftover = tmp_path / ".tmp-ckpt_000000002-abc123"
    shutil.copytree(good, tmp_leftover)
    partial = tmp_path / "ckpt_000000003"
    shutil.copytree(good, partial)
    (partial / "manifest.json").unlink()

    assert names(manager) == ["ckpt_000000001"]
    assert manager.latest().path == good
    with pytest.raises(CheckpointError, match="partial write"):
        verify_checkpoint(partial)

    save_step(manager, 4)
    assert not tmp_leftover.exists()
    assert not partial.exists()
    assert names(manager) == ["ckpt_000000004", "ckpt_000000001"]


def test_unrelated_folders_in_root_are_left_alone(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("keep me")
    save_step(manager, 1)
    assert (notes / "readme.txt").read_text() == "keep me"
    assert names(manager) == ["ckpt_000000001"]


def test_corrupt_byte_fails_verification_and_latest_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = CheckpointManager(tmp_path)
    older = save_step(manager, 1)
    newer = save_step(manager, 2)
    _flip_byte(newer / "state.pt", offset=(newer / "state.pt").stat().st_size // 2)

    with pytest.raises(CheckpointError, match=r"ckpt_000000002.*state\.pt.*sha256"):
        verify_checkpoint(newer)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(newer)
    # list() checks sizes only, so the same-size corruption is still listed ...
    assert names(manager) == ["ckpt_000000002", "ckpt_000000001"]
    # ... but latest() hashes and skips it with a warning.
    with caplog.at_level(logging.WARNING, logger="soulsai_ray.checkpoint"):
        assert manager.latest().path == older
    assert "ckpt_000000002" in caplog.text
    payload, _ = load_checkpoint(manager.latest().path)
    assert payload["step"] == 1


def test_size_mismatch_and_missing_file_are_refused(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    truncated = save_step(manager, 1)
    missing = save_step(manager, 2)
    with open(truncated / "state.pt", "ab") as f:
        f.write(b"extra")
    (missing / "config.yaml").unlink()

    with pytest.raises(CheckpointError, match=r"state\.pt has size \d+, manifest says \d+"):
        verify_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="missing file config.yaml"):
        verify_checkpoint(missing)
    assert manager.list() == []
    assert manager.latest() is None


def test_verify_refuses_missing_folder_and_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoint(tmp_path / "nope")
    path = save_step(CheckpointManager(tmp_path), 1)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        verify_checkpoint(path)


def test_pruning_keeps_newest_k_plus_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, ret in [(1, 1.0), (2, 10.0), (3, 2.0), (4, None), (5, 4.0)]:
        save_step(manager, step, ret)

    assert names(manager) == ["ckpt_000000005", "ckpt_000000004", "ckpt_000000002"]
    assert manager.latest().path.name == "ckpt_000000005"
    assert manager.best().path.name == "ckpt_000000002"
    assert (tmp_path / "latest").read_text().strip() == "ckpt_000000005"
    assert (tmp_path / "best").read_text().strip() == "ckpt_000000002"


def test_best_among_newest_keeps_only_k(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, ret in [(1, 1.0), (2, 2.0), (3, 3.0)]:
        save_step(manager, step, ret)
    assert names(manager) == ["ckpt_000000003", "ckpt_000000002"]
    assert manager.best().path.name == "ckpt_000000003"


def test_none_return_mean_is_never_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=1)
    save_step(manager, 1)
    save_step(manager, 2)
    assert names(manager) == ["ckpt_000000002"]
    assert manager.best() is None
    assert not (tmp_path / "best").exists()

    save_step(manager, 3, -50.0)
    save_step(manager, 4)
    assert names(manager) == ["ckpt_000000004", "ckpt_000000003"]
    assert manager.best().path.name == "ckpt_000000003"


def test_best_falls_back_when_best_is_corrupt(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=3)
    save_step(manager, 1, 5.0)
    top = save_step(manager, 2, 9.0)
    save_step(manager, 3, 1.0)
    _flip_byte(top / "state.pt", offset=(top / "state.pt").stat().st_size // 2)
    assert "ckpt_000000002" in names(manager)  # same size: only hashing finds it
    assert manager.best().path.name == "ckpt_000000001"


def test_saving_same_name_replaces_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    path = manager.save("ckpt_final", {"v": 1}, {}, CONFIG)
    manager.save("ckpt_final", {"v": 2}, {}, "changed: true\n")
    payload, _ = load_checkpoint(path)
    assert payload == {"v": 2}
    assert (path / "config.yaml").read_text() == "changed: true\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_final", "latest"]


def test_interrupted_replace_restores_old_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    path = manager.save("ckpt_a", {"v": 1}, {}, CONFIG)
    # Crash after moving the old folder aside, before the new one moved in.
    path.rename(tmp_path / ".trash-ckpt_a-deadbeef")
    manager.save("ckpt_b", {"v": 2}, {}, CONFIG)
    assert load_checkpoint(path)[0] == {"v": 1}
    assert not (tmp_path / ".trash-ckpt_a-deadbeef").exists()


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "latest", "best", "-x"])
def test_invalid_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="Invalid checkpoint name"):
        CheckpointManager(tmp_path).save(name, {}, {}, CONFIG)


def test_empty_or_missing_root_has_no_checkpoints(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "does-not-exist")
    assert manager.list() == []
    assert manager.latest() is None
    assert manager.best() is None
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)


class _BackwardClock:
    """A wall clock that steps back 100 s at every reading, like an RTC corrected by NTP."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start + 100.0

    def __call__(self) -> float:
        self.now -= 100.0
        return self.now


def _save_counters(
    manager: CheckpointManager,
    updates: int | None,
    env_steps: int | None,
    return_mean: float | None = None,
    resumes: int | None = None,
    name: str | None = None,
) -> Path:
    counters = {"updates": updates, "env_steps": env_steps, "resumes": resumes}
    meta = {k: v for k, v in counters.items() if v is not None} | {"return_mean": return_mean}
    name = name or f"ckpt_{updates or 0:09d}_{env_steps or 0:011d}"
    return manager.save(name, {"updates": updates}, meta, CONFIG)


def test_clock_stepping_back_does_not_change_latest_or_pruning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "time", SimpleNamespace(time=_BackwardClock()))
    manager = CheckpointManager(tmp_path, keep_last=2)
    for updates, ret in [(100, 1.0), (200, 9.0), (300, 2.0), (400, 3.0), (500, None)]:
        _save_counters(manager, updates, updates * 10, ret)

    checkpoints = manager.list()
    assert [c.meta["created_at"] for c in checkpoints] == [600.0, 700.0, 900.0]  # clock went back
    assert [c.name for c in checkpoints] == [
        "ckpt_000000500_00000005000",
        "ckpt_000000400_00000004000",
        "ckpt_000000200_00000002000",  # the best, kept on top of the newest two
    ]
    assert manager.latest().meta["updates"] == 500
    assert manager.best().meta["updates"] == 200
    assert (tmp_path / "latest").read_text().strip() == "ckpt_000000500_00000005000"


def test_order_is_updates_then_env_steps_then_resumes_then_created_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "time", SimpleNamespace(time=_BackwardClock()))
    manager = CheckpointManager(tmp_path, keep_last=10)
    _save_counters(manager, None, None, name="no_counters")
    _save_counters(manager, 9, 900, name="fewer_updates")
    _save_counters(manager, 10, 400, name="fewer_steps")
    _save_counters(manager, 10, 500, resumes=0, name="first_run")
    _save_counters(manager, 10, 500, resumes=1, name="resumed")
    _save_counters(manager, 10, 500, resumes=1, name="same_counters_later_clock")

    assert names(manager) == [
        "resumed",  # created 100 s before its twin: created_at breaks the tie
        "same_counters_later_clock",
        "first_run",
        "fewer_steps",
        "fewer_updates",
        "no_counters",
    ]


def test_best_tie_goes_to_larger_counters_not_later_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "time", SimpleNamespace(time=_BackwardClock()))
    manager = CheckpointManager(tmp_path, keep_last=1)
    _save_counters(manager, 1, 10, 5.0)
    _save_counters(manager, 2, 20, 5.0)
    _save_counters(manager, 3, 30, 1.0)
    assert names(manager) == ["ckpt_000000003_00000000030", "ckpt_000000002_00000000020"]
    assert manager.best().name == "ckpt_000000002_00000000020"


def test_save_keeps_the_checkpoint_it_wrote_even_when_it_ranks_below_keep_last(
    tmp_path: Path,
) -> None:
    manager = CheckpointManager(tmp_path, keep_last=1)
    _save_counters(manager, 500, 5000)
    # A run resumed from an older checkpoint writes below the newest one.
    older = _save_counters(manager, 300, 3000)
    assert older.is_dir()
    assert names(manager) == ["ckpt_000000500_00000005000", older.name]
    newer_branch = _save_counters(manager, 310, 3100)
    assert names(manager) == ["ckpt_000000500_00000005000", newer_branch.name]
