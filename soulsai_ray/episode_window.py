"""Rolling statistics of recent episodes: return, length and the numbers an env reports.

An env may report per-episode numbers in ``info["episode_metrics"]`` at an episode's end (the
SoulsGym adapter reports ``boss_hp_final``, ``player_hp_final`` and ``win``). Each has a
rolling mean named by `metric_summary_name` (``win`` -> ``win_rate``, ``x`` -> ``x_mean``),
used alike by training telemetry (``episode/<summary>``) and evaluation (``eval/<summary>``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from soulsai_ray import metric_names as mn

logger = logging.getLogger(__name__)

MAX_TRACKED_METRICS = 16
"""Most episode-metric names one run tracks; later names are ignored (memory stays bounded)."""
_METRIC_STATE_PREFIX = "recent_metric/"


def metric_summary_name(name: str) -> str:
    """The name of an episode metric's mean: ``win`` -> ``win_rate``, ``x`` -> ``x_mean``."""
    return "win_rate" if name == "win" else f"{name}_mean"


def summarize_episodes(
    returns: Sequence[float],
    lengths: Sequence[int],
    metrics: Sequence[Mapping[str, float]] | None = None,
) -> dict[str, float | int | None]:
    """Mean and spread of a set of episodes (e.g. an evaluation's).

    Returns:
        ``return_mean``, ``return_std``, ``length_mean``, ``episodes`` and, for every episode
        metric, its mean under `metric_summary_name` (over the episodes that reported it).
        Means of no episodes are None.
    """
    summary: dict[str, float | int | None] = {
        "return_mean": float(np.mean(returns)) if len(returns) else None,
        "return_std": float(np.std(returns)) if len(returns) else None,
        "length_mean": float(np.mean(lengths)) if len(lengths) else None,
        "episodes": len(returns),
    }
    by_name: dict[str, list[float]] = {}
    for numbers in metrics or ():
        for name, value in numbers.items():
            by_name.setdefault(name, []).append(float(value))
    for name, values in sorted(by_name.items()):
        summary[metric_summary_name(name)] = float(np.mean(values))
    return summary


class EpisodeWindow:
    """The last ``window`` episodes' returns, lengths and episode metrics, and their means.

    Args:
        window: Episodes each mean covers (per metric: the last ``window`` that reported it).
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.metrics: dict[str, deque[float]] = {}
        self._warned = False

    def add(self, ret: float, length: int, metrics: Mapping[str, float] | None = None) -> None:
        """Records one finished episode."""
        self.returns.append(float(ret))
        self.lengths.append(int(length))
        for name, value in (metrics or {}).items():
            if self._tracks(name):
                self._metric(name).append(float(value))

    @property
    def return_mean(self) -> float | None:
        """Mean return of the window, None before the first episode."""
        return float(np.mean(self.returns)) if self.returns else None

    def means(self) -> dict[str, float]:
        """``episode/return_mean``, ``episode/length_mean`` and ``episode/<summary>`` per metric
        (e.g. ``episode/win_rate``); empty before the first episode."""
        if not self.returns:
            return {}
        means = {mn.EPISODE_RETURN_MEAN: float(np.mean(self.returns))}
        if self.lengths:
            means[mn.EPISODE_LENGTH_MEAN] = float(np.mean(self.lengths))
        for name, values in self.metrics.items():
            if values:
                means[mn.episode_metric(metric_summary_name(name))] = float(np.mean(values))
        return means

    def state(self) -> dict[str, np.ndarray]:
        """The window as arrays (for a checkpoint); see :meth:`load`."""
        state = {
            "recent_returns": np.array(self.returns, dtype=np.float64),
            "recent_lengths": np.array(self.lengths, dtype=np.int64),
        }
        for name, values in self.metrics.items():
            state[_METRIC_STATE_PREFIX + name] = np.array(values, dtype=np.float64)
        return state

    def load(self, state: Mapping[str, Any]) -> None:
        """Continues from :meth:`state` output; missing parts (older checkpoints) start empty."""
        self.returns.clear()
        self.returns.extend(float(r) for r in _flat(state.get("recent_returns")))
        self.lengths.clear()
        self.lengths.extend(int(n) for n in _flat(state.get("recent_lengths")))
        self.metrics.clear()
        for key, values in state.items():
            name = str(key)[len(_METRIC_STATE_PREFIX) :]
            if str(key).startswith(_METRIC_STATE_PREFIX) and self._tracks(name):
                self._metric(name).extend(float(v) for v in _flat(values))

    def _tracks(self, name: str) -> bool:
        if name in self.metrics or len(self.metrics) < MAX_TRACKED_METRICS:
            return True
        if not self._warned:
            self._warned = True
            logger.warning(
                "episode metric %r and any further new names are ignored: %d are tracked",
                name,
                MAX_TRACKED_METRICS,
            )
        return False

    def _metric(self, name: str) -> deque[float]:
        return self.metrics.setdefault(name, deque(maxlen=self.window))


def _flat(values: Any) -> np.ndarray:
    return np.zeros(0) if values is None else np.asarray(values).reshape(-1)
