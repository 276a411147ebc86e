"""Asynchronous DQN orchestration on Ray.

The driver keeps two ``collect`` calls in flight per rollout actor (so an actor never idles
between calls) and one ``train`` call on the learner, reacting to whichever finishes first
(``ray.wait``). It holds the replay ratio: the
learner is never asked for more updates than the data allows, and rollout actors pause when
sampling runs more than ``ratio_slack_steps`` ahead of learning.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from soulsai_ray.actors import LearnerActor, ReplayActor, RolloutActor, WeightStore
from soulsai_ray.actors.learner import TrainReport
from soulsai_ray.actors.rollout import CollectReport
from soulsai_ray.cluster import actor_name_prefix, on_this_node
from soulsai_ray.config import TrainConfig
from soulsai_ray.loops.base import (
    ACTOR_ERRORS,
    STARTUP_TIMEOUT_S,
    STATE_TIMEOUT_S,
    TrainingLoop,
    get_when_available,
)
from soulsai_ray.loops.common import Restore, RunCounters, RunRecorder
from soulsai_ray.loops.fleet import RolloutFleet

logger = logging.getLogger(__name__)

WAIT_S = 0.2
LEARNER_IDLE_BACKOFF_S = 0.05
COLLECTS_IN_FLIGHT = 2
DRAIN_TIMEOUT_S = 30.0


@dataclass
class IntervalStats:
    """Metrics accumulated between two telemetry writes."""

    start: float = field(default_factory=time.monotonic)
    env_steps: int = 0
    updates: int = 0
    accepted: int = 0
    lag_sum: int = 0
    losses: list[float] = field(default_factory=list)
    q_means: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    sync_latencies: list[float] = field(default_factory=list)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class ReplayCounts:
    """Keeps the run's sample counters equal to replay's own, across replay restarts."""

    def __init__(self, counters: RunCounters) -> None:
        self.counters = counters
        self._base = (counters.samples_accepted, counters.samples_stale, counters.samples_invalid)
        self._last = (0, 0, 0)

    def update(self, stats: dict[str, Any]) -> None:
        """Applies replay's cumulative counts (a restarted replay counts from 0 again)."""
        now = (
            int(stats["total_added"]),
            int(stats["stale"]),
            int(stats["invalid"]) + int(stats["malformed"]),
        )
        if now[0] < self._last[0]:  # replay restarted: what it counted before is kept
            self._base = tuple(b + last for b, last in zip(self._base, self._last, strict=True))
        self._last = now
        c = self.counters
        c.samples_accepted, c.samples_stale, c.samples_invalid = (
            b + n for b, n in zip(self._base, now, strict=True)
        )


def _latency_percentiles(latencies: list[float]) -> dict[str, float | None]:
    """p50/p99 of the time from a weight publish until a rollout actor installed it."""
    if not latencies:
        return {"weight_sync_p50_s": None, "weight_sync_p99_s": None}
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"weight_sync_p50_s": float(p50), "weight_sync_p99_s": float(p99)}


class DQNAsyncLoop(TrainingLoop):
    """Runs asynchronous DQN until a stop condition is met; see the module docstring."""

    algo_name = "dqn"

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        super().__init__(cfg, recorder, restore)
        self.interval = IntervalStats()
        self._collect_refs: dict[ray.ObjectRef, int] = {}
        self._train_ref: ray.ObjectRef | None = None
        self._learner_idle_until = 0.0
        self._learner_down = False
        self._last_log = time.monotonic()
        self.publish_times: dict[int, float] = {}
        self.sync_latencies: list[float] = []
        self._replay_counts = ReplayCounts(self.counters)
        self._stats_ref: ray.ObjectRef | None = None

    def build(self) -> None:
        """Creates the weight store, replay, rollout actors and learner, in that order.

        The env's spaces are read from a rollout actor, not from the driver: on a SoulsGym
        cluster only the game PCs can create the env.
        """
        cfg, pinned, prefix = self.cfg, on_this_node(), actor_name_prefix()
        self.names = {"replay": f"{prefix}-replay", "weights": f"{prefix}-weights"}
        self.weight_store = WeightStore.options(
            name=self.names["weights"], scheduling_strategy=pinned
        ).remote()
        self.replay = ReplayActor.options(
            name=self.names["replay"],
            scheduling_strategy=pinned,
            max_restarts=cfg.cluster.actor_max_restarts,
        ).remote(self.algo, cfg.seed, self.checkpoint_dir, self.resume_path, self.names["weights"])
        self.fleet = RolloutFleet(cfg, self._make_rollout)
        self.fleet.start()
        self.spec = self.probe_spec()
        ray.get(self.replay.set_spec.remote(self.spec.obs_dim, self.spec.num_actions))
        self.learner = LearnerActor.options(
            scheduling_strategy=pinned, max_restarts=cfg.cluster.actor_max_restarts
        ).remote(
            cfg,
            self.spec.obs_dim,
            self.spec.num_actions,
            self.names["replay"],
            self.names["weights"],
            self.checkpoint_dir,
            self.resume_path,
        )
        self.counters.weight_version = ray.get(
            self.learner.ready.remote(), timeout=STARTUP_TIMEOUT_S
        )

    def _make_rollout(self, options: dict[str, Any], index: int, num_actors: int) -> Any:
        return RolloutActor.options(**options).remote(
            self.cfg, index, num_actors, self.names["replay"], self.names["weights"]
        )

    def step(self) -> None:
        """Schedules calls, handles whichever finished, and logs on schedule."""
        self.fleet.maybe_scale()
        self._schedule()
        self._handle_ready()
        self._maybe_log()

    # --- scheduling ---------------------------------------------------------------------------

    def _lead_steps(self) -> float:
        """How far sampling is ahead of what learning has consumed, in env steps."""
        learned = self.counters.updates * self.algo.batch_size / self.algo.replay_ratio
        return self.counters.env_steps - self.algo.learning_starts - learned

    def _allowed_updates(self) -> int:
        steps = max(0, self.counters.env_steps - self.algo.learning_starts)
        return math.floor(steps * self.algo.replay_ratio / self.algo.batch_size)

    def _schedule(self) -> None:
        # Two calls per actor: the next one is queued while the current one runs, so an actor
        # never idles waiting for the driver between calls.
        inflight = Counter(self._collect_refs.values())
        slack = self.algo.ratio_slack_steps
        if slack is None or self._lead_steps() <= slack:
            for index, actor in enumerate(self.fleet.actors):
                for _ in range(COLLECTS_IN_FLIGHT - inflight[index]):
                    self._collect_refs[actor.collect.remote(self.counters.env_steps)] = index
        wanted = self._allowed_updates() - self.counters.updates
        if self._train_ref is None and wanted > 0 and time.monotonic() >= self._learner_idle_until:
            self._train_ref = self.learner.train.remote(min(wanted, self.algo.updates_per_call))

    def _handle_ready(self) -> None:
        pending = list(self._collect_refs)
        if self._train_ref is not None:
            pending.append(self._train_ref)
        ready, _ = ray.wait(pending, num_returns=1, timeout=WAIT_S)
        for ref in ready:
            if ref == self._train_ref:
                self._train_ref = None
                self._on_train_result(ref)
            else:
                self._on_collect_result(ref)

    def _on_collect_result(self, ref: ray.ObjectRef) -> None:
        index = self._collect_refs.pop(ref)
        try:
            report: CollectReport = ray.get(ref)
        except TaskCancelledError:
            return
        except (RayActorError, RayTaskError) as err:
            logger.debug("rollout actor %d: %s", index, err)
            self.counters.actor_failures += self.fleet.mark(index, ok=False)
            return
        self.fleet.mark(index, ok=True)
        self._on_collect(report)

    def _on_collect(self, report: CollectReport) -> None:
        c, iv = self.counters, self.interval
        c.env_steps += report.env_steps
        c.episodes += len(report.returns)
        c.model_lag_sum += report.lag_sum
        c.model_lag_samples += report.accepted
        c.env_errors += report.env_errors
        iv.env_steps += report.env_steps
        iv.accepted += report.accepted
        iv.lag_sum += report.lag_sum
        iv.epsilons.append(report.epsilon)
        self.count_samples(report.node_id, report.accepted)
        for message in report.errors:
            logger.error(message)
        self.recorder.record_episodes(c.env_steps, report.returns, report.lengths)
        for version, loaded_at in report.weight_loads:
            published = self.publish_times.get(version)
            if published is not None:
                iv.sync_latencies.append(loaded_at - published)
                self.sync_latencies.append(loaded_at - published)

    def _on_train_result(self, ref: ray.ObjectRef) -> None:
        try:
            report: TrainReport = ray.get(ref)
        except ACTOR_ERRORS as err:
            self.counters.learner_failures += not self._learner_down
            self._learner_down = True
            logger.warning(
                "learner call failed (%s); Ray restarts it from the last checkpoint", err
            )
            self._learner_idle_until = time.monotonic() + 1.0
            return
        self._on_train(report)

    def _on_train(self, report: TrainReport) -> None:
        self._learner_down = False
        c, iv = self.counters, self.interval
        c.updates = report.total_updates
        c.weight_version = report.version
        c.nan_rollbacks = report.nan_rollbacks
        iv.updates += report.updates
        self.publish_times.update(report.publishes)
        if report.updates == 0:
            self._learner_idle_until = time.monotonic() + LEARNER_IDLE_BACKOFF_S
        for values, value in (
            (iv.losses, report.loss),
            (iv.q_means, report.q_mean),
            (iv.grad_norms, report.grad_norm),
        ):
            if value is not None:
                values.append(value)

    # --- telemetry and checkpoints ------------------------------------------------------------

    def _refresh_replay_counts(self, wait_s: float = 0.0) -> None:
        """Takes the sample counts from replay, their source of truth, without blocking the loop."""
        if self._stats_ref is None:
            self._stats_ref = self.replay.stats.remote()
        ready, _ = ray.wait([self._stats_ref], timeout=wait_s)
        if not ready:
            return
        try:
            self._replay_counts.update(ray.get(self._stats_ref))
        except ACTOR_ERRORS as err:
            logger.warning("replay did not report its counts (%s)", type(err).__name__)
        self._stats_ref = None

    def _maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_log < self.cfg.telemetry.log_every_s:
            return
        self._refresh_replay_counts(wait_s=STATE_TIMEOUT_S if force else 0.0)
        iv, c = self.interval, self.counters
        dt = max(now - iv.start, 1e-9)
        scalars: dict[str, float | int | None] = {
            "train/loss": _mean(iv.losses),
            "train/q_mean": _mean(iv.q_means),
            "train/grad_norm": _mean(iv.grad_norms),
            "train/epsilon": _mean(iv.epsilons),
            "perf/env_steps_per_s": iv.env_steps / dt,
            "perf/updates_per_s": iv.updates / dt,
            "dist/model_lag_mean": iv.lag_sum / iv.accepted if iv.accepted else None,
            "dist/weight_sync_latency_s": _mean(iv.sync_latencies),
            **self.common_scalars(),
        }
        self.recorder.record_scalars(c.env_steps, scalars)
        self.recorder.telemetry.update_console(
            c.env_steps,
            {
                "ret": self.recorder.telemetry.return_mean,
                "eps": scalars["train/epsilon"],
                "upd": c.updates,
                "sps": scalars["perf/env_steps_per_s"],
                "ups": scalars["perf/updates_per_s"],
                "loss": scalars["train/loss"],
                "lag": scalars["dist/model_lag_mean"],
            },
        )
        self.interval = IntervalStats(start=now)
        self._last_log = now

    def checkpoint_state(self) -> dict[str, Any]:
        state = get_when_available(self.learner.state.remote, STATE_TIMEOUT_S)
        if self.cfg.checkpoint.save_replay:
            state["replay"] = get_when_available(self.replay.state.remote, STATE_TIMEOUT_S)
        return state

    def finish(self, reason: str) -> dict[str, Any]:
        """Drains the rollout calls and pushes in flight, so the final counts are exact."""
        refs = list(self._collect_refs)
        for ref in refs:
            ray.cancel(ref)  # queued calls are dropped; running ones complete
        done, _ = (
            ray.wait(refs, num_returns=len(refs), timeout=DRAIN_TIMEOUT_S) if refs else ([], [])
        )
        for ref in done:
            self._on_collect_result(ref)
        flushes = [actor.flush.remote() for actor in self.fleet.actors]
        ray.wait(flushes, num_returns=len(flushes), timeout=DRAIN_TIMEOUT_S)
        self._stats_ref = None  # a request sent before the drain would report stale counts
        self._maybe_log(force=True)
        return super().finish(reason)

    def summary_extra(self) -> dict[str, Any]:
        return _latency_percentiles(self.sync_latencies)
