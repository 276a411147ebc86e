"""Proportional priorities (Schaul et al. 2016) shared by the prioritized replays: the sum tree
over slots, priorities from TD errors, stratified draws, importance weights and the saved state.
:class:`~soulsai_ray.replay.PrioritizedReplayBuffer` keeps them per transition,
:class:`~soulsai_ray.prioritized_frames.PrioritizedFrameReplay` per frame slot."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "SumTree",
    "check_priority_exponents",
    "importance_weights",
    "priority_state",
    "stratified_draw",
    "td_priorities",
]


class SumTree:
    """Binary tree over `capacity` non-negative leaf values; each inner node holds its subtree sum.

    Leaves live at `[offset, offset + capacity)` of a flat array, with offset the next power of
    two, so a batch of updates or lookups costs a few numpy ops per level. Levels above the one
    with `top_width` nodes are left empty: lookups start with one cumulative-sum search over that
    level, which replaces ~10 per-level steps.
    """

    def __init__(self, capacity: int, top_width: int = 1024) -> None:
        """Creates a tree of zeros.

        Args:
            capacity: Number of leaves, >= 1.
            top_width: Width (a power of two) of the level searched with a cumulative sum.
        """
        if capacity < 1 or top_width < 1 or top_width & (top_width - 1):
            raise ValueError(f"need capacity >= 1, top_width a power of 2: {capacity}, {top_width}")
        self.capacity = capacity
        self._offset = 1 << (capacity - 1).bit_length()
        self._top = min(self._offset, top_width)
        self._depth = (self._offset // self._top).bit_length() - 1
        self._nodes = np.zeros(2 * self._offset, np.float64)
        self._top_cumsum: np.ndarray | None = None

    @staticmethod
    def bytes_for(capacity: int) -> int:
        """Bytes of a tree of ``capacity`` leaves (none allocated)."""
        return 2 * (1 << (capacity - 1).bit_length()) * np.dtype(np.float64).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the tree."""
        return self._nodes.nbytes

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._cumsum()[-1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Returns the leaf values at `indices`."""
        return self._nodes[np.asarray(indices) + self._offset]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Sets leaves `indices` to `values` (the last one wins for repeated indices)."""
        nodes = np.asarray(indices, np.int64) + self._offset
        self._nodes[nodes] = values
        for _ in range(self._depth):
            nodes >>= 1
            self._nodes[nodes] = self._nodes[2 * nodes] + self._nodes[2 * nodes + 1]
        self._top_cumsum = None

    def retrieve(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Returns, per s in [0, total), the smallest leaf i with sum(leaves[: i + 1]) > s."""
        cumsum = self._cumsum()
        values = np.array(prefix_sums, dtype=np.float64)
        first = np.minimum(cumsum.searchsorted(values, side="right"), self._top - 1)
        nodes = first + self._top
        values -= cumsum[first] - self._nodes[nodes]
        for _ in range(self._depth):
            nodes <<= 1
            left = self._nodes[nodes]
            go_right = values >= left
            values -= left * go_right
            nodes += go_right
        return nodes - self._offset

    def _cumsum(self) -> np.ndarray:
        """Cumulative sum over the top stored level, cached until the next update."""
        if self._top_cumsum is None:
            self._top_cumsum = np.cumsum(self._nodes[self._top : 2 * self._top])
        return self._top_cumsum


def check_priority_exponents(alpha: float, beta: float, eps: float) -> None:
    """Raises ValueError unless alpha >= 0, beta >= 0 and eps > 0."""
    if alpha < 0 or beta < 0 or eps <= 0:
        raise ValueError(f"need alpha >= 0, beta >= 0, eps > 0, got {alpha}, {beta}, {eps}")


def priority_state(buffer: Any, filled: int) -> dict[str, Any]:
    """What a prioritized replay saves beside its data: the priorities of its first ``filled``
    slots, its largest priority so far, alpha, beta and eps."""
    return {
        "priorities": buffer._tree.get(np.arange(filled)),
        "max_priority": buffer._max_priority,
        "alpha": buffer.alpha,
        "beta": buffer.beta,
        "eps": buffer.eps,
    }


def td_priorities(
    indices: np.ndarray, td_errors: np.ndarray, alpha: float, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``indices`` (int64) and their priorities ``(|td| + eps)**alpha``.

    Raises:
        ValueError: On mismatched shapes or non-finite TD errors.
    """
    indices = np.asarray(indices, np.int64)
    td = np.asarray(td_errors, np.float64)
    if indices.ndim != 1 or indices.shape != td.shape:
        raise ValueError(f"indices {indices.shape} and td_errors {td.shape} must be equal 1-D")
    if not np.isfinite(td).all():
        raise ValueError("td_errors contain NaN or inf")
    return indices, (np.abs(td) + eps) ** alpha


def stratified_draw(tree: SumTree, rng: np.random.Generator, size: int) -> np.ndarray:
    """Leaves drawn by priority, one from each of ``size`` equal slices of the total mass."""
    targets = (np.arange(size) + rng.random(size)) * (tree.total / size)
    return tree.retrieve(targets)


def importance_weights(tree: SumTree, indices: np.ndarray, beta: float) -> np.ndarray:
    """float32 (N P(i))**-beta of the drawn leaves, divided by the batch's largest (N, the
    number of transitions, cancels out)."""
    weights = (tree.get(indices) / tree.total) ** -beta
    return (weights / weights.max()).astype(np.float32)
