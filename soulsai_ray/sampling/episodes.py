"""Episode bookkeeping shared by the samplers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EpisodeStats:
    """Episodes finished and faults seen since the last report."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    env_steps: int = 0
    env_errors: int = 0
    invalid_steps: int = 0
    """Steps dropped because the env returned a NaN/inf observation or reward."""


def backoff_s(failures_in_row: int, cap_s: float, base_s: float = 0.1) -> float:
    """Growing, capped back-off before re-creating a crashed env (0.1, 0.2, 0.4, ... s)."""
    return min(base_s * 2.0 ** min(max(failures_in_row - 1, 0), 60), cap_s)
