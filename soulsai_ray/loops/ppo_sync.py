"""Synchronous, elastic PPO orchestration on Ray.

Each iteration the driver hands the current weights reference to every idle rollout actor,
waits (``ray.wait``, at most ``iteration_timeout_s``) for their batches, and updates the learner
with the batches of the current policy version from the actors that answered, provided at least
``min_workers`` did. A dead actor is restarted by Ray and rejoins at a later iteration; a late
batch of an older version is dropped, never mixed in.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from soulsai_ray.actors import WeightStore
from soulsai_ray.actors.ppo import PPOLearnerActor, PPORolloutActor, PPOUpdateReport, RolloutReport
from soulsai_ray.cluster import actor_name_prefix, on_this_node
from soulsai_ray.config import TrainConfig
from soulsai_ray.loops.base import (
    ACTOR_ERRORS,
    STARTUP_TIMEOUT_S,
    STATE_TIMEOUT_S,
    TrainingLoop,
    get_when_available,
)
from soulsai_ray.loops.common import Restore, RunRecorder
from soulsai_ray.loops.fleet import RolloutFleet

logger = logging.getLogger(__name__)

UPDATE_TIMEOUT_S = 600.0


class PPOSyncLoop(TrainingLoop):
    """Runs synchronous PPO until a stop condition is met; see the module docstring."""

    algo_name = "ppo"

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        super().__init__(cfg, recorder, restore)
        self.iteration = 0
        self._busy: dict[int, tuple[ray.ObjectRef, ray.ObjectRef]] = {}
        self._last_log = time.monotonic()
        self._last_log_steps = self.counters.env_steps

    def build(self) -> None:
        """Creates the weight store, the rollout actors and the learner."""
        cfg, pinned = self.cfg, on_this_node()
        store_name = f"{actor_name_prefix()}-weights"
        self.weight_store = WeightStore.options(
            name=store_name, scheduling_strategy=pinned
        ).remote()
        self.fleet = RolloutFleet(
            cfg,
            lambda options, index, _: PPORolloutActor.options(**options).remote(
                cfg, index, store_name
            ),
        )
        self.fleet.start()
        spec = self.probe_spec()
        self.learner = PPOLearnerActor.options(
            scheduling_strategy=pinned, max_restarts=cfg.cluster.actor_max_restarts
        ).remote(
            cfg,
            spec.obs_dim,
            spec.num_actions,
            store_name,
            self.checkpoint_dir,
            self.resume_path,
        )
        self.version, self.weights = ray.get(self.learner.ready.remote(), timeout=STARTUP_TIMEOUT_S)

    def step(self) -> None:
        """One iteration: collect rollouts, then update on the current-version batches."""
        batches, reports = self._collect()
        if batches:
            self._update(batches, reports)

    def _collect(self) -> tuple[list[ray.ObjectRef], list[RolloutReport]]:
        """One round of rollouts; returns the current-version batches and their reports."""
        self.fleet.maybe_scale()
        for index, actor in enumerate(self.fleet.actors):
            if index not in self._busy:
                self._busy[index] = tuple(actor.collect.remote(self.version, self.weights))
        batches: list[ray.ObjectRef] = []
        reports: list[RolloutReport] = []
        deadline = time.monotonic() + self.algo.iteration_timeout_s
        waiting = dict(self._busy)
        warned = False
        while waiting and self.stop_requested is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and len(batches) >= self.algo.min_workers:
                break
            refs = [report for _, report in waiting.values()]
            ready, _ = ray.wait(refs, num_returns=1, timeout=min(max(remaining, 0.05), 1.0))
            for ref in ready:
                index = next(i for i, (_, r) in waiting.items() if r == ref)
                batch_ref, _ = waiting.pop(index)
                del self._busy[index]
                report = self._report_of(index, ref)
                if report is not None and report.version == self.version and report.steps > 0:
                    batches.append(batch_ref)
                    reports.append(report)
            if not ready and remaining <= 0 and not warned:
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

    def _report_of(self, index: int, ref: ray.ObjectRef) -> RolloutReport | None:
        try:
            report: RolloutReport = ray.get(ref)
        except (RayActorError, RayTaskError) as err:
            logger.debug("rollout actor %d: %s", index, err)
            self.counters.actor_failures += self.fleet.mark(index, ok=False)
            return None
        self.fleet.mark(index, ok=True)
        c = self.counters
        c.env_steps += report.stats.env_steps
        c.episodes += len(report.stats.returns)
        c.env_errors += report.stats.env_errors
        c.samples_invalid += report.stats.invalid_steps
        self.count_samples(report.node_id, report.steps)
        if report.version != self.version:
            c.samples_stale += report.steps
        self.recorder.record_episodes(c.env_steps, report.stats.returns, report.stats.lengths)
        return report

    def _update(self, batches: list[ray.ObjectRef], reports: list[RolloutReport]) -> None:
        progress = 0.0
        if self.cfg.stop.env_steps:
            progress = min(self.counters.env_steps / self.cfg.stop.env_steps, 1.0)
        start = time.monotonic()
        indices = [r.actor_index for r in reports]
        try:
            result: PPOUpdateReport = ray.get(
                self.learner.update.remote(progress, indices, *batches), timeout=UPDATE_TIMEOUT_S
            )
        except ACTOR_ERRORS as err:
            self.counters.learner_failures += 1
            logger.warning(
                "learner update failed (%s); Ray restarts it from the last checkpoint", err
            )
            self.version, self.weights = get_when_available(
                self.learner.ready.remote, STARTUP_TIMEOUT_S
            )
            return
        for message in result.rejected:
            logger.error(message)
        self.version, self.weights = result.version, result.weights
        self.iteration += 1
        c = self.counters
        c.updates = result.gradient_steps
        c.weight_version = result.version
        c.nan_rollbacks += int(result.metrics.get("nan_rollback", 0))
        c.samples_accepted += sum(r.steps for r in reports)
        c.samples_invalid += sum(r.steps for r in reports) - result.samples
        c.samples_trained += result.samples
        self._log(result, len(batches) - len(result.rejected), time.monotonic() - start)

    def _log(self, result: PPOUpdateReport, workers: int, update_s: float) -> None:
        now = time.monotonic()
        iteration_s = max(now - self._last_log, 1e-9)
        m, c = result.metrics, self.counters
        scalars: dict[str, float | int | None] = {
            "train/policy_loss": m.get("policy_loss"),
            "train/value_loss": m.get("value_loss"),
            "train/entropy": m.get("entropy"),
            "train/approx_kl": m.get("approx_kl"),
            "train/clip_fraction": m.get("clip_fraction"),
            "train/explained_variance": m.get("explained_variance"),
            "train/lr": m.get("lr"),
            "perf/env_steps_per_s": (c.env_steps - self._last_log_steps) / iteration_s,
            "perf/update_s": update_s,
            "dist/iteration_workers": workers,
            "progress/iterations": self.iteration,
            **self.common_scalars(),
        }
        self.recorder.record_scalars(c.env_steps, scalars)
        self.recorder.telemetry.update_console(
            c.env_steps,
            {
                "ret": self.recorder.telemetry.return_mean,
                "it": self.iteration,
                "workers": workers,
                "sps": scalars["perf/env_steps_per_s"],
                "kl": scalars["train/approx_kl"],
                "ev": scalars["train/explained_variance"],
            },
        )
        self._last_log, self._last_log_steps = now, c.env_steps

    def checkpoint_state(self) -> dict[str, Any]:
        return get_when_available(self.learner.state.remote, STATE_TIMEOUT_S)

    def summary_extra(self) -> dict[str, Any]:
        return {"iterations": self.iteration}
