"""Saves and listings shared by the checkpoint tests (imported by this name, which no other test
folder uses)."""

from __future__ import annotations

from pathlib import Path

import torch

from soulsai_ray.checkpoint import CheckpointManager

CONFIG = "algo:\n  name: dqn\nenv:\n  id: CartPole-v1\n"


def save_step(manager: CheckpointManager, step: int, return_mean: float | None = None) -> Path:
    """Saves ``ckpt_<step>`` holding a 2x2 tensor filled with ``step``."""
    payload = {"model": {"w": torch.full((2, 2), float(step))}, "step": step}
    meta = {"env_steps": step, "return_mean": return_mean}
    return manager.save(f"ckpt_{step:09d}", payload, meta, CONFIG)


def names(manager: CheckpointManager) -> list[str]:
    """The listed checkpoints' folder names, newest first."""
    return [c.path.name for c in manager.list()]
