"""What every training loop on Ray does the same way: start its actors, watch them, stop.

A Ray loop subclasses :class:`TrainingLoop` (itself a `RunLoop`, which owns the run's life:
steps, stop, checkpoints, summary) and fills in these hooks::

    build()             create the actors (self.fleet and self.singletons included)
    step()              one round of the loop's own work (scheduling, waiting, updating)
    on_restart(role)    an actor of ``role`` (learner, replay, weights) was restarted by Ray
    checkpoint_state()  the learner (and replay) state to save; may raise Ray errors
    eval_weights()      ``(version, [ref])`` of the newest published weights, for evaluation
    summary_extra()     algorithm-specific entries of summary.json
    log_final()         the last scalars, written when the run ends

Faults handled here for both algorithms: start-up waits that log what they wait for, restarts
of every actor counted from the GCS, and a learner, replay or weight store gone for good (the
run ends with a summary and exit status 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayError

from soulsai_ray import metric_names as mn
from soulsai_ray.calls import NodeMembership
from soulsai_ray.cluster import actor_status, alive_nodes
from soulsai_ray.config import TrainConfig
from soulsai_ray.envs.factory import EnvSpec
from soulsai_ray.loops.common import Restore, RunRecorder
from soulsai_ray.loops.evaluation import RunEvaluation
from soulsai_ray.loops.fleet import RolloutFleet
from soulsai_ray.loops.lifecycle import ActorLost, RunLoop, StopDuringStartup

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 300.0
"""Longest wait for an actor to start on a local Ray (a remote one waits for game PCs forever)."""
STATE_TIMEOUT_S = 120.0
WAIT_LOG_EVERY_S = 30.0
WATCH_EVERY_S = 1.0
ACTOR_ERRORS = (RayError,)


def get_when_available(call: Callable[[], ray.ObjectRef], timeout_s: float) -> Any:
    """``ray.get`` of ``call()``, re-issued while the actor is restarting, until ``timeout_s``.

    Only for calls that are safe to repeat (reads such as ``ready`` or ``state``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(call(), timeout=max(deadline - time.monotonic(), 0.1))
        except ActorUnavailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class TrainingLoop(RunLoop):
    """A run whose samplers and learner are Ray actors; see the module doc."""

    fleet: RolloutFleet
    singletons: dict[str, Any]
    """The actors of which the run has one (``learner``, ``replay``, ``weights``), by role."""
    state_errors = ACTOR_ERRORS

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        super().__init__(cfg, recorder, restore)
        self.singletons = {}
        self._last_watch = 0.0
        self._restarts_seen: dict[str, int] = {}
        c = self.counters  # restarts before a resume are kept; the new run counts on top
        self._restarts_before = {
            "rollout": c.actor_restarts,
            "learner": c.learner_restarts,
            "replay": c.replay_restarts,
            "weights": c.weight_store_restarts,
        }
        self._failures_before, self._stalls_before = c.actor_failures, c.env_stalls
        self.nodes = NodeMembership()
        self._nodes_before = (c.nodes_joined, c.nodes_lost)
        self.evaluation = RunEvaluation(self)
        """Evaluations during training and the best checkpoint; sees every fleet outcome first."""

    def on_restart(self, role: str) -> None:
        """Called once per restart of the singleton actor ``role``."""

    def eval_weights(self) -> tuple[int, list[Any]]:
        raise NotImplementedError

    def run(self) -> dict[str, Any]:
        """Trains until a stop condition; returns the run summary."""
        if self.stop_requested is None:
            self._watch_nodes()  # the nodes there at the start; later ones count as joined
        return super().run()

    def evaluate(self) -> None:
        self.evaluation.maybe_start()

    def num_actors(self) -> int:
        return len(self.fleet) if hasattr(self, "fleet") else 0

    def actors_alive(self) -> int:
        return self.fleet.num_alive

    def all_actors(self) -> list[Any]:
        """Every actor handle of the run (rollout actors first)."""
        fleet = self.fleet.actors if hasattr(self, "fleet") else []
        return [*fleet, *self.singletons.values()]

    def close(self) -> None:
        """Ends every actor of the run (for good: Ray does not restart them)."""
        for actor in self.all_actors():
            ray.kill(actor)

    # --- start-up -----------------------------------------------------------------------------

    def wait_for(self, ref: ray.ObjectRef, what: str) -> Any:
        """Waits for a start-up call, heeding stop requests and logging every 30 s.

        On a local Ray it gives up after ``STARTUP_TIMEOUT_S``; joined to a cluster it waits
        for as long as it takes (game PCs may join later).
        """
        start = last_log = time.monotonic()
        local = self.cfg.cluster.address is None
        while True:
            if self.stop_requested is not None:
                raise StopDuringStartup
            ready, _ = ray.wait([ref], timeout=0.5)
            if ready:
                return ray.get(ref)
            now = time.monotonic()
            if local and now - start > STARTUP_TIMEOUT_S:
                raise RuntimeError(f"{what} did not start within {STARTUP_TIMEOUT_S:.0f}s")
            if now - last_log >= WAIT_LOG_EVERY_S:
                last_log = now
                logger.warning("still waiting (%.0fs) for %s", now - start, what)

    def probe_spec(self) -> EnvSpec:
        """The env's sizes, read from the first rollout actor (only game PCs can create SoulsGym)."""
        resources = self.cfg.env.actor_resources
        what = "the first rollout actor" + (
            f" (it needs a node offering env.actor_resources={dict(resources)}; join a game PC "
            "with scripts/join_cluster.sh or join_cluster.ps1)"
            if resources
            else ""
        )
        return self.wait_for(self.fleet.actors[0].spec.remote(), what)

    # --- faults -------------------------------------------------------------------------------

    def watch(self, force: bool = False, raise_lost: bool = True) -> None:
        """Counts restarts of every actor (from the GCS) and ends the run if one is gone for good.

        Raises:
            ActorLost: a singleton actor is dead for good (unless ``raise_lost`` is False).
        """
        now = time.monotonic()
        if not force and now - self._last_watch < WATCH_EVERY_S:
            return
        self._last_watch = now
        lost = None
        for role, handle in self.singletons.items():
            status = actor_status(handle)
            if status is None:
                continue
            seen = self._restarts_seen.get(role, 0)
            self._restarts_seen[role] = status.restarts
            if status.gone:
                lost = lost or role
            elif status.restarts > seen:
                logger.warning("the %s actor was restarted by Ray", role)
                self.on_restart(role)
        self._restarts_seen["rollout"] = self.fleet.restarts()
        c, before, seen = self.counters, self._restarts_before, self._restarts_seen
        c.actor_restarts = before["rollout"] + seen.get("rollout", 0)
        c.learner_restarts = before["learner"] + seen.get("learner", 0)
        c.replay_restarts = before["replay"] + seen.get("replay", 0)
        c.weight_store_restarts = before["weights"] + seen.get("weights", 0)
        c.actor_failures = self._failures_before + self.fleet.failures
        c.env_stalls = self._stalls_before + self.fleet.stalls
        self._watch_nodes()
        if lost is not None and raise_lost:
            raise ActorLost(lost)

    def _watch_nodes(self) -> None:
        """Counts (and logs) the nodes that joined or were lost since the last look."""
        alive = alive_nodes()
        if alive is None:
            return
        joined, lost = self.nodes.update(alive)
        for address in joined:
            logger.info("a node joined the cluster: %s", address)
        for address in lost:
            logger.warning("a node left the cluster or was declared dead: %s", address)
        c = self.counters
        c.nodes_joined = self._nodes_before[0] + self.nodes.joined
        c.nodes_lost = self._nodes_before[1] + self.nodes.lost

    def common_scalars(self) -> dict[str, float | int]:
        """Telemetry every loop writes: fleet and node health, then the counters' own."""
        return {
            mn.DIST_ACTORS_ALIVE: self.fleet.num_alive,
            mn.DIST_ACTORS: len(self.fleet),
            mn.DIST_NODES_ALIVE: self.nodes.num_alive,
            **self.counters.scalars(),
        }
