"""``cluster=serial``: a run's samplers, replay and learner in one process, without Ray.

The same parts as a Ray run, called in lock-step instead of through actors: for debugging a new
env in a debugger, and for fast learning tests. The run writes what a Ray run writes
(TensorBoard, checkpoints that ``resume`` and ``scripts/evaluate.py`` read, ``summary.json``)
and honours the same config; what only a cluster has (restarts, nodes, the stall watchdog,
Prometheus) is absent::

    loop = SerialDQNLoop(cfg, recorder)   # or SerialPPOLoop
    summary = loop.run()                  # loop.stop() from a signal handler ends it early

DQN: the ``cluster.num_rollout_actors`` samplers take one env step each in turn; after each step
the learner makes the updates the replay ratio allows (:class:`ReplayRatio`, with no slack:
sampling never runs ahead), publishes on the learner's schedule, and each sampler installs the
newest weights every ``algo.weight_sync_every`` of its steps. A sampler's transitions reach
replay every ``algo.push_every`` of its steps, in one checked batch, as a rollout actor's do. PPO: each iteration every sampler
collects ``algo.n_steps`` with the current weights, then the learner updates on all of them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from soulsai_ray import metric_names as mn
from soulsai_ray.actors.shell import EvalReport, setup_process
from soulsai_ray.algos.exploration import actor_epsilon
from soulsai_ray.config import TrainConfig
from soulsai_ray.evaluation import GreedyPolicy, play_episodes
from soulsai_ray.inbound import Limits
from soulsai_ray.loops.common import Restore, RunRecorder
from soulsai_ray.loops.dqn_books import IntervalStats, ReplayCounts
from soulsai_ray.loops.evaluation import RunEvaluation
from soulsai_ray.loops.lifecycle import RunLoop
from soulsai_ray.loops.scalars import dqn_console, dqn_scalars, ppo_console, ppo_scalars
from soulsai_ray.replay_ratio import ReplayRatio

logger = logging.getLogger(__name__)

NODE = "serial"
"""The node id of every sample in a serial run."""


class SerialLoop(RunLoop):
    """What both serial loops share: in-process samplers, evaluation on the first sampler's env,
    and one interval of telemetry."""

    def __init__(
        self, cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None = None
    ) -> None:
        super().__init__(cfg, recorder, restore)
        self.payload = restore.payload if restore is not None else None
        self.samplers: list[Any] = []
        self.version = 0
        self.evaluation = RunEvaluation(self)
        self._greedy: GreedyPolicy | None = None
        self._last_log = time.monotonic()

    @property
    def num_samplers(self) -> int:
        """``cluster.num_rollout_actors``: a number in a serial config (validated)."""
        return int(self.cfg.cluster.num_rollout_actors)

    def num_actors(self) -> int:
        return len(self.samplers)

    def actors_alive(self) -> int:
        return len(self.samplers)

    def policy_weights(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def evaluate(self) -> None:
        """Plays a due evaluation now, on the first sampler's env (its training episode is
        given up, as on a rollout actor)."""
        schedule = self.evaluation.schedule
        if not schedule.due(self.counters.updates) or not self.samplers:
            return
        schedule.schedule_next(self.counters.updates)
        sampler = self.samplers[0]
        if self._greedy is None:
            self._greedy = GreedyPolicy(self.algo, sampler.obs_spec, sampler.num_actions)
        weights = self.policy_weights()
        self._greedy.load(weights, self.version)
        result = play_episodes(sampler, self._greedy, self.cfg.eval.episodes, sampler.num_actions)
        report = EvalReport(
            0, NODE, self.version, result.returns, result.lengths, result.metrics, result.env_errors
        )
        self.evaluation.record(self.version, report, lambda: weights)

    def logging_due(self) -> bool:
        return time.monotonic() - self._last_log >= self.cfg.telemetry.log_every_s

    def common_scalars(self) -> dict[str, float | int]:
        """Telemetry every serial loop writes: samplers and the counters' own."""
        return {
            mn.DIST_ACTORS_ALIVE: len(self.samplers),
            mn.DIST_ACTORS: len(self.samplers),
            **self.counters.scalars(),
        }

    def finish(self, reason: str, checkpoint: bool = True) -> dict[str, Any]:
        summary = super().finish(reason, checkpoint)
        for sampler in self.samplers:
            sampler.close()
        return summary


class SerialDQNLoop(SerialLoop):
    """DQN in one process; see the module doc."""

    algo_name = "dqn"

    def build(self) -> None:
        from soulsai_ray.algos.dqn import DQNLearner
        from soulsai_ray.algos.publish import PublishSchedule, resolve_device
        from soulsai_ray.replay_store import ReplayStore
        from soulsai_ray.sampling.epsilon_greedy import EpsilonGreedySampler

        setup_process(self.cfg)  # torch threads, as in an actor: the learner shares this process
        cfg, a = self.cfg, self.algo
        self.samplers = [
            EpsilonGreedySampler.for_run(cfg, cfg.env_seed(index))
            for index in range(self.num_samplers)
        ]
        obs_spec, num_actions = self.samplers[0].obs_spec, self.samplers[0].num_actions
        self.learner = DQNLearner(a, obs_spec, num_actions, resolve_device(cfg.device), cfg.seed)
        saved = None
        if self.payload is not None:
            self.learner.load_state_dict(self.payload["learner"])
            self.version = int(self.payload["version"])
            saved = (self.payload.get("replay") or {}).get("buffer")
        limits = Limits.for_run(cfg, obs_spec, num_actions)
        self.replay = ReplayStore(a, limits, cfg.seed, saved, self.version)
        self.payload = None  # the learner and replay hold their state now
        self.ratio = ReplayRatio(a.replay_ratio, a.batch_size, a.learning_starts, None)
        self.ratio.reset(held=len(self.replay))
        self.replay_counts = ReplayCounts(self.counters)
        # Every publish_every updates, without the wall-time floor of a distributed run (which
        # bounds the version rate for max_model_lag): a serial run is the same at any speed.
        self.schedule = PublishSchedule(a.publish_every, 0.0)
        self.interval = IntervalStats()
        self._synced = [0] * len(self.samplers)
        self._unpushed = [0] * len(self.samplers)
        self._publish(bump=False)
        for sampler in self.samplers:
            sampler.load_weights(self._weights, self.version)

    def policy_weights(self) -> dict[str, np.ndarray]:
        return self._weights

    def _publish(self, bump: bool = True) -> None:
        self.learner.checkpoint_good_state()  # never hand non-finite weights to the samplers
        self.schedule.published(self.learner.updates)
        self.version += bump
        self.replay.observe_version(self.version)
        self._weights = self.learner.policy_weights()
        self.counters.weight_version = max(self.counters.weight_version, self.version)

    def step(self) -> None:
        """One env step of every sampler, each followed by the updates the ratio allows."""
        a, c = self.algo, self.counters
        for index, sampler in enumerate(self.samplers):
            sampler.set_n_step(a.n_step_at(c.env_steps))  # applies from the next episode
            epsilon = actor_epsilon(a, index, len(self.samplers), c.env_steps)
            sampler.step(epsilon)
            self.interval.epsilons.append(epsilon)
            self._synced[index] += 1
            if self._synced[index] >= a.weight_sync_every and sampler.version < self.version:
                sampler.load_weights(self._weights, self.version)
                self._synced[index] = 0
            self._unpushed[index] += 1
            if self._unpushed[index] >= a.push_every:
                self._unpushed[index] = 0
                batch = sampler.pop_batch()
                if batch is not None:
                    self.replay.add(batch, index, NODE)
            stats = sampler.pop_stats()
            steps = self.accept_report(
                index, NODE, stats.env_steps, stats.returns, stats.lengths, stats.metrics
            )
            c.env_errors += stats.env_errors
            c.env_invalid_steps += stats.invalid_steps
            self.interval.env_steps += steps
            self.ratio.inserted(steps)
            self._train(self.ratio.allowed_updates())
        if self.logging_due():
            self._log()

    def _train(self, updates: int) -> None:
        a, iv = self.algo, self.interval
        done = 0
        for _ in range(updates):
            batches = self.replay.sample(1, a.batch_size, self.version, self._beta())
            if not batches:
                break
            result = self.learner.update(batches[0])
            if a.prioritized and not result.rolled_back:
                self.replay.update_priorities(result.indices, result.td_errors)
            done += 1
            iv.losses.append(result.loss)
            iv.q_means.append(result.q_mean)
            iv.grad_norms.append(result.grad_norm)
            if self.schedule.due(self.learner.updates):
                self._publish()
        self.ratio.learned(done)
        iv.updates += done
        c = self.counters
        c.updates = self.learner.updates
        c.nan_rollbacks += self.learner.guard.take_rollbacks()
        c.samples_trained += done * a.batch_size

    def _beta(self) -> float | None:
        return self.learner.per_beta() if self.algo.prioritized else None

    def _count_samples(self) -> None:
        deltas = self.replay_counts.update(self.replay.stats())
        for node, samples in deltas["accepted_by_node"].items():
            self.node_samples.add(node, samples)
        self.rejections.merge(deltas["rejected_by_reason"], deltas["rejected_by_node"])

    def _log(self) -> None:
        self._count_samples()
        now = time.monotonic()
        c = self.counters
        scalars = dqn_scalars(self.interval, self.algo, c, now)
        self.record_scalars({**scalars, **self.common_scalars()})
        self.recorder.telemetry.update_console(
            c.env_steps, {**self.console_head(), **dqn_console(scalars, c)}
        )
        self.interval = IntervalStats(start=now)
        self._last_log = now

    def log_final(self) -> None:
        self._log()

    def checkpoint_state(self) -> dict[str, Any]:
        self._count_samples()
        state: dict[str, Any] = {"learner": self.learner.state_dict(), "version": self.version}
        if self.cfg.checkpoint.save_replay:
            state["replay"] = self.replay.state()
        return state


class SerialPPOLoop(SerialLoop):
    """PPO in one process; see the module doc."""

    algo_name = "ppo"

    def build(self) -> None:
        from soulsai_ray.algos.ppo import PPOLearner
        from soulsai_ray.algos.publish import resolve_device
        from soulsai_ray.sampling.on_policy import OnPolicySampler

        setup_process(self.cfg)  # torch threads, as in an actor: the learner shares this process
        cfg = self.cfg
        self.samplers = [
            OnPolicySampler.for_run(cfg, cfg.env_seed(index)) for index in range(self.num_samplers)
        ]
        obs_spec, num_actions = self.samplers[0].obs_spec, self.samplers[0].num_actions
        self.learner = PPOLearner(
            self.algo, obs_spec, num_actions, resolve_device(cfg.device), cfg.seed
        )
        self.gradient_steps = 0
        self.iteration = 0
        if self.payload is not None:
            self.learner.load_state_dict(self.payload["learner"])
            self.version = int(self.payload["version"])
            self.gradient_steps = int(self.payload["gradient_steps"])
        self.payload = None
        self._weights = self.learner.policy_weights()
        self._last_log_steps = self.counters.env_steps

    def policy_weights(self) -> dict[str, np.ndarray]:
        return self._weights

    def step(self) -> None:
        """One iteration: every sampler collects ``n_steps``, then one update on all of it."""
        batches, steps = [], 0
        for index, sampler in enumerate(self.samplers):
            if sampler.version != self.version:
                sampler.load_weights(self._weights, self.version)
            batch, stats = sampler.collect(self.algo.n_steps)
            steps += self.accept_report(
                index, NODE, stats.env_steps, stats.returns, stats.lengths, stats.metrics
            )
            self.counters.env_errors += stats.env_errors
            self.counters.env_invalid_steps += stats.invalid_steps
            if batch is not None:
                batches.append(batch)
                self.node_samples.add(NODE, len(batch))
        if not batches:
            return
        start = time.monotonic()
        stop_steps = self.cfg.stop.env_steps
        progress = min(self.counters.env_steps / stop_steps, 1.0) if stop_steps else 0.0
        metrics = self.learner.update(batches, progress)
        rolled_back = bool(metrics.get("rolled_back"))
        samples = 0 if rolled_back else int(metrics.get("samples", 0))
        minibatch = self.algo.minibatch_size
        self.gradient_steps += int(metrics.get("epochs_done", 0)) * -(-samples // minibatch)
        self.version += 1
        self.iteration += 1
        self._weights = self.learner.policy_weights()
        c = self.counters
        c.updates = self.gradient_steps
        c.weight_version = self.version
        c.nan_rollbacks += self.learner.guard.take_rollbacks()
        c.samples_accepted += sum(len(b) for b in batches)
        c.samples_trained += samples
        if self.logging_due():
            self._log(metrics, len(batches), time.monotonic() - start)

    def _log(self, m: dict[str, float], workers: int, update_s: float | None) -> None:
        now = time.monotonic()
        c = self.counters
        sps = (c.env_steps - self._last_log_steps) / max(now - self._last_log, 1e-9)
        scalars = ppo_scalars(m, sps, update_s, workers, self.iteration)
        self.record_scalars({**scalars, **self.common_scalars()})
        self.recorder.telemetry.update_console(
            c.env_steps, {**self.console_head(), **ppo_console(scalars)}
        )
        self._last_log, self._last_log_steps = now, c.env_steps

    def log_final(self) -> None:
        self._log({}, len(self.samplers), None)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "version": self.version,
            "gradient_steps": self.gradient_steps,
        }

    def summary_extra(self) -> dict[str, Any]:
        return {"iterations": self.iteration}
