"""Asynchronous DQN orchestration on Ray.

The driver keeps two ``collect`` calls in flight per rollout actor (so an actor never idles
between calls, see :class:`~soulsai_ray.loops.fleet.RolloutFleet`) and one ``train`` call on the
learner, reacting to whichever finishes first. It holds the replay ratio of the buffer that
exists now (:class:`~soulsai_ray.replay_ratio.ReplayRatio`): the learner is never asked for more
updates than the data allows, and rollout actors pause when sampling runs more than
``ratio_slack_steps`` ahead of learning. Sample counts come from replay alone.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import ray

from soulsai_ray import metric_names as mn
from soulsai_ray.actors.learner import LearnerActor, TrainReport
from soulsai_ray.actors.replay import ReplayActor
from soulsai_ray.actors.rollout import CollectReport, RolloutActor
from soulsai_ray.actors.weights import WeightStore
from soulsai_ray.cluster import actor_name_prefix, on_this_node
from soulsai_ray.config import TrainConfig
from soulsai_ray.inbound import Limits
from soulsai_ray.loops.base import (
    ACTOR_ERRORS,
    STATE_TIMEOUT_S,
    TrainingLoop,
    get_when_available,
)
from soulsai_ray.loops.common import Restore, RunRecorder
from soulsai_ray.loops.dqn_books import (
    IntervalStats,
    ReplayCounts,
    latency_percentiles,
    mean_or_none,
)
from soulsai_ray.loops.fleet import RolloutFleet
from soulsai_ray.loops.scalars import dqn_console, dqn_scalars
from soulsai_ray.replay_ratio import ReplayRatio

logger = logging.getLogger(__name__)

WAIT_S = 0.2
LEARNER_IDLE_BACKOFF_S = (0.05, 1.0)
"""First and longest pause before asking a learner that had no data again."""
COLLECTS_IN_FLIGHT = 2
STOP_DRAIN_S = 10.0
"""Longest a graceful stop waits for rollout actors (their last collect calls and pushes): a
frozen game PC cannot hold the final checkpoint back for longer."""
STATS_EVERY_S = 1.0
LATENCY_WINDOW = 4096
"""Weight-sync latencies kept for the percentiles (the most recent ones)."""
PUBLISHES_KEPT = 1024


class DQNAsyncLoop(TrainingLoop):
    """Runs asynchronous DQN until a stop condition is met; see the module docstring."""

    algo_name = "dqn"

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        super().__init__(cfg, recorder, restore)
        a = self.algo
        self.ratio = ReplayRatio(
            a.replay_ratio, a.batch_size, a.learning_starts, a.ratio_slack_steps
        )
        self.interval = IntervalStats()
        self._train_ref: ray.ObjectRef | None = None
        self._learner_idle_until = 0.0
        self._learner_backoff_s = LEARNER_IDLE_BACKOFF_S[0]
        self._learner_down = False
        self._last_log = time.monotonic()
        self._last_lag = (self.counters.model_lag_sum, self.counters.model_lag_samples)
        self.publish_times: dict[int, float] = {}
        self.sync_latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._replay_counts = ReplayCounts(self.counters)
        self._stats_ref: ray.ObjectRef | None = None
        self._last_stats = 0.0
        self._republish_wanted = False
        self._republish_ref: ray.ObjectRef | None = None
        self._republish_at = 0.0

    def build(self) -> None:
        """Creates the weight store, rollout actors, replay and learner, in that order.

        The env's spaces are read from a rollout actor, not from the driver: on a SoulsGym
        cluster only the game PCs can create the env. Replay and learner get them as arguments,
        so a restarted one knows them too.
        """
        cfg, pinned, prefix = self.cfg, on_this_node(), actor_name_prefix()
        restarts = cfg.cluster.actor_max_restarts
        self.names = {"replay": f"{prefix}-replay", "weights": f"{prefix}-weights"}
        self.weight_store = WeightStore.options(
            name=self.names["weights"], scheduling_strategy=pinned, max_restarts=restarts
        ).remote()
        self.singletons["weights"] = self.weight_store
        self.fleet = RolloutFleet(cfg, self._make_rollout)
        self.fleet.start()
        self.spec = spec = self.probe_spec()
        self.replay = ReplayActor.options(
            name=self.names["replay"], scheduling_strategy=pinned, max_restarts=restarts
        ).remote(
            self.algo,
            Limits.for_run(cfg, spec.obs, spec.num_actions),
            cfg.seed,
            self.names["weights"],
            self.checkpoint_dir,
            self.resume_path,
        )
        self.singletons["replay"] = self.replay
        self.learner = LearnerActor.options(
            scheduling_strategy=pinned, max_restarts=restarts
        ).remote(
            cfg,
            spec.obs,
            spec.num_actions,
            self.names["replay"],
            self.names["weights"],
            self.checkpoint_dir,
            self.resume_path,
        )
        self.singletons["learner"] = self.learner
        version = self.wait_for(self.learner.ready.remote(), "the learner")
        self.counters.weight_version = max(self.counters.weight_version, version)
        self._apply_replay_stats(self.wait_for(self.replay.stats.remote(), "the replay actor"))

    def _make_rollout(self, options: dict[str, Any], index: int) -> Any:
        return RolloutActor.options(**options).remote(
            self.cfg, index, self.fleet.fixed_size, self.names["replay"], self.names["weights"]
        )

    def step(self) -> None:
        """Schedules calls, handles whichever finished, and logs on schedule."""
        self.fleet.maybe_scale()
        self._schedule()
        also = [self._train_ref] if self._train_ref is not None else []
        outcomes, ready = self.fleet.poll(WAIT_S, also=also)
        for outcome in outcomes:
            if not self.evaluation.take(outcome) and not outcome.failed:
                self._on_collect(outcome.value)
        if ready:
            ref, self._train_ref = self._train_ref, None
            self._on_train_result(ref)
        self._refresh_replay_counts()
        self._republish()
        self._maybe_log()

    def on_restart(self, role: str) -> None:
        """A restarted learner or weight store gets weights above every version handed out."""
        if role in ("learner", "weights"):
            self._republish_wanted = True

    def _republish(self) -> None:
        """Has the learner publish again until one call gets through (it may be restarting)."""
        if self._republish_ref is not None:
            ready, _ = ray.wait([self._republish_ref], timeout=0)
            if not ready:
                return
            ref, self._republish_ref = self._republish_ref, None
            try:
                version = ray.get(ref)
            except ACTOR_ERRORS:
                self._republish_at = time.monotonic() + LEARNER_IDLE_BACKOFF_S[1]
                return
            self.counters.weight_version = max(self.counters.weight_version, version)
            self._republish_wanted = False
        if self._republish_wanted and time.monotonic() >= self._republish_at:
            self._republish_ref = self.learner.republish.remote(self.counters.weight_version)

    # --- scheduling ---------------------------------------------------------------------------

    def _schedule(self) -> None:
        # Two calls per actor: the next one is queued while the current one runs, so an actor
        # never idles waiting for the driver between calls.
        if not self.ratio.sampling_paused():
            steps = self.counters.env_steps
            self.fleet.fill(COLLECTS_IN_FLIGHT, lambda actor: actor.collect.remote(steps))
        wanted = self.ratio.allowed_updates()
        if self._train_ref is None and wanted > 0 and time.monotonic() >= self._learner_idle_until:
            self._train_ref = self.learner.train.remote(min(wanted, self.algo.updates_per_call))

    def _on_collect(self, report: CollectReport) -> None:
        c, iv = self.counters, self.interval
        steps = self.accept_report(
            report.actor_index,
            report.node_id,
            report.env_steps,
            report.returns,
            report.lengths,
            report.episode_metrics,
        )
        c.env_errors += report.env_errors
        c.env_invalid_steps += report.invalid_steps
        self.ratio.inserted(steps)
        iv.env_steps += steps
        iv.epsilons.append(report.epsilon)
        for message in report.errors:
            logger.error("rollout actor %d: %s", report.actor_index, message)
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
                "learner call failed (%s); Ray restarts it from the last checkpoint",
                type(err).__name__,
            )
            self._learner_idle_until = time.monotonic() + LEARNER_IDLE_BACKOFF_S[1]
            return
        self._on_train(report)

    def _on_train(self, report: TrainReport) -> None:
        self._learner_down = False
        c, iv = self.counters, self.interval
        c.updates = report.total_updates
        c.weight_version = max(c.weight_version, report.version)
        c.nan_rollbacks += report.nan_rollbacks
        c.samples_trained += report.updates * self.algo.batch_size
        iv.updates += report.updates
        self.ratio.learned(report.updates)
        self.publish_times.update(report.publishes)
        for version in list(self.publish_times)[: -PUBLISHES_KEPT or None]:
            del self.publish_times[version]
        if report.updates == 0:  # no data yet: ask again later, less often the longer it lasts
            self._learner_idle_until = time.monotonic() + self._learner_backoff_s
            self._learner_backoff_s = min(self._learner_backoff_s * 2, LEARNER_IDLE_BACKOFF_S[1])
        else:
            self._learner_backoff_s = LEARNER_IDLE_BACKOFF_S[0]
        for values, value in (
            (iv.losses, report.loss),
            (iv.q_means, report.q_mean),
            (iv.grad_norms, report.grad_norm),
        ):
            if value is not None:
                values.append(value)

    # --- replay counts, telemetry and checkpoints ---------------------------------------------

    def _refresh_replay_counts(self, wait_s: float = 0.0) -> None:
        """Takes the sample counts from replay, their one source, without blocking the loop."""
        now = time.monotonic()
        if self._stats_ref is None:
            if wait_s == 0.0 and now - self._last_stats < STATS_EVERY_S:
                return
            self._stats_ref = self.replay.stats.remote()
            self._last_stats = now
        ready, _ = ray.wait([self._stats_ref], timeout=wait_s)
        if not ready:
            return
        ref, self._stats_ref = self._stats_ref, None
        try:
            self._apply_replay_stats(ray.get(ref))
        except ACTOR_ERRORS as err:
            logger.warning("replay did not report its counts (%s)", type(err).__name__)

    def _apply_replay_stats(self, stats: dict[str, Any]) -> None:
        incarnation = self._replay_counts.incarnation
        deltas = self._replay_counts.update(stats)
        for node, samples in deltas["accepted_by_node"].items():
            self.node_samples.add(node, samples)
        self.rejections.merge(deltas["rejected_by_reason"], deltas["rejected_by_node"])
        if stats["incarnation"] != incarnation:  # a new replay: the ratio starts over with it
            if incarnation is not None:
                logger.warning("replay restarted holding %d transitions", stats["size"])
            self.ratio.reset(held=int(stats["size"]))

    def _maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_log < self.cfg.telemetry.log_every_s:
            return
        iv, c = self.interval, self.counters
        lag_sum, lag_samples = (
            c.model_lag_sum - self._last_lag[0],
            c.model_lag_samples - self._last_lag[1],
        )
        self._last_lag = (c.model_lag_sum, c.model_lag_samples)
        scalars = {
            **dqn_scalars(iv, self.algo, c, now),
            mn.DIST_MODEL_LAG_MEAN: lag_sum / lag_samples if lag_samples > 0 else None,
            mn.DIST_WEIGHT_SYNC_LATENCY_S: mean_or_none(iv.sync_latencies),
            mn.DIST_REPLAY_LEAD_STEPS: self.ratio.lead_steps(),
            **self.common_scalars(),
        }
        self.record_scalars(scalars)
        self.recorder.telemetry.update_console(
            c.env_steps,
            {
                **self.console_head(),
                **dqn_console(scalars, c),
                "lag": scalars[mn.DIST_MODEL_LAG_MEAN],
            },
        )
        self.interval = IntervalStats(start=now)
        self._last_log = now

    def eval_weights(self) -> tuple[int, list[Any]]:
        """The weight store's newest ``(version, [ref])``; ``(-1, [])`` while it is down."""
        try:
            return ray.get(self.weight_store.latest.remote(), timeout=STATE_TIMEOUT_S)
        except ACTOR_ERRORS:
            return -1, []

    def checkpoint_state(self) -> dict[str, Any]:
        state = get_when_available(self.learner.state.remote, STATE_TIMEOUT_S)
        if self.cfg.checkpoint.save_replay:
            state["replay"] = get_when_available(self.replay.state.remote, STATE_TIMEOUT_S)
        return state

    def finish(self, reason: str, checkpoint: bool = True) -> dict[str, Any]:
        """Drains the rollout calls and pushes in flight (for at most `STOP_DRAIN_S`), so the
        final counts are exact unless an actor is frozen."""
        if self._training:
            deadline = time.monotonic() + STOP_DRAIN_S
            for outcome in self.fleet.drain(STOP_DRAIN_S):
                if not self.evaluation.take(outcome) and not outcome.failed:
                    self._on_collect(outcome.value)
            actors = self.fleet.actors
            busy = [i for i in range(len(actors)) if self.fleet.busy(i)]  # a flush would queue
            flushes = {actors[i].flush.remote(): i for i in range(len(actors)) if i not in busy}
            wait_s = max(deadline - time.monotonic(), 0.0)
            done, _ = ray.wait(list(flushes), num_returns=len(flushes), timeout=wait_s)
            silent = sorted(busy + [i for ref, i in flushes.items() if ref not in done])
            if silent:
                logger.warning(
                    "rollout actor(s) %s did not answer within %.0fs; finishing without their "
                    "last steps",
                    silent,
                    STOP_DRAIN_S,
                )
            self._stats_ref = None  # a request sent before the drain would report stale counts
            self._refresh_replay_counts(wait_s=STATE_TIMEOUT_S)
        return super().finish(reason, checkpoint)

    def log_final(self) -> None:
        self._maybe_log(force=True)

    def summary_extra(self) -> dict[str, Any]:
        return latency_percentiles(self.sync_latencies)
