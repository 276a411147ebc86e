"""Counting and logging what the inbound checks (:mod:`soulsai_ray.inbound`) rejected: by reason and
by node, with the sending actor named in a log line that never floods the log."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from soulsai_ray.counts import BoundedCounts
from soulsai_ray.inbound import REASONS, Rejection

logger = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
"""A rejection of the same reason from the same actor is logged at most this often."""


class Rejections:
    """Counts rejected batches by reason and by node; logs them without flooding the log."""

    def __init__(
        self, by_reason: dict[str, int] | None = None, log_every_s: float = LOG_EVERY_S
    ) -> None:
        """Args:
        by_reason: The dict to count reasons in (e.g. the run's counters); a new one if None.
        log_every_s: See `LOG_EVERY_S`.
        """
        self.log_every_s = log_every_s
        self.rows = 0
        self.by_reason = {} if by_reason is None else by_reason
        self.by_node = BoundedCounts()
        self._logged: dict[tuple[int, str], float] = {}
        self._suppressed: dict[tuple[int, str], int] = {}

    def record(self, rejection: Rejection, rows: int, actor_index: int, node_id: str) -> str:
        """Counts one rejected batch and logs it (rate-limited per actor and reason).

        Returns:
            The log message, naming the sending actor and node.
        """
        self.merge({rejection.reason: 1}, {node_id or "unknown": 1}, rows)
        message = (
            f"rejected a batch from rollout actor {actor_index} on node {node_id[:12] or '?'}: "
            f"{rejection.reason}: {rejection.detail}"
        )
        key = (actor_index, rejection.reason)
        now = time.monotonic()
        if now - self._logged.get(key, -math.inf) >= self.log_every_s:
            suppressed = self._suppressed.pop(key, 0)
            more = f" ({suppressed} more like it since the last report)" if suppressed else ""
            logger.error("%s%s", message, more)
            self._logged[key] = now
            if len(self._logged) > 4 * len(REASONS) * 64:  # bound the memory of actors gone
                oldest = min(self._logged, key=self._logged.__getitem__)
                del self._logged[oldest]
                self._suppressed.pop(oldest, None)
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return message

    def merge(self, by_reason: dict[str, int], by_node: dict[str, int], rows: int = 0) -> None:
        """Adds counts made elsewhere (another process's `as_dict` deltas), without logging."""
        self.rows += rows
        for reason, n in by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + n
        for node, n in by_node.items():
            self.by_node.add(node, n)

    def as_dict(self) -> dict[str, Any]:
        """Rows rejected, batches by reason and by node."""
        return {
            "rows": self.rows,
            "by_reason": dict(self.by_reason),
            "by_node": self.by_node.as_dict(),
        }


def batch_rows(batch: Any) -> int:
    """Steps in a batch that may be malformed (0 when it has no readable ``actions`` array)."""
    actions = getattr(batch, "actions", None)
    return int(actions.size) if isinstance(actions, np.ndarray) else 0
