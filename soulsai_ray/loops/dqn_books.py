"""The asynchronous DQN driver's books: metrics between two telemetry writes, replay's sample
counts carried across replay restarts, and weight-sync latency percentiles. None of it needs Ray."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soulsai_ray.loops.common import RunCounters


@dataclass
class IntervalStats:
    """Metrics accumulated between two telemetry writes."""

    start: float = field(default_factory=time.monotonic)
    env_steps: int = 0
    updates: int = 0
    losses: list[float] = field(default_factory=list)
    q_means: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    sync_latencies: list[float] = field(default_factory=list)


def mean_or_none(values: list[float]) -> float | None:
    """The mean of ``values``; None (no point on the curve) when there are none."""
    return sum(values) / len(values) if values else None


_COUNT_KEYS = ("accepted", "stale", "invalid", "lag_sum")
_MAP_KEYS = ("accepted_by_node", "rejected_by_reason", "rejected_by_node")


class ReplayCounts:
    """Keeps the run's sample counters equal to replay's own, across replay restarts.

    Replay counts from 0 after every (re)start (a new ``incarnation``); what an earlier one
    counted stays in the run's totals.
    """

    def __init__(self, counters: RunCounters) -> None:
        self.counters = counters
        c = counters
        self._base = {
            "accepted": c.samples_accepted,
            "stale": c.samples_stale,
            "invalid": c.samples_invalid,
            "lag_sum": c.model_lag_sum,
        }
        self._last = dict.fromkeys(_COUNT_KEYS, 0)
        self._last_maps: dict[str, dict[str, int]] = {key: {} for key in _MAP_KEYS}
        self.incarnation: str | None = None

    def update(self, stats: dict[str, Any]) -> dict[str, dict[str, int]]:
        """Applies replay's cumulative counts.

        Returns:
            For each of ``accepted_by_node``, ``rejected_by_reason`` and ``rejected_by_node``,
            what was added since the last call.
        """
        if stats["incarnation"] != self.incarnation:
            for key in _COUNT_KEYS:
                self._base[key] += self._last[key]
            self._last = dict.fromkeys(_COUNT_KEYS, 0)
            self._last_maps = {key: {} for key in _MAP_KEYS}
            self.incarnation = str(stats["incarnation"])
        self._last = {key: int(stats[key]) for key in _COUNT_KEYS}
        total = {key: self._base[key] + self._last[key] for key in _COUNT_KEYS}
        c = self.counters
        c.samples_accepted = c.model_lag_samples = total["accepted"]
        c.samples_stale, c.samples_invalid = total["stale"], total["invalid"]
        c.model_lag_sum = total["lag_sum"]
        deltas = {}
        for key in _MAP_KEYS:
            last, now = self._last_maps[key], stats[key]
            deltas[key] = {k: v - last.get(k, 0) for k, v in now.items() if v > last.get(k, 0)}
            self._last_maps[key] = dict(now)
        return deltas


def latency_percentiles(latencies: deque[float]) -> dict[str, float | None]:
    """p50/p99 of the time from a weight publish until a rollout actor installed it."""
    if not latencies:
        return {"weight_sync_p50_s": None, "weight_sync_p99_s": None}
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"weight_sync_p50_s": float(p50), "weight_sync_p99_s": float(p99)}
