"""Exploration schedules for epsilon-greedy acting."""

from __future__ import annotations


def linear_epsilon(step: int, start: float, end: float, decay_steps: int) -> float:
    """Epsilon decayed linearly from ``start`` to ``end`` over ``decay_steps`` steps, then held."""
    fraction = min(max(step, 0) / decay_steps, 1.0)
    return start + fraction * (end - start)


def apex_epsilon(actor_index: int, num_actors: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Ape-X per-actor epsilon: ``base ** (1 + alpha * i / (N - 1))`` (``base`` for one actor)."""
    if not 0 <= actor_index < num_actors:
        raise ValueError(f"actor_index {actor_index} out of range for {num_actors} actors")
    if num_actors == 1:
        return base
    return base ** (1.0 + alpha * actor_index / (num_actors - 1))
