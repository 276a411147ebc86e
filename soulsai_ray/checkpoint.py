"""Atomic checkpoints: one folder per checkpoint, verified by a manifest of sizes and hashes.

Layout of a checkpoint folder::

    ckpt_000012345/
      state.pt       the payload dict (model, optimizer, normalizer, ...) as plain data: tensors,
                     numbers and strings, loaded without unpickling code (`checkpoint_data`)
      meta.json      counters (env steps, updates, episodes, weight version, created_at, ...)
      config.yaml    the resolved run config
      manifest.json  written last: size and sha256 of every other file

A folder is written under a temporary sibling name (``.tmp-<name>-<random>``) and renamed into
place only once complete, so a crash leaves either the old state or the new one, never a mix.
A folder without a manifest is a partial write; one whose files disagree with the manifest is
corrupt. Both are refused by `verify_checkpoint` and skipped by `CheckpointManager`.

Checkpoints are ordered by the run counters in their ``meta.json`` (``updates``, then
``env_steps``, then ``resumes``), not by the wall clock, which may step back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soulsai_ray.checkpoint_data import (
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    UnsafePayloadError,
    load_state,
    save_state,
)

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
LATEST_POINTER = "latest"
BEST_POINTER = "best"

_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_PAYLOAD_FILES = (STATE_FILE, META_FILE, CONFIG_FILE)
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_RESERVED_NAMES = {LATEST_POINTER, BEST_POINTER}


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, partial or corrupt."""


@dataclass
class Checkpoint:
    """A checkpoint folder on disk and its counters.

    Attributes:
        path: The checkpoint folder.
        meta: The content of its ``meta.json`` (includes ``created_at``).
    """

    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        """The folder name, e.g. ``ckpt_000012345``."""
        return self.path.name


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see either the old or the new content.

    Args:
        path: Destination file; its parent folder must exist.
        text: Content, written as UTF-8.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def verify_checkpoint(path: Path) -> None:
    """Checks a checkpoint folder against its manifest, hashing every file.

    Args:
        path: The checkpoint folder.

    Raises:
        CheckpointError: The folder is missing, has no manifest (partial write), or a file is
            missing or differs in size or sha256 from the manifest.
    """
    _check_files(Path(path), hash_files=True)


def load_checkpoint(path: Path, map_location: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """Verifies and loads a checkpoint.

    Args:
        path: The checkpoint folder.
        map_location: Device the tensors are loaded onto.

    Returns:
        The payload dict given to `CheckpointManager.save` and the meta dict.

    Raises:
        CheckpointError: The checkpoint fails verification, or its state file is not plain data
            (a forged or foreign file; it is refused before anything in it is run).
    """
    path = Path(path)
    version = _check_files(path, hash_files=True)
    try:
        payload = load_state(path / STATE_FILE, version, map_location)
    except UnsafePayloadError as err:
        raise CheckpointError(str(err)) from err
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    return payload, meta


class CheckpointManager:
    """Writes checkpoints under `root` atomically, keeps the newest `keep_last` plus the best by score (`checkpoint_score`).

    Assumes a single writer per `root`. Besides the checkpoint folders, `root` holds two text
    files, ``latest`` and ``best``, naming the newest and the best checkpoint for humans and
    scripts; `latest` and `best` do not rely on them.

    Args:
        root: Folder holding the checkpoint folders; created on first save.
        keep_last: How many of the newest checkpoints survive pruning (the best one and the one
            just saved are kept on top of these).
    """

    def __init__(self, root: Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(root)
        self.keep_last = keep_last

    def save(
        self, name: str, payload: dict[str, Any], meta: dict[str, Any], config_yaml: str
    ) -> Path:
        """Writes a checkpoint atomically, replacing one of the same name, then prunes.

        Args:
            name: Folder name, e.g. ``ckpt_000012345``.
            payload: Plain data: tensors, numpy arrays and scalars, numbers, strings, None, and
                dicts, lists and tuples of these (`checkpoint_data.encode`).
            meta: JSON-serializable counters; ``created_at`` (``time.time()``) is added.
            config_yaml: The resolved config text.

        Returns:
            The final checkpoint folder.

        Raises:
            OSError: Writing failed (e.g. the disk is full). Nothing is pruned and the existing
                checkpoints are untouched; the partial write is removed.
            UnsafePayloadError: The payload holds an object that is not plain data.
        """
        _check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        meta = {**meta, "created_at": time.time()}
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=self.root))
        try:
            _write_folder(tmp, payload, meta, config_yaml)
            final = self.root / name
            _move_into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(saved=final)
        return final

    def list(self) -> list[Checkpoint]:
        """Lists checkpoints whose files match the manifest sizes (no hashing), newest first.

        Newest means the largest ``(updates, env_steps, resumes)`` from ``meta.json``; a missing
        counter counts as older than any value, and ``created_at`` and the name only break ties.
        """
        if not self.root.is_dir():
            return []
        checkpoints = []
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                _check_files(folder, hash_files=False)
                meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            except (CheckpointError, ValueError) as e:
                logger.debug("Skipping %s: %s", folder, e)
                continue
            checkpoints.append(Checkpoint(path=folder, meta=meta))
        checkpoints.sort(key=_order_key, reverse=True)
        return checkpoints

    def latest(self) -> Checkpoint | None:
        """Returns the newest checkpoint that passes full verification, or None."""
        return _first_verified(self.list())

    def best(self) -> Checkpoint | None:
        """Returns the verified checkpoint with the highest score, or None.

        The score is ``meta["score"]`` (the run's best-checkpoint metric: an evaluation's, or
        the training episodes' window) or, in checkpoints without one, ``meta["return_mean"]``.
        Checkpoints without a finite score are never the best.
        """
        ranked = sorted(self._scored(), key=_best_key, reverse=True)
        return _first_verified(ranked)

    def _scored(self) -> list[Checkpoint]:
        return [c for c in self.list() if checkpoint_score(c) is not None]

    def _prune(self, saved: Path) -> None:
        """Deletes all but the newest `keep_last`, the best and `saved`; updates the pointer files.

        Args:
            saved: The checkpoint just written. It is kept even when older checkpoints rank
                above it (a run resumed from an older checkpoint than the newest one).
        """
        checkpoints = self.list()
        best = max(self._scored(), key=_best_key, default=None)
        keep = {c.name for c in checkpoints[: self.keep_last]} | {saved.name}
        if best is not None:
            keep.add(best.name)
        for c in checkpoints:
            if c.name not in keep:
                shutil.rmtree(c.path)
        if checkpoints:
            write_text_atomic(self.root / LATEST_POINTER, checkpoints[0].name + "\n")
        if best is not None:
            write_text_atomic(self.root / BEST_POINTER, best.name + "\n")
        else:
            (self.root / BEST_POINTER).unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """Cleans up after crashed saves: temp folders, trash folders and partial checkpoints.

        A trash folder is a good checkpoint moved aside to be replaced; if the crash happened
        before its replacement moved in, it is restored instead of deleted.
        """
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir():
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    entry.unlink(missing_ok=True)  # pointer file from a crashed atomic write
            elif entry.name.startswith(_TMP_PREFIX):
                logger.warning("Removing unfinished checkpoint write %s", entry)
                shutil.rmtree(entry)
            elif entry.name.startswith(_TRASH_PREFIX):
                self._restore_or_remove_trash(entry)
            elif _is_partial(entry):
                logger.warning("Removing partial checkpoint %s (no %s)", entry, MANIFEST_FILE)
                shutil.rmtree(entry)

    def _restore_or_remove_trash(self, trash: Path) -> None:
        original = self.root / trash.name[len(_TRASH_PREFIX) :].rsplit("-", 1)[0]
        if not original.exists() and _is_valid(trash):
            logger.warning("Restoring checkpoint %s from interrupted replace", original)
            os.rename(trash, original)
        else:
            shutil.rmtree(trash)


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name) or name in _RESERVED_NAMES:
        raise ValueError(
            f"Invalid checkpoint name {name!r}: use letters, digits, '_', '.', '-', "
            f"not starting with '.' or '-', and not {sorted(_RESERVED_NAMES)}"
        )


def _write_folder(
    folder: Path, payload: dict[str, Any], meta: dict[str, Any], config_yaml: str
) -> None:
    """Writes the payload files, then the manifest describing them, all fsynced.

    Raises:
        OSError: a file could not be written (disk full, permissions), torch's failures included.
    """
    try:
        save_state(payload, folder / STATE_FILE)
    except RuntimeError as err:  # torch reports a full disk as a RuntimeError of its zip writer
        raise OSError(errno.EIO, f"writing {folder / STATE_FILE} failed: {err}") from err
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    (folder / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
    files = {}
    for fname in _PAYLOAD_FILES:
        _fsync_file(folder / fname)
        files[fname] = {"size": (folder / fname).stat().st_size, "sha256": _sha256(folder / fname)}
    manifest = json.dumps({"version": FORMAT_VERSION, "files": files}, indent=2, sort_keys=True)
    (folder / MANIFEST_FILE).write_text(manifest, encoding="utf-8")
    _fsync_file(folder / MANIFEST_FILE)
    _fsync_dir(folder)


def _move_into_place(tmp: Path, final: Path) -> None:
    """Renames `tmp` to `final`; an existing `final` is moved aside first and deleted after.

    If the new folder cannot be moved in, the existing `final` is moved back.
    """
    if not final.exists():
        os.rename(tmp, final)
    else:
        trash = final.with_name(f"{_TRASH_PREFIX}{final.name}-{secrets.token_hex(4)}")
        os.rename(final, trash)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(trash, final)
            raise
        shutil.rmtree(trash)
    _fsync_dir(final.parent)


def _check_files(path: Path, hash_files: bool) -> int:
    """Raises CheckpointError unless every file listed in the manifest is present and matches.

    Returns:
        The manifest's format version.
    """
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {path} does not exist or is not a folder")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} has no {MANIFEST_FILE}: partial write (the save was interrupted)"
        )
    version, files = _read_manifest(manifest_path)
    for fname, entry in files.items():
        file = path / fname
        if not file.is_file():
            raise CheckpointError(f"Checkpoint {path} is missing file {fname}")
        size = file.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(
                f"Checkpoint {path}: {fname} has size {size}, manifest says {entry['size']}"
            )
        if hash_files and _sha256(file) != entry["sha256"]:
            raise CheckpointError(
                f"Checkpoint {path}: {fname} sha256 mismatch with manifest (file is corrupt)"
            )
    return version


def _read_manifest(manifest_path: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """The manifest's format version and its file entries."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        version, files = manifest["version"], manifest["files"]
        entries_ok = all({"size", "sha256"} <= set(e) for e in files.values())
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"Checkpoint manifest {manifest_path} is unreadable: {e}") from e
    missing = [f for f in (STATE_FILE, META_FILE) if f not in files]
    if not entries_ok or missing:
        raise CheckpointError(
            f"Checkpoint manifest {manifest_path} is malformed (missing entries: {missing})"
        )
    if version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION):
        raise CheckpointError(
            f"Checkpoint manifest {manifest_path} has format version {version!r}; this version "
            f"of soulsai_ray reads {LEGACY_FORMAT_VERSION} and {FORMAT_VERSION}"
        )
    return version, files


def _is_valid(path: Path) -> bool:
    try:
        verify_checkpoint(path)
    except CheckpointError:
        return False
    return True


def _is_partial(folder: Path) -> bool:
    """True for a folder holding checkpoint files but no manifest."""
    has_payload = any((folder / f).exists() for f in _PAYLOAD_FILES)
    return has_payload and not (folder / MANIFEST_FILE).exists()


def _first_verified(candidates: list[Checkpoint]) -> Checkpoint | None:
    for c in candidates:
        try:
            verify_checkpoint(c.path)
        except CheckpointError as e:
            logger.warning("Skipping corrupt checkpoint: %s", e)
            continue
        return c
    return None


_ORDER_COUNTERS = ("updates", "env_steps", "resumes")


def _order_key(c: Checkpoint) -> tuple[int | float | str, ...]:
    """Sort key, larger is newer: run counters first, then ``created_at`` and name."""
    counters = tuple(_counter(c, key) for key in _ORDER_COUNTERS)
    return (*counters, _created_at(c), c.name)


def _counter(c: Checkpoint, key: str) -> int:
    """A non-negative int counter from meta; -1 (older than any value) when missing."""
    value = c.meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return -1
    return value


def _created_at(c: Checkpoint) -> float:
    value = c.meta.get("created_at")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return -math.inf
    return float(value)


def checkpoint_score(c: Checkpoint) -> float | None:
    """A checkpoint's score for `CheckpointManager.best`: ``meta["score"]``; in checkpoints
    written before scores existed, ``meta["return_mean"]``. None (never the best) if not finite.

    A run that evaluates scores only evaluated checkpoints (the others hold ``score: null``).
    """
    value = c.meta["score"] if "score" in c.meta else c.meta.get("return_mean")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _best_key(c: Checkpoint) -> tuple[int | float | str, ...]:
    """Ranks by score (missing counts as worst); ties go to the newer checkpoint."""
    value = checkpoint_score(c)
    return (value if value is not None else -math.inf, *_order_key(c))


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Makes renames inside `path` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
