"""Evaluation during training and the best checkpoint (the driver's books; calls go through
the fleet).

Every ``eval.every_updates`` updates the loop hands the newest weights to one rollout actor
(taking turns), which plays ``eval.episodes`` greedy episodes on its env between its collects::

    evals = PeriodicEval(cfg.eval, counters.updates)
    if evals.due(counters.updates):
        evals.submit(fleet, version, weights_ref, counters.updates)
    call = evals.take(outcome)          # not None: the outcome was an evaluation's

`BestScore` decides when a checkpoint is written because the run's best-checkpoint metric
(``eval.metric``, of an evaluation or else of the training episodes' window) reached a new best.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from soulsai_ray import metric_names as mn
from soulsai_ray.checkpoint import checkpoint_score
from soulsai_ray.config import EvalConfig
from soulsai_ray.episode_window import summarize_episodes
from soulsai_ray.inbound import Rejection
from soulsai_ray.inbound_episodes import finite_episodes
from soulsai_ray.loops.fleet import Outcome, RolloutFleet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalCall:
    """What an evaluation call was given; travels with the call as its ``extra``."""

    version: int
    weights_ref: list[Any]
    """``[ObjectRef]`` of the evaluated weights (kept so a new best can save exactly them)."""


class PeriodicEval:
    """Schedules one evaluation at a time, every ``cfg.every_updates`` updates."""

    def __init__(self, cfg: EvalConfig, updates: int) -> None:
        self.cfg = cfg
        self.enabled = cfg.every_updates is not None
        self._next = updates + (cfg.every_updates or 0)
        self._in_flight = False
        self._turn = 0

    def due(self, updates: int) -> bool:
        """True when an evaluation should start now (none is running)."""
        return self.enabled and not self._in_flight and updates >= self._next

    def submit(
        self, fleet: RolloutFleet, version: int, weights_ref: list[Any], updates: int
    ) -> int | None:
        """Asks the next available rollout actor in turn to evaluate ``version``.

        Returns:
            The actor's index; None if no actor is up (the evaluation stays due).
        """
        candidates = fleet.available()
        if not candidates:
            return None
        index = min(candidates, key=lambda i: (i - self._turn) % len(fleet))
        self._turn = index + 1
        call = EvalCall(version, weights_ref)
        episodes = self.cfg.episodes
        fleet.submit(
            index, lambda actor: (actor.evaluate.remote(version, weights_ref, episodes), call)
        )
        self._in_flight = True
        self.schedule_next(updates)
        return index

    def schedule_next(self, updates: int) -> None:
        """The next evaluation is due ``every_updates`` after the one started at ``updates``."""
        every = self.cfg.every_updates or 1
        self._next = (updates // every + 1) * every

    def take(self, outcome: Outcome) -> EvalCall | None:
        """The evaluation an outcome belongs to, or None for any other call.

        A failed evaluation (the actor died, or was killed for a frozen env) is retried on the
        next actor at once.
        """
        if not isinstance(outcome.extra, EvalCall):
            return None
        self._in_flight = False
        if outcome.failed:
            logger.warning(
                "evaluation on rollout actor %d failed; trying the next actor", outcome.index
            )
            self._next = 0
        return outcome.extra


class BestScore:
    """The best score so far of the run's best-checkpoint metric.

    Args:
        best: The best score of the checkpoints already on disk (a resumed run), if any.
        min_interval_s: Fewest seconds between two saves for :meth:`worth_saving` with
            ``throttled`` (the rolling training metric improves a little at almost every episode).
    """

    def __init__(self, best: float | None, min_interval_s: float) -> None:
        self.best = -math.inf if best is None else best
        self.min_interval_s = min_interval_s
        self._saved_at = -math.inf

    def worth_saving(self, score: float | None, throttled: bool) -> bool:
        """True if ``score`` beats the best (and, if ``throttled``, the interval has passed)."""
        if score is None or not math.isfinite(score) or score <= self.best:
            return False
        return not throttled or time.monotonic() - self._saved_at >= self.min_interval_s

    def saved(self, score: float) -> None:
        """A new-best checkpoint with ``score`` was written."""
        self.best = max(self.best, score)
        self._saved_at = time.monotonic()

    def written(self, score: float | None) -> None:
        """Any checkpoint with ``score`` was written (a periodic or the final one): the best
        score stays the one `CheckpointManager.best` ranks first."""
        if score is not None and math.isfinite(score):
            self.best = max(self.best, score)


class RunEvaluation:
    """A training loop's evaluations and best checkpoints (one per `RunLoop`).

    A Ray loop calls :meth:`maybe_start` and :meth:`maybe_save_best` once per round and routes
    every fleet outcome through :meth:`take` first; a serial loop plays due evaluations itself
    and hands them to :meth:`record`. Both score periodic checkpoints with :meth:`periodic_score`.
    """

    def __init__(self, loop: Any) -> None:
        """Args:
        loop: The `RunLoop`: its counters, fleet (Ray), recorder, rejections, ``eval_weights()``,
            ``write_checkpoint(score, extra)`` and ``record_scalars(scalars)``.
        """
        self.loop = loop
        cfg = loop.cfg
        self.cfg = cfg.eval
        self.schedule = PeriodicEval(cfg.eval, loop.counters.updates)
        best = loop.recorder.checkpoints.best()
        self.best = BestScore(
            checkpoint_score(best) if best is not None else None,
            cfg.checkpoint.best_min_interval_s,
        )
        name = mn.evaluation if self.schedule.enabled else mn.episode_metric
        self.metric = name(self.cfg.metric)
        """The best-checkpoint metric, e.g. ``eval/return_mean`` or ``episode/win_rate``."""
        self.last: dict[str, Any] | None = None
        """The last evaluation's summary (with its ``version``)."""

    def maybe_start(self) -> None:
        """Starts an evaluation if one is due and weights were published."""
        loop = self.loop
        if not self.schedule.due(loop.counters.updates) or not len(loop.fleet):
            return
        version, weights_ref = loop.eval_weights()
        if version < 0 or not weights_ref:
            return
        self.schedule.submit(loop.fleet, version, weights_ref, loop.counters.updates)

    def take(self, outcome: Outcome) -> bool:
        """Handles ``outcome`` if it is an evaluation's; returns whether it was."""
        call = self.schedule.take(outcome)
        if call is None:
            return False
        if not outcome.failed:
            self.record(call.version, outcome.value, lambda: ray.get(call.weights_ref[0]))
        return True

    def periodic_score(self) -> float | None:
        """The score of a periodic checkpoint: the training window's metric without
        evaluation; none with it (only evaluated weights are ranked)."""
        return None if self.schedule.enabled else self._train_score()

    def maybe_save_best(self) -> None:
        """Without evaluation: a checkpoint when the training window's metric reaches a new
        best (once the window is full, at most every ``checkpoint.best_min_interval_s``)."""
        if self.schedule.enabled:
            return
        score = self._train_score()
        if self.best.worth_saving(score, throttled=True) and self.loop.write_checkpoint(score):
            self.best.saved(score)

    def summary(self) -> dict[str, Any]:
        """For summary.json: the best-checkpoint metric, its best score and the last evaluation."""
        best = self.best.best if math.isfinite(self.best.best) else None
        return {"best_metric": self.metric, "best_score": best, "last_eval": self.last}

    def _train_score(self) -> float | None:
        telemetry = self.loop.recorder.telemetry
        if telemetry.window_episodes < telemetry.window:
            return None
        return telemetry.episode_means().get(self.metric)

    def record(self, version: int, report: Any, weights: Callable[[], dict[str, Any]]) -> None:
        """Counts and logs a finished evaluation of ``version`` (an `EvalReport`); a new best
        score writes a checkpoint holding exactly the evaluated weights (``weights()``)."""
        loop = self.loop
        returns, lengths, metrics, dropped = finite_episodes(
            report.returns, report.lengths, report.metrics, loop.cfg.env
        )
        if dropped:
            problem = Rejection("episode", f"{dropped} evaluation episode(s) with bad values")
            loop.rejections.record(problem, 0, report.actor_index, report.node_id)
        summary = summarize_episodes(returns, lengths, metrics)
        if not returns:
            logger.warning("evaluation on rollout actor %d finished no episode", report.actor_index)
            return
        loop.counters.evaluations += 1
        self.last = {"version": version, **summary}
        loop.record_scalars({mn.evaluation(k): v for k, v in summary.items()})
        logger.info(
            "evaluation of weights %d on rollout actor %d: %s",
            version,
            report.actor_index,
            ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if v is not None),
        )
        score = summary.get(self.cfg.metric)
        if self.best.worth_saving(score, throttled=False):
            played = {k: np.array(v) for k, v in weights().items()}
            extra = {"eval_policy": {"version": version, "weights": played}}
            if loop.write_checkpoint(score, extra):
                self.best.saved(score)
                logger.info("new best %s %.4g: checkpoint written", self.metric, score)
