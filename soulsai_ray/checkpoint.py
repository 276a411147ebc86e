"""A folder of atomic checkpoints: the newest few and the best kept, the rest pruned.

Each checkpoint is one folder verified by a manifest of sizes and hashes (written, verified and
loaded by `checkpoint_folder`). Checkpoints are ordered by the run counters in their
``meta.json`` (``updates``, then ``env_steps``, then ``resumes``), not by the wall clock, which
may step back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soulsai_ray.checkpoint_folder import (
    BEST_POINTER,
    LATEST_POINTER,
    MANIFEST_FILE,
    META_FILE,
    TMP_PREFIX,
    TRASH_PREFIX,
    CheckpointError,
    check_files,
    is_partial,
    is_valid,
    move_into_place,
    verify_checkpoint,
    write_folder,
    write_text_atomic,
)

__all__ = ["Checkpoint", "CheckpointManager", "checkpoint_score"]

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_RESERVED_NAMES = {LATEST_POINTER, BEST_POINTER}


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
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=self.root))
        try:
            write_folder(tmp, payload, meta, config_yaml)
            final = self.root / name
            move_into_place(tmp, final)
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
                check_files(folder, hash_files=False)
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
            elif entry.name.startswith(TMP_PREFIX):
                logger.warning("Removing unfinished checkpoint write %s", entry)
                shutil.rmtree(entry)
            elif entry.name.startswith(TRASH_PREFIX):
                self._restore_or_remove_trash(entry)
            elif is_partial(entry):
                logger.warning("Removing partial checkpoint %s (no %s)", entry, MANIFEST_FILE)
                shutil.rmtree(entry)

    def _restore_or_remove_trash(self, trash: Path) -> None:
        original = self.root / trash.name[len(TRASH_PREFIX) :].rsplit("-", 1)[0]
        if not original.exists() and is_valid(trash):
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
