"""What every training loop does the same way: start, watch its actors, stop, checkpoint, finish.

A loop subclasses :class:`TrainingLoop` and fills in these hooks::

    build()             create the actors (self.fleet and self.singletons included)
    step()              one round of the loop's own work (scheduling, waiting, updating)
    on_restart(role)    an actor of ``role`` (learner, replay, weights) was restarted by Ray
    checkpoint_state()  the learner (and replay) state to save; may raise Ray errors
    eval_weights()      ``(version, [ref])`` of the newest published weights, for evaluation
    summary_extra()     algorithm-specific entries of summary.json
    log_final()         the last scalars, written when the run ends

Faults handled here for both algorithms: a stop request (signal) in any phase, start-up waits
that log what they wait for, restarts of every actor counted from the GCS, a learner, replay or
weight store gone for good (the run ends with a summary and exit status 1), and periodic
checkpoints that fail (counted, retried at the next interval).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayError

from soulsai_ray.calls import NodeMembership
from soulsai_ray.cluster import actor_status, alive_nodes
from soulsai_ray.config import TrainConfig
from soulsai_ray.counts import BoundedCounts
from soulsai_ray.envs import EnvSpec
from soulsai_ray.inbound import Rejection, Rejections, finite_episodes
from soulsai_ray.loops.common import Restore, RunRecorder, resume_state, stop_reason
from soulsai_ray.loops.evaluation import RunEvaluation
from soulsai_ray.loops.fleet import RolloutFleet

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 300.0
"""Longest wait for an actor to start on a local Ray (a remote one waits for game PCs forever)."""
STATE_TIMEOUT_S = 120.0
WAIT_LOG_EVERY_S = 30.0
WATCH_EVERY_S = 1.0
ACTOR_ERRORS = (RayError,)
LOST_EXIT_STATUS = 1


class StopDuringStartup(Exception):
    """A stop was requested before training began."""


class ActorLost(Exception):
    """An actor the run cannot go on without is dead for good (restarts exhausted)."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


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
    """Runs until a stop condition, a stop request (signal) or a lost actor; see the module doc."""

    algo_name = ""
    fleet: RolloutFleet
    singletons: dict[str, Any]
    """The actors of which the run has one (``learner``, ``replay``, ``weights``), by role."""

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        self.cfg, self.counters = resume_state(cfg, recorder, restore)
        self.algo = cfg.algo
        self.recorder = recorder
        self.resume_path = str(restore.path) if restore else None
        self.stop_requested: str | None = None
        """Set (e.g. by a signal handler) to the reason for stopping after the current step."""
        self.exit_status = 0
        self.singletons = {}
        self.node_samples = BoundedCounts()
        self.rejections = Rejections(by_reason=self.counters.batches_rejected)
        """Rejected inbound data; by reason into the counters (and so into checkpoints)."""
        self._next_checkpoint = self.counters.updates + cfg.checkpoint.every_updates
        self._training = False
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

    def build(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def on_restart(self, role: str) -> None:
        """Called once per restart of the singleton actor ``role``."""

    def checkpoint_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def eval_weights(self) -> tuple[int, list[Any]]:
        raise NotImplementedError

    def summary_extra(self) -> dict[str, Any]:
        return {}

    def log_final(self) -> None:
        """Writes the last scalars, once the final counts are in (called by :meth:`finish`)."""

    def run(self) -> dict[str, Any]:
        """Trains until a stop condition; returns the run summary."""
        try:
            if self.stop_requested is not None:  # a signal arrived while Ray started
                raise StopDuringStartup
            self._watch_nodes()  # the nodes there at the start; later ones count as joined
            self.build()
        except StopDuringStartup:
            logger.warning("stopped (%s) before training began", self.stop_requested)
            return self.finish(str(self.stop_requested), checkpoint=False)
        self._training = True
        reason = None
        try:
            while reason is None:
                self.step()
                self.evaluation.maybe_start()
                self.watch_actors()
                self.maybe_checkpoint()
                self.evaluation.maybe_save_best()
                reason = self.stop_requested or stop_reason(
                    self.cfg.stop,
                    self.counters,
                    self.recorder.telemetry.return_mean,
                    self.recorder.elapsed_s,
                )
        except ActorLost as lost:
            logger.error(
                "the %s actor is dead for good (cluster.actor_max_restarts=%d exhausted); "
                "ending the run",
                lost.role,
                self.cfg.cluster.actor_max_restarts,
            )
            self.exit_status = LOST_EXIT_STATUS
            return self.finish(f"{lost.role}_lost", checkpoint=False)
        return self.finish(reason)

    @property
    def checkpoint_dir(self) -> str:
        """Where this run's checkpoints live (learner and replay restore from here)."""
        return str(self.recorder.checkpoints.root)

    def all_actors(self) -> list[Any]:
        """Every actor handle of the run (rollout actors first)."""
        fleet = self.fleet.actors if hasattr(self, "fleet") else []
        return [*fleet, *self.singletons.values()]

    def accept_report(
        self,
        actor_index: int,
        node_id: str,
        env_steps: Any,
        returns: Any,
        lengths: Any,
        metrics: Any = None,
    ) -> int:
        """Counts a rollout actor's report of steps and finished episodes; returns its steps.

        A step count that is not a non-negative int counts as 0; episodes whose return is not a
        finite number (or length not a positive int, or episode metrics that fail
        `episode_metrics_problem`) never reach the window's means or a stop condition. Both are
        counted as rejected and logged naming the actor.
        """
        c = self.counters
        if isinstance(env_steps, bool) or not isinstance(env_steps, int) or env_steps < 0:
            problem = Rejection("type", f"reported env_steps={env_steps!r}")
            self.rejections.record(problem, 0, actor_index, node_id)
            env_steps = 0
        c.env_steps += env_steps
        if not isinstance(returns, list | tuple) or not isinstance(lengths, list | tuple):
            problem = Rejection("episode", "episode returns or lengths are not lists")
            self.rejections.record(problem, 0, actor_index, node_id)
            return env_steps
        returns, lengths, metrics, dropped = finite_episodes(returns, lengths, metrics)
        if dropped:
            detail = f"{dropped} episode(s) with a non-finite return, a bad length or bad metrics"
            self.rejections.record(Rejection("episode", detail), 0, actor_index, node_id)
        c.episodes += len(returns)
        self.recorder.record_episodes(c.env_steps, returns, lengths, metrics)
        return env_steps

    @property
    def samples_by_node(self) -> dict[str, int]:
        """Samples accepted per node (bounded: long-gone nodes fold into ``other``)."""
        return self.node_samples.as_dict()

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

    def watch_actors(self, force: bool = False, raise_lost: bool = True) -> None:
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
            "dist/actors_alive": self.fleet.num_alive,
            "dist/actors": len(self.fleet),
            "dist/nodes_alive": self.nodes.num_alive,
            **self.counters.scalars(),
        }

    def console_head(self) -> dict[str, float | int | None]:
        """The console fields every loop shows first: return and win rate (where the env reports
        wins), the last evaluation's score, and rollout actors alive."""
        means = self.recorder.telemetry.episode_means()
        head: dict[str, float | int | None] = {"ret": means.get("episode/return_mean")}
        if "episode/win_rate" in means:
            head["win"] = means["episode/win_rate"]
        if self.evaluation.last is not None:
            head["eval"] = self.evaluation.last.get(self.cfg.eval.metric)
        return {**head, "alive": self.fleet.num_alive}

    def record_scalars(self, scalars: dict[str, float | int | None]) -> None:
        """Writes ``scalars`` and the per-node sample counts to TensorBoard and Prometheus."""
        self.recorder.record_scalars(self.counters.env_steps, scalars, self.samples_by_node)

    # --- checkpoints and the end --------------------------------------------------------------

    def maybe_checkpoint(self, force: bool = False) -> None:
        """Writes a checkpoint every ``checkpoint.every_updates`` updates (or now if ``force``).

        A failed write (disk full, permissions) is logged and counted, and tried again at the
        next interval; the checkpoints already on disk are never touched by it.
        """
        if not force and self.counters.updates < self._next_checkpoint:
            return
        every = self.cfg.checkpoint.every_updates
        self._next_checkpoint = (self.counters.updates // every + 1) * every
        self.write_checkpoint(self.evaluation.periodic_score())

    def write_checkpoint(self, score: float | None, extra: dict[str, Any] | None = None) -> bool:
        """Writes a checkpoint of the learner (and replay) now; returns whether it was written.

        Args:
            score: Its score of the best-checkpoint metric (see `RunEvaluation`), if any.
            extra: More payload, e.g. the exact weights an evaluation played.
        """
        try:
            state = self.checkpoint_state()
        except ACTOR_ERRORS as err:
            logger.error("checkpoint skipped: the learner or replay did not answer (%s)", err)
            return False
        self.counters.weight_version = max(self.counters.weight_version, state["version"])
        try:
            self.recorder.save_checkpoint(
                self.counters, {**state, **(extra or {})}, score, self.evaluation.metric
            )
        except OSError as err:
            self.counters.checkpoint_failures += 1
            logger.error(
                "checkpoint failed (%s); training goes on and the next one is tried in %d updates",
                err,
                self.cfg.checkpoint.every_updates,
            )
            return False
        return True

    def finish(self, reason: str, checkpoint: bool = True) -> dict[str, Any]:
        """Final counts, checkpoint (once training has begun), summary.json and learning curve."""
        if self._training:
            self.watch_actors(force=True, raise_lost=False)
            self.log_final()
            if checkpoint:
                self.maybe_checkpoint(force=True)
        extra = {
            "algo": self.algo_name,
            "env": self.cfg.env.id,
            "title": f"{self.algo_name.upper()} on {self.cfg.env.id}",
            "actors": len(self.fleet) if hasattr(self, "fleet") else 0,
            "samples_by_node": self.samples_by_node,
            "rejected_by_node": self.rejections.by_node.as_dict(),
            "exit_status": self.exit_status,
            **self.evaluation.summary(),
            **self.summary_extra(),
        }
        return self.recorder.finish(self.counters, reason, extra)
