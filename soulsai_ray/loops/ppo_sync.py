"""Synchronous, elastic PPO orchestration on Ray.

Each iteration the driver hands the current weights reference to every idle rollout actor,
waits (at most ``iteration_timeout_s``) for their batches, and updates the learner with the
batches of the current policy version from the actors that answered, provided at least
``min_workers`` did. A dead actor is restarted by Ray and rejoins at a later iteration; a late
batch of an older version is dropped, never mixed in. All calls to rollout actors go through
:class:`~soulsai_ray.loops.fleet.RolloutFleet`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from soulsai_ray.actors.ppo import PPOLearnerActor, PPOUpdateReport
from soulsai_ray.actors.ppo_rollout import PPORolloutActor, RolloutReport
from soulsai_ray.cluster import on_this_node
from soulsai_ray.config import TrainConfig
from soulsai_ray.inbound import Limits
from soulsai_ray.loops.base import (
    ACTOR_ERRORS,
    STATE_TIMEOUT_S,
    TrainingLoop,
    get_when_available,
)
from soulsai_ray.loops.common import Restore, RunRecorder
from soulsai_ray.loops.fleet import RolloutFleet
from soulsai_ray.loops.scalars import ppo_console, ppo_scalars

logger = logging.getLogger(__name__)

UPDATE_TIMEOUT_S = 600.0
RECONNECT_POLL_S = 5.0


class PPOSyncLoop(TrainingLoop):
    """Runs synchronous PPO until a stop condition is met; see the module docstring."""

    algo_name = "ppo"

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        super().__init__(cfg, recorder, restore)
        self.iteration = 0
        self._last_log = time.monotonic()
        self._last_log_steps = self.counters.env_steps

    def build(self) -> None:
        """Creates the rollout actors and the learner."""
        cfg, pinned = self.cfg, on_this_node()
        self.fleet = RolloutFleet(
            cfg, lambda options, index: PPORolloutActor.options(**options).remote(cfg, index)
        )
        self.fleet.start()
        spec = self.probe_spec()
        self.learner = PPOLearnerActor.options(
            scheduling_strategy=pinned, max_restarts=cfg.cluster.actor_max_restarts
        ).remote(
            cfg,
            Limits.for_run(cfg, spec.obs, spec.num_actions),
            self.checkpoint_dir,
            self.resume_path,
        )
        self.singletons["learner"] = self.learner
        self.version, self.weights = self.wait_for(self.learner.ready.remote(), "the learner")

    def step(self) -> None:
        """One iteration: collect rollouts, then update on the current-version batches."""
        batches, reports = self._collect()
        cut_short = self.stop_requested is not None and len(batches) < self.algo.min_workers
        if batches and not cut_short:  # a stop mid-iteration never trains below min_workers
            self._update(batches, reports)

    def on_restart(self, role: str) -> None:
        if role == "learner":
            self._reconnect_learner()

    def _submit(self, actor: Any) -> tuple[ray.ObjectRef, ray.ObjectRef]:
        batch, report = actor.collect.remote(self.version, self.weights)
        return report, batch

    def _collect(self) -> tuple[list[ray.ObjectRef], list[RolloutReport]]:
        """One round of rollouts; returns the current-version batches and their reports."""
        self.fleet.maybe_scale()
        self.fleet.fill(1, self._submit)
        batches: list[ray.ObjectRef] = []
        reports: list[RolloutReport] = []
        deadline = time.monotonic() + self.algo.iteration_timeout_s
        warned = False
        while len(self.fleet.calls) and self.stop_requested is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and len(batches) >= self.algo.min_workers:
                break
            outcomes, _ = self.fleet.poll(min(max(remaining, 0.05), 1.0))
            for outcome in outcomes:
                if self.evaluation.take(outcome):
                    continue
                report = None if outcome.failed else self._count(outcome.value)
                if report is not None and report.version == self.version and report.steps > 0:
                    batches.append(outcome.extra)
                    reports.append(report)
            self.watch()
            if remaining <= 0 and not warned:
                warned = True
                logger.warning(
                    "iteration %d: %d/%d rollout actors answered within %.0fs; waiting for min_workers=%d",
                    self.iteration,
                    len(batches),
                    len(self.fleet),
                    self.algo.iteration_timeout_s,
                    self.algo.min_workers,
                )
        return batches, reports

    def _count(self, report: RolloutReport) -> RolloutReport:
        c, stats = self.counters, report.stats
        self.accept_report(
            report.actor_index,
            report.node_id,
            stats.env_steps,
            stats.returns,
            stats.lengths,
            stats.metrics,
        )
        c.env_errors += report.stats.env_errors
        c.env_invalid_steps += report.stats.invalid_steps
        self.node_samples.add(report.node_id, report.steps)
        if report.version != self.version:
            c.samples_stale += report.steps
        return report

    def _update(self, batches: list[ray.ObjectRef], reports: list[RolloutReport]) -> None:
        progress = 0.0
        if self.cfg.stop.env_steps:
            progress = min(self.counters.env_steps / self.cfg.stop.env_steps, 1.0)
        start = time.monotonic()
        senders = [(r.actor_index, r.node_id) for r in reports]
        try:
            result: PPOUpdateReport = ray.get(
                self.learner.update.remote(progress, senders, *batches), timeout=UPDATE_TIMEOUT_S
            )
        except ACTOR_ERRORS as err:
            self.counters.learner_failures += 1
            self.counters.samples_stale += sum(r.steps for r in reports)
            logger.warning(
                "learner update failed (%s); Ray restarts it from the last checkpoint",
                type(err).__name__,
            )
            self._reconnect_learner()
            return
        rejected = result.rejected
        self.rejections.merge(rejected["by_reason"], rejected["by_node"], rejected["rows"])
        self.version, self.weights = result.version, result.weights
        self.iteration += 1
        c = self.counters
        c.updates = result.gradient_steps
        c.weight_version = result.version
        c.nan_rollbacks += result.nan_rollbacks
        c.samples_accepted += sum(r.steps for r in reports)
        c.samples_invalid += sum(r.steps for r in reports) - result.samples
        c.samples_trained += result.samples
        used = len(batches) - sum(rejected["by_reason"].values())
        self._log(result, used, time.monotonic() - start)

    def _reconnect_learner(self) -> None:
        """Waits for the restarted learner and has it publish above every version handed out.

        Raises:
            ActorLost: the learner is dead for good.
        """
        while self.stop_requested is None:
            self.watch(force=True)
            try:
                self.version, self.weights = ray.get(
                    self.learner.republish.remote(self.version), timeout=RECONNECT_POLL_S
                )
                self.counters.weight_version = max(self.counters.weight_version, self.version)
                return
            except ACTOR_ERRORS:
                time.sleep(0.5)

    def _log(self, result: PPOUpdateReport, workers: int, update_s: float) -> None:
        now = time.monotonic()
        iteration_s = max(now - self._last_log, 1e-9)
        c = self.counters
        sps = (c.env_steps - self._last_log_steps) / iteration_s
        scalars = ppo_scalars(result.metrics, sps, update_s, workers, self.iteration)
        self.record_scalars({**scalars, **self.common_scalars()})
        self.recorder.telemetry.update_console(
            c.env_steps, {**self.console_head(), **ppo_console(scalars)}
        )
        self._last_log, self._last_log_steps = now, c.env_steps

    def eval_weights(self) -> tuple[int, list[Any]]:
        """The current policy (evaluated between iterations, so exactly what is checkpointed)."""
        return self.version, self.weights

    def checkpoint_state(self) -> dict[str, Any]:
        return get_when_available(self.learner.state.remote, STATE_TIMEOUT_S)

    def summary_extra(self) -> dict[str, Any]:
        return {"iterations": self.iteration}
