"""Which checkpoint a (re)starting learner or replay actor loads its state from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray

from soulsai_ray.checkpoint import CheckpointManager, load_checkpoint

logger = logging.getLogger(__name__)


def checkpoint_to_restore(checkpoint_dir: str, resume_path: str | None) -> Path | None:
    """The checkpoint to load at actor construction.

    A first start loads ``resume_path`` (the checkpoint the run resumes from, if any). A restart
    by Ray after a crash loads the newest good checkpoint of the run, falling back to
    ``resume_path``: the run continues from its last checkpoint instead of from scratch.
    """
    if ray.get_runtime_context().was_current_actor_reconstructed:
        latest = CheckpointManager(Path(checkpoint_dir)).latest()
        if latest is not None:
            logger.warning("restarted after a failure; restoring %s", latest.path)
            return latest.path
    return Path(resume_path) if resume_path else None


def load_payload(checkpoint_dir: str, resume_path: str | None) -> dict[str, Any] | None:
    """The payload of :func:`checkpoint_to_restore`'s checkpoint, or None."""
    path = checkpoint_to_restore(checkpoint_dir, resume_path)
    if path is None:
        return None
    payload, _ = load_checkpoint(path)
    return payload
