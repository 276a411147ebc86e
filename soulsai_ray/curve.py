"""The learning curve of a run, kept at a fixed size however long the run lasts (no Ray)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_CURVE_POINTS = 4096


def rolling_mean(
    values: Sequence[float], window: int, counts: Sequence[int] | None = None
) -> np.ndarray:
    """Mean of the last ``window`` values up to each index (fewer at the start).

    Args:
        values: The values, or with ``counts`` the mean of each group of values.
        window: How many values each mean covers.
        counts: How many values each entry of ``values`` stands for; None means one each. A mean
            then covers the fewest trailing entries holding at least ``window`` values (at least
            the entry itself), weighting each entry by its count.

    Returns:
        One mean per entry of ``values``.
    """
    x = np.asarray(values, dtype=np.float64)
    n = np.ones(len(x), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    sums = np.concatenate([[0.0], np.cumsum(x * n)])
    totals = np.concatenate([[0], np.cumsum(n)])
    end = np.arange(1, len(x) + 1)
    start = np.searchsorted(totals, totals[end] - window, side="right") - 1
    start = np.clip(start, 0, end - 1)
    return (sums[end] - sums[start]) / (totals[end] - totals[start])


class LearningCurve:
    """Episode returns against env steps, downsampled to at most ``max_points`` points.

    Each point holds the env step of its last episode, the mean return of its episodes and how
    many episodes it stands for. Up to ``max_points`` episodes, a point is one episode. When the
    curve is full, adjacent points are merged pairwise and every later point collects twice as
    many episodes, so all points but the newest (still filling) stand for the same number of
    episodes: the curve stays an even downsample of the whole run.

    Args:
        max_points: Most points kept; even and >= 2.
    """

    def __init__(self, max_points: int = DEFAULT_CURVE_POINTS) -> None:
        if max_points < 2 or max_points % 2:
            raise ValueError(f"max_points must be even and >= 2, got {max_points}")
        self.max_points = max_points
        self._steps = np.zeros(max_points, dtype=np.int64)
        self._sums = np.zeros(max_points, dtype=np.float64)
        self._counts = np.zeros(max_points, dtype=np.int64)
        self._size = 0
        self._bucket = 1  # episodes in each full point

    def __len__(self) -> int:
        return self._size

    @property
    def episodes(self) -> int:
        """Number of episodes the curve stands for."""
        return int(self._counts[: self._size].sum())

    def extend(
        self, steps: Sequence[int] | np.ndarray, returns: Sequence[float] | np.ndarray
    ) -> None:
        """Adds episodes in logging order.

        Args:
            steps: Env step each episode was reported at.
            returns: Return of each episode.
        """
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        returns = np.asarray(returns, dtype=np.float64).reshape(-1)
        if steps.shape != returns.shape:
            raise ValueError(f"got {len(steps)} steps but {len(returns)} returns")
        start = 0
        while start < len(returns):
            last = self._open_point()
            end = start + min(len(returns) - start, self._bucket - int(self._counts[last]))
            self._sums[last] += returns[start:end].sum()
            self._counts[last] += end - start
            self._steps[last] = steps[end - 1]
            start = end

    def points(self) -> list[tuple[int, float]]:
        """The curve as ``(env_step, mean return)`` pairs, oldest first."""
        state = self.state()
        return [(int(s), float(r)) for s, r in zip(state["steps"], state["returns"], strict=True)]

    def state(self) -> dict[str, np.ndarray]:
        """The points as arrays: ``steps`` (int64), ``returns`` (float64 means), ``counts`` (int64)."""
        n = self._size
        return {
            "steps": self._steps[:n].copy(),
            "returns": self._sums[:n] / self._counts[:n],
            "counts": self._counts[:n].copy(),
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Replaces the points with those of `state` (as returned by `state`), merging if too many.

        Args:
            state: Arrays ``steps``, ``returns`` and ``counts`` of equal length; counts >= 1.
        """
        steps = np.asarray(state["steps"], dtype=np.int64).reshape(-1)
        means = np.asarray(state["returns"], dtype=np.float64).reshape(-1)
        counts = np.asarray(state["counts"], dtype=np.int64).reshape(-1)
        if not len(steps) == len(means) == len(counts):
            raise ValueError(
                f"curve arrays differ in length: {len(steps)}, {len(means)}, {len(counts)}"
            )
        if np.any(counts < 1):
            raise ValueError("curve counts must be >= 1")
        sums = means * counts
        bucket = int(counts.max(initial=1))
        while len(steps) > self.max_points:
            steps, sums, counts = _merge_pairs(steps, sums, counts)
            bucket *= 2
        self._set_points(steps, sums, counts)
        self._bucket = bucket

    def clear(self) -> None:
        """Removes every point."""
        self._set_points(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
        self._bucket = 1

    def _open_point(self) -> int:
        """Index of the point new episodes go to, starting a new one when the newest is full."""
        if self._size > 0 and self._counts[self._size - 1] < self._bucket:
            return self._size - 1
        if self._size == self.max_points:
            n = self._size
            self._set_points(*_merge_pairs(self._steps[:n], self._sums[:n], self._counts[:n]))
            self._bucket *= 2
        self._size += 1
        return self._size - 1

    def _set_points(self, steps: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
        n = len(steps)
        self._steps[:n], self._sums[:n], self._counts[:n] = steps, sums, counts
        self._steps[n:], self._sums[n:], self._counts[n:] = 0, 0.0, 0
        self._size = n


def _merge_pairs(
    steps: np.ndarray, sums: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merges points 0 and 1, 2 and 3, ...; an odd last point stays alone.

    A merged point has the later step and the summed returns and counts of both.
    """
    paired = len(steps) // 2 * 2
    merged_steps = np.concatenate([steps[1:paired:2], steps[paired:]])
    merged_sums = np.concatenate([sums[0:paired:2] + sums[1:paired:2], sums[paired:]])
    merged_counts = np.concatenate([counts[0:paired:2] + counts[1:paired:2], counts[paired:]])
    return merged_steps, merged_sums, merged_counts
