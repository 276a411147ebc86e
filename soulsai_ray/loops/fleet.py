"""The set of rollout actors of a run: creation, placement, liveness and elastic scaling."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import ray

from soulsai_ray.config import TrainConfig

logger = logging.getLogger(__name__)

SCALE_CHECK_EVERY_S = 2.0


def resource_slots(resources: dict[str, float]) -> int:
    """How many actors needing ``resources`` the cluster's nodes can host in total."""
    totals = ray.cluster_resources()
    return min(
        math.floor(totals.get(name, 0.0) / amount + 1e-9) for name, amount in resources.items()
    )


class RolloutFleet:
    """Creates rollout actors and keeps their number at the configured (or ``auto``) size.

    With ``cluster.num_rollout_actors: auto`` there is one actor per slot of the resources in
    ``env.actor_resources``: a game PC that joins gets an actor within ``SCALE_CHECK_EVERY_S``.
    Actors are restarted by Ray (``cluster.actor_max_restarts``); one whose node died waits for the
    resource to come back. An actor counts as alive while its latest call succeeded.
    """

    def __init__(self, cfg: TrainConfig, make_actor: Callable[[Any, int, int], Any]) -> None:
        """Args:
        cfg: The run config.
        make_actor: ``(actor_class_options, index, num_actors) -> handle``; receives Ray options
            (CPUs, custom resources, restarts) already applied to nothing: it must call
            ``.options(**options)`` on its actor class itself.
        """
        self.cfg = cfg
        self._make_actor = make_actor
        self.auto = cfg.cluster.num_rollout_actors == "auto"
        self.actors: list[Any] = []
        self.alive: dict[int, bool] = {}
        self._last_scale_check = 0.0

    @property
    def options(self) -> dict[str, Any]:
        """Ray options every rollout actor is created with."""
        cluster = self.cfg.cluster
        return {
            "num_cpus": cluster.rollout_num_cpus,
            "resources": dict(self.cfg.env.actor_resources) or None,
            "max_restarts": cluster.actor_max_restarts,
        }

    def target_size(self) -> int:
        """The number of actors the fleet should have now."""
        if not self.auto:
            return int(self.cfg.cluster.num_rollout_actors)
        return max(resource_slots(self.cfg.env.actor_resources), 1)

    def start(self) -> None:
        """Creates the initial actors."""
        self._grow(self.target_size())

    def maybe_scale(self) -> list[int]:
        """In ``auto`` mode, adds actors for new resource slots; returns the new indices."""
        now = time.monotonic()
        if not self.auto or now - self._last_scale_check < SCALE_CHECK_EVERY_S:
            return []
        self._last_scale_check = now
        return self._grow(self.target_size())

    def mark(self, index: int, ok: bool) -> bool:
        """Records the outcome of actor ``index``'s latest call; True if it just went down.

        Calls that fail while the actor is already down (restarting, or waiting for its node)
        belong to the same failure.
        """
        went_down = not ok and self.alive.get(index, True)
        if went_down:
            logger.warning(
                "rollout actor %d failed; Ray restarts it when its resources are available", index
            )
        self.alive[index] = ok
        return went_down

    @property
    def num_alive(self) -> int:
        """Actors whose latest call succeeded (new actors count as alive)."""
        return sum(self.alive.get(i, True) for i in range(len(self.actors)))

    def __len__(self) -> int:
        return len(self.actors)

    def _grow(self, size: int) -> list[int]:
        new = list(range(len(self.actors), size))
        for index in new:
            self.actors.append(self._make_actor(self.options, index, size))
        if new and self.auto:
            logger.info("rollout fleet grew to %d actors", size)
        return new
