"""The replay buffer a DQN config describes, and the memory it takes.

The replay actor, a serial run and ``soulsai_bench lockstep`` build theirs with
:func:`replay_buffer`, and the check before a run starts (:mod:`soulsai_ray.preflight`) sizes
it with :func:`replay_bytes`, so a screened setting is the setting a run uses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from soulsai_ray.frame_replay import FrameReplay
from soulsai_ray.frame_ring import FrameRing
from soulsai_ray.observations import ObsSpec
from soulsai_ray.priorities import SumTree
from soulsai_ray.prioritized_frames import PrioritizedFrameReplay
from soulsai_ray.replay import PrioritizedReplayBuffer, ReplayBuffer
from soulsai_ray.transitions import _zeros_batch

if TYPE_CHECKING:
    from soulsai_ray.algo_config import DQNConfig

__all__ = ["Replay", "replay_buffer", "replay_bytes"]

Replay = ReplayBuffer | FrameReplay
"""A DQN replay: transitions (uniform or prioritized) or frames."""


def replay_bytes(
    cfg: DQNConfig, obs_spec: ObsSpec | int, num_actions: int, frame_stack: int = 1
) -> int:
    """Bytes the buffer of :func:`replay_buffer` allocates: its storage (observations in their
    own dtype: one byte per pixel of an image; a frames replay one frame per slot, no stacks)
    and, when prioritized, its sum tree.

    Args:
        cfg: The DQN config (``buffer_size``, ``prioritized``, ``replay_layout``).
        obs_spec: An observation, as the env gives it (stacked frames included).
        num_actions: Size of the discrete action space.
        frame_stack: Frames an observation stacks (``env.frame_stack``).
    """
    spec = ObsSpec.of(obs_spec)
    tree = SumTree.bytes_for(cfg.buffer_size) if cfg.prioritized else 0
    if cfg.replay_layout == "frames":
        frame = spec.single_frame(frame_stack)
        return FrameRing.bytes_for(cfg.buffer_size, frame, num_actions) + tree
    row = _zeros_batch(1, spec, num_actions)
    per_row = sum(getattr(row, f.name).nbytes for f in dataclasses.fields(row))
    return cfg.buffer_size * per_row + tree


def replay_buffer(
    cfg: DQNConfig, obs_spec: ObsSpec | int, num_actions: int, seed: int, frame_stack: int = 1
) -> Replay:
    """The replay buffer ``cfg`` describes: with ``replay_layout: frames`` a `FrameReplay` of
    ``buffer_size`` frames (n-step transitions of up to ``max_n_step``, stacks of ``frame_stack``), else
    a prioritized (``cfg.prioritized``) or uniform `ReplayBuffer` of transitions; frames are
    prioritized the same way (`PrioritizedFrameReplay`).

    Args:
        cfg: The DQN config.
        obs_spec: An observation, as the env gives it (stacked frames included).
        num_actions: Size of the discrete action space.
        seed: Seed of the buffer's sampling.
        frame_stack: Frames an observation stacks (``env.frame_stack``).
    """
    spec = ObsSpec.of(obs_spec)
    if cfg.replay_layout == "frames":
        frame = spec.single_frame(frame_stack)
        sizes = (cfg.buffer_size, frame, num_actions, cfg.max_n_step, cfg.gamma, frame_stack, seed)
        if cfg.prioritized:
            per = {"alpha": cfg.per_alpha, "beta": cfg.per_beta_start, "eps": cfg.per_eps}
            return PrioritizedFrameReplay(*sizes, **per)
        return FrameReplay(*sizes)
    if cfg.prioritized:
        return PrioritizedReplayBuffer(
            cfg.buffer_size,
            spec,
            num_actions,
            cfg.per_alpha,
            cfg.per_beta_start,
            cfg.per_eps,
            seed,
        )
    return ReplayBuffer(cfg.buffer_size, spec, num_actions, seed)
