"""The life of every run, with Ray or without: start, step, evaluate, checkpoint, stop, finish.

A loop subclasses :class:`RunLoop` and fills in these hooks::

    build()             create what samples and learns (actors, or in-process parts)
    step()              one round of the loop's own work (scheduling, waiting, updating)
    watch(force, raise_lost)  look after the run's processes (a Ray loop counts restarts);
                        may raise ActorLost
    evaluate()          start or run a due evaluation (see `RunEvaluation`)
    checkpoint_state()  the learner (and replay) state to save; may raise ``state_errors``
    num_actors()        the rollout actors (or samplers) the run has
    actors_alive()      how many of them are up now
    summary_extra()     algorithm-specific entries of summary.json
    log_final()         the last scalars, written when the run ends
    close()             end what outlives the run (a Ray loop's actors)

:meth:`RunLoop.stop` is the one way to end a run early (signals, tests, tools): the loop finishes
the current step, writes a final checkpoint and the summary.
"""

from __future__ import annotations

import logging
from typing import Any

from soulsai_ray import metric_names as mn
from soulsai_ray.config import TrainConfig
from soulsai_ray.counts import BoundedCounts
from soulsai_ray.inbound import Rejection
from soulsai_ray.inbound_episodes import finite_episodes
from soulsai_ray.loops.common import Restore, RunRecorder, resume_state, stop_reason
from soulsai_ray.rejections import Rejections

logger = logging.getLogger(__name__)

LOST_EXIT_STATUS = 1


class StopDuringStartup(Exception):
    """A stop was requested before training began."""


class ActorLost(Exception):
    """An actor the run cannot go on without is dead for good (restarts exhausted)."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


class RunLoop:
    """Runs until a stop condition, :meth:`stop` or a lost actor; see the module doc."""

    algo_name = ""
    state_errors: tuple[type[BaseException], ...] = ()
    """Errors of :meth:`checkpoint_state` that skip a checkpoint instead of ending the run."""
    evaluation: Any
    """The run's evaluations and best checkpoints (`RunEvaluation`), set by the subclass."""

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        self.cfg, self.counters = resume_state(cfg, recorder, restore)
        self.algo = cfg.algo
        self.recorder = recorder
        self.resume_path = str(restore.path) if restore else None
        self.stop_requested: str | None = None
        """The reason for stopping after the current step, once :meth:`stop` was called."""
        self.exit_status = 0
        self.node_samples = BoundedCounts()
        self.rejections = Rejections(by_reason=self.counters.batches_rejected)
        """Rejected inbound data; by reason into the counters (and so into checkpoints)."""
        self._next_checkpoint = self.counters.updates + cfg.checkpoint.every_updates
        self._training = False

    # --- hooks --------------------------------------------------------------------------------

    def build(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def watch(self, force: bool = False, raise_lost: bool = True) -> None:
        """Looks after the run's processes (nothing to do in one process)."""

    def evaluate(self) -> None:
        raise NotImplementedError

    def checkpoint_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def num_actors(self) -> int:
        raise NotImplementedError

    def actors_alive(self) -> int:
        raise NotImplementedError

    def summary_extra(self) -> dict[str, Any]:
        return {}

    def log_final(self) -> None:
        """Writes the last scalars, once the final counts are in (called by :meth:`finish`)."""

    def close(self) -> None:
        """Ends what the run started that outlives :meth:`run` (nothing in one process)."""

    # --- the run ------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> bool:
        """Asks the run to stop after the current step; returns False if a stop was already
        asked for (the first reason is kept)."""
        if self.stop_requested is not None:
            return False
        self.stop_requested = reason
        return True

    def run(self) -> dict[str, Any]:
        """Trains until a stop condition; returns the run summary."""
        try:
            if self.stop_requested is not None:  # a signal arrived while the run started
                raise StopDuringStartup
            self.build()
        except StopDuringStartup:
            logger.warning("stopped (%s) before training began", self.stop_requested)
            return self.finish(str(self.stop_requested), checkpoint=False)
        self._training = True
        reason = None
        try:
            while reason is None:
                self.step()
                self.evaluate()
                self.watch()
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
        returns, lengths, metrics, dropped = finite_episodes(
            returns, lengths, metrics, self.cfg.env
        )
        if dropped:
            detail = f"{dropped} episode(s) with a return out of bounds, a bad length or metrics"
            self.rejections.record(Rejection("episode", detail), 0, actor_index, node_id)
        c.episodes += len(returns)
        self.recorder.record_episodes(c.env_steps, returns, lengths, metrics)
        return env_steps

    @property
    def samples_by_node(self) -> dict[str, int]:
        """Samples accepted per node (bounded: long-gone nodes fold into ``other``)."""
        return self.node_samples.as_dict()

    def console_head(self) -> dict[str, float | int | None]:
        """The console fields every loop shows first: return and win rate (where the env reports
        wins), the last evaluation's score, and rollout actors alive."""
        means = self.recorder.telemetry.episode_means()
        head: dict[str, float | int | None] = {"ret": means.get(mn.EPISODE_RETURN_MEAN)}
        if mn.EPISODE_WIN_RATE in means:
            head["win"] = means[mn.EPISODE_WIN_RATE]
        if self.evaluation.last is not None:
            head["eval"] = self.evaluation.last.get(self.cfg.eval.metric)
        return {**head, "alive": self.actors_alive()}

    def record_scalars(self, scalars: dict[str, float | int | None]) -> None:
        """Writes ``scalars`` and the per-node sample counts to TensorBoard and Prometheus."""
        self.recorder.record_scalars(self.counters.env_steps, scalars, self.samples_by_node)

    # --- checkpoints and the end --------------------------------------------------------------

    def maybe_checkpoint(self, force: bool = False) -> None:
        """Writes a checkpoint every ``checkpoint.every_updates`` updates (or now if ``force``).

        A failed write (disk full, permissions) is counted and logged by the run's `WriteGuard`
        and tried again at the next interval; the checkpoints already on disk are never touched
        by it.
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
        except self.state_errors as err:
            logger.error("checkpoint skipped: the learner or replay did not answer (%s)", err)
            return False
        self.counters.weight_version = max(self.counters.weight_version, state["version"])
        written = self.recorder.writes.attempt(
            "checkpoint",
            lambda: self.recorder.save_checkpoint(
                self.counters, {**state, **(extra or {})}, score, self.evaluation.metric
            ),
        )
        if not written:
            return False
        self.evaluation.best.written(score)  # summary.json's best_score names checkpoints/best
        return True

    def finish(self, reason: str, checkpoint: bool = True) -> dict[str, Any]:
        """Final counts, checkpoint (once training has begun), summary.json and learning curve."""
        if self._training:
            self.watch(force=True, raise_lost=False)
            self.log_final()
            if checkpoint:
                self.maybe_checkpoint(force=True)
        extra = {
            "algo": self.algo_name,
            "env": self.cfg.env.id,
            "title": f"{self.algo_name.upper()} on {self.cfg.env.id}",
            "actors": self.num_actors(),
            "samples_by_node": self.samples_by_node,
            "rejected_by_node": self.rejections.by_node.as_dict(),
            "exit_status": self.exit_status,
            **self.evaluation.summary(),
            **self.summary_extra(),
        }
        return self.recorder.finish(self.counters, reason, extra)
