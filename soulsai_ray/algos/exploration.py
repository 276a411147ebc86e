"""Exploration schedules for epsilon-greedy acting."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soulsai_ray.algo_config import DQNConfig


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


def spread_fraction(index: int) -> float:
    """A position in [0, 1] for actor ``index`` such that every first k actors are spread out.

    0, 1, then the van der Corput sequence (1/2, 1/4, 3/4, 1/8, ...): a fleet that grows one
    actor at a time keeps its exploration rates spread over the whole range.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if index < 2:
        return float(index)
    n, fraction, scale = index - 1, 0.0, 0.5
    while n:
        fraction += scale * (n & 1)
        n >>= 1
        scale /= 2
    return fraction


def elastic_apex_epsilon(actor_index: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Ape-X epsilon for a fleet of unknown, changing size: ``base ** (1 + alpha * f(i))``.

    ``f`` is :func:`spread_fraction`, so actors joining later fill the gaps of the range.
    """
    return base ** (1.0 + alpha * spread_fraction(actor_index))


def actor_epsilon(
    cfg: DQNConfig, index: int, num_actors: int | None, global_env_steps: int
) -> float:
    """Rollout actor ``index``'s epsilon at the run's ``global_env_steps``: the linear schedule,
    or with ``per_actor_eps`` its Ape-X rate (``num_actors`` None: an elastic fleet)."""
    if not cfg.per_actor_eps:
        return linear_epsilon(global_env_steps, cfg.eps_start, cfg.eps_end, cfg.eps_decay_steps)
    if num_actors is None:
        return elastic_apex_epsilon(index, cfg.apex_eps_base, cfg.apex_eps_alpha)
    return apex_epsilon(index, num_actors, cfg.apex_eps_base, cfg.apex_eps_alpha)
