"""Which checkpoint a (re)starting learner or replay actor loads its state from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray

from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import CheckpointError, load_checkpoint

logger = logging.getLogger(__name__)


def restore_candidates(checkpoint_dir: str, resume_path: str | None) -> list[Path]:
    """The checkpoints to try at actor construction, in order.

    A first start loads ``resume_path`` (the checkpoint the run resumes from, if any). A restart
    by Ray after a crash tries the run's own checkpoints, newest first, then ``resume_path``: the
    run continues from its last good checkpoint instead of from scratch.
    """
    paths = []
    if ray.get_runtime_context().was_current_actor_reconstructed:
        paths = [c.path for c in CheckpointManager(Path(checkpoint_dir)).list()]
    if resume_path:
        paths.append(Path(resume_path))
    return paths


def load_payload(checkpoint_dir: str, resume_path: str | None) -> dict[str, Any] | None:
    """The payload of the first of :func:`restore_candidates` that loads, or None if there are none.

    A corrupt or forged checkpoint (one that is not plain data) is logged and skipped.

    Raises:
        CheckpointError: every candidate was refused.
    """
    candidates = restore_candidates(checkpoint_dir, resume_path)
    for path in candidates:
        try:
            payload, _ = load_checkpoint(path)
        except CheckpointError as err:
            logger.error("not restoring %s: %s", path, err)
            continue
        if ray.get_runtime_context().was_current_actor_reconstructed:
            logger.warning("restarted after a failure; restored %s", path)
        return payload
    if candidates:
        raise CheckpointError(f"no checkpoint could be restored ({len(candidates)} refused)")
    return None
