"""What every training loop does the same way: start, stop, checkpoint, finish.

A loop subclasses :class:`TrainingLoop` and fills in four hooks::

    build()             create the actors (the fleet of rollout actors included)
    step()              one round of the loop's own work (scheduling, waiting, updating)
    checkpoint_state()  the learner (and replay) state to save; may raise Ray errors
    summary_extra()     algorithm-specific entries of summary.json
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError

from soulsai_ray.config import TrainConfig
from soulsai_ray.envs import EnvSpec
from soulsai_ray.loops.common import Restore, RunRecorder, resume_state, stop_reason
from soulsai_ray.loops.fleet import RolloutFleet

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 300.0
STATE_TIMEOUT_S = 120.0
ACTOR_ERRORS = (RayActorError, RayTaskError, GetTimeoutError)


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


class TrainingLoop:
    """Runs until a stop condition, a stop request (signal) or an error; see the module docstring."""

    algo_name = ""
    fleet: RolloutFleet

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        self.cfg, self.counters = resume_state(cfg, recorder, restore)
        self.algo = cfg.algo
        self.recorder = recorder
        self.resume_path = str(restore.path) if restore else None
        self.stop_requested: str | None = None
        """Set (e.g. by a signal handler) to the reason for stopping after the current step."""
        self.samples_by_node: dict[str, int] = {}
        self._next_checkpoint = self.counters.updates + cfg.checkpoint.every_updates
        c = self.counters  # restarts before a resume are kept; the new run counts on top
        self._restarts_before = (c.actor_restarts, c.learner_restarts, c.replay_restarts)

    def build(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def checkpoint_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def summary_extra(self) -> dict[str, Any]:
        return {}

    def run(self) -> dict[str, Any]:
        """Trains until a stop condition; returns the run summary."""
        self.build()
        reason = None
        while reason is None:
            self.step()
            self.maybe_checkpoint()
            reason = self.stop_requested or stop_reason(
                self.cfg.stop,
                self.counters,
                self.recorder.telemetry.return_mean,
                self.recorder.elapsed_s,
            )
        return self.finish(reason)

    @property
    def checkpoint_dir(self) -> str:
        """Where this run's checkpoints live (learner and replay restore from here)."""
        return str(self.recorder.checkpoints.root)

    def probe_spec(self) -> EnvSpec:
        """The env's sizes, read from the first rollout actor (only game PCs can create SoulsGym)."""
        try:
            return ray.get(self.fleet.actors[0].spec.remote(), timeout=STARTUP_TIMEOUT_S)
        except GetTimeoutError as err:
            raise RuntimeError(
                f"no rollout actor started within {STARTUP_TIMEOUT_S:.0f}s; does the cluster offer "
                f"the resources env.actor_resources={self.cfg.env.actor_resources} asks for?"
            ) from err

    def count_samples(self, node_id: str, samples: int) -> None:
        """Adds to the per-node sample count shown in telemetry."""
        self.samples_by_node[node_id] = self.samples_by_node.get(node_id, 0) + samples

    def common_scalars(self) -> dict[str, float | int]:
        """Telemetry every loop writes: fleet health, faults, bad data, progress, per-node samples."""
        c = self.counters
        return {
            "dist/actors_alive": self.fleet.num_alive,
            "dist/actors": len(self.fleet),
            "dist/actor_failures": c.actor_failures,
            "dist/learner_failures": c.learner_failures,
            "dist/samples_rejected": c.samples_stale,
            "dist/samples_invalid": c.samples_invalid,
            "dist/weight_version": c.weight_version,
            "train/nan_rollbacks": c.nan_rollbacks,
            "env/errors": c.env_errors,
            "progress/updates": c.updates,
            "progress/episodes": c.episodes,
            **{f"dist/node_samples/{node[:12]}": n for node, n in self.samples_by_node.items()},
            **self.restart_scalars(),
        }

    def restart_scalars(self) -> dict[str, int]:
        """Restarts of rollout actors, learner and replay (counted by the weight store)."""
        try:
            restarts = ray.get(self.weight_store.restarts.remote(), timeout=10.0)
        except ACTOR_ERRORS:
            restarts = {}
        c, (actors, learner, replay) = self.counters, self._restarts_before
        c.actor_restarts = max(c.actor_restarts, actors + restarts.get("rollout", 0))
        c.learner_restarts = max(c.learner_restarts, learner + restarts.get("learner", 0))
        c.replay_restarts = max(c.replay_restarts, replay + restarts.get("replay", 0))
        return {
            "dist/actor_restarts": c.actor_restarts,
            "dist/learner_restarts": c.learner_restarts,
            "dist/replay_restarts": c.replay_restarts,
        }

    def maybe_checkpoint(self, force: bool = False) -> None:
        """Writes a checkpoint every ``checkpoint.every_updates`` updates (or now if ``force``)."""
        if not force and self.counters.updates < self._next_checkpoint:
            return
        every = self.cfg.checkpoint.every_updates
        self._next_checkpoint = (self.counters.updates // every + 1) * every
        try:
            state = self.checkpoint_state()
        except ACTOR_ERRORS as err:
            logger.error("checkpoint skipped: the learner or replay did not answer (%s)", err)
            return
        self.counters.weight_version = state["version"]
        self.recorder.save_checkpoint(self.counters, state)

    def finish(self, reason: str) -> dict[str, Any]:
        """Final checkpoint, summary.json and learning curve."""
        self.maybe_checkpoint(force=True)
        extra = {
            "algo": self.algo_name,
            "env": self.cfg.env.id,
            "title": f"{self.algo_name.upper()} on {self.cfg.env.id}",
            "actors": len(self.fleet),
            "samples_by_node": self.samples_by_node,
            **self.summary_extra(),
        }
        return self.recorder.finish(self.counters, reason, extra)
