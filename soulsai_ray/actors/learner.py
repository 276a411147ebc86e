"""LearnerActor: the DQN learner as a Ray actor, pulling batches from replay with prefetch."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayError

from soulsai_ray.actors.restore import load_payload
from soulsai_ray.actors.shell import next_version, setup_process
from soulsai_ray.algos.publish import PublishSchedule, resolve_device
from soulsai_ray.config import TrainConfig
from soulsai_ray.observations import ObsSpec
from soulsai_ray.replay import SampledBatch

MAX_INFLIGHT_PRIORITY_UPDATES = 4
SAMPLE_TIMEOUT_S = 60.0
REPUBLISH_TIMEOUT_S = 30.0

logger = logging.getLogger(__name__)


@dataclass
class TrainReport:
    """Summary of one ``train`` call."""

    updates: int
    """Updates done in this call."""
    total_updates: int
    version: int
    loss: float | None
    q_mean: float | None
    grad_norm: float | None
    busy_s: float
    nan_rollbacks: int
    """Updates and publishes rolled back because a number became NaN or inf, since the previous
    report (`NonFiniteGuard.take_rollbacks`)."""
    publishes: list[tuple[int, float]]
    """(version, wall time) of each publish during the call."""
    compiled: bool = False
    """The updates ran as one compiled graph (``algo.compile``, and compiling worked)."""


@ray.remote(num_cpus=0)
class LearnerActor:
    """Trains on batches from the :class:`ReplayActor` and publishes weights to the :class:`WeightStore`.

    One sample request is always in flight while the learner trains on the previous batches.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        obs_spec: ObsSpec,
        num_actions: int,
        replay: str,
        weight_store: str,
        checkpoint_dir: str,
        resume_path: str | None = None,
    ) -> None:
        setup_process(cfg)
        from soulsai_ray.algos.dqn import DQNLearner  # torch: here, not in the driver

        self.cfg = cfg.algo
        self.learner = DQNLearner(
            cfg.algo, obs_spec, num_actions, resolve_device(cfg.device), cfg.seed
        )
        self.replay = ray.get_actor(replay)
        self.weight_store = ray.get_actor(weight_store)
        self.version = 0
        payload = load_payload(checkpoint_dir, resume_path)
        if payload is not None:
            self.learner.load_state_dict(payload["learner"])
            self.version = int(payload["version"])
        self._pending_sample: ray.ObjectRef | None = None
        self._ready: list[SampledBatch] = []
        self._priority_refs: list[ray.ObjectRef] = []
        self._published: ray.ObjectRef | None = None
        self._publishes: list[tuple[int, float]] = []
        self._schedule = PublishSchedule(self.cfg.publish_every, self.cfg.publish_min_interval_s)
        self.publish(bump=False)

    def train(self, max_updates: int) -> TrainReport:
        """Runs up to ``max_updates`` updates (fewer when replay has too little data)."""
        start = time.perf_counter()
        losses, qs, norms = [], [], []
        done = 0
        while done < max_updates:
            batch = self._next_batch()
            if batch is None:
                break
            result = self.learner.update(batch)
            done += 1
            losses.append(result.loss)
            qs.append(result.q_mean)
            norms.append(result.grad_norm)
            if self.cfg.prioritized and not result.rolled_back:
                self._send_priorities(result.indices, result.td_errors)
            if self._schedule.due(self.learner.updates):
                self.publish()
        return TrainReport(
            updates=done,
            total_updates=self.learner.updates,
            version=self.version,
            loss=float(np.mean(losses)) if losses else None,
            q_mean=float(np.mean(qs)) if qs else None,
            grad_norm=float(np.nanmean(norms)) if norms else None,
            busy_s=time.perf_counter() - start,
            nan_rollbacks=self.learner.guard.take_rollbacks(),
            publishes=self._pop_publishes(),
            compiled=self.learner.compiled_update is not None,
        )

    def _pop_publishes(self) -> list[tuple[int, float]]:
        publishes, self._publishes = self._publishes, []
        return publishes

    def publish(self, bump: bool = True) -> int:
        """Puts the current weights in the object store and announces them as a new version."""
        self.learner.checkpoint_good_state()  # never hand non-finite weights to rollout actors
        self._schedule.published(self.learner.updates)
        if bump:
            self.version += 1
        self._published = ray.put(self.learner.policy_weights())
        # Replay hears of the version first: batches acted with it are then never "future".
        self.replay.observe_version.remote(self.version)
        self.weight_store.publish.remote(self.version, [self._published])
        self._publishes.append((self.version, time.time()))
        return self.version

    def republish(self, floor: int) -> int:
        """Publishes the current weights as a version above ``floor`` and above what the weight
        store holds (after a restart of the learner or the store); returns that version.

        A learner that died mid-call may have published versions the driver never heard of;
        the store's own version covers those.
        """
        try:
            held, _ = ray.get(self.weight_store.latest.remote(), timeout=REPUBLISH_TIMEOUT_S)
        except RayError:
            held = -1
        self.version = next_version(self.version, max(floor, held))
        return self.publish(bump=False)

    def ready(self) -> int:
        """Returns the published version once construction (and the first publish) is done."""
        return self.version

    def state(self) -> dict[str, Any]:
        """Learner state for a checkpoint."""
        return {"learner": self.learner.state_dict(), "version": self.version}

    def _next_batch(self) -> SampledBatch | None:
        if not self._ready:
            if self._pending_sample is None:
                self._pending_sample = self._request()
            pending, self._pending_sample = self._pending_sample, None
            try:
                batches = ray.get(pending, timeout=SAMPLE_TIMEOUT_S)
            except RayError as err:
                # Replay is restarting (Ray restarts it) or overloaded: no data this call; the
                # next call sends a new request.
                logger.warning("sampling from replay failed (%s); retrying", type(err).__name__)
                return None
            self._pending_sample = self._request()
            if not batches:
                return None
            self._ready = batches
        return self._ready.pop(0)

    def _request(self) -> ray.ObjectRef:
        beta = self.learner.per_beta() if self.cfg.prioritized else None
        return self.replay.sample.remote(
            self.cfg.sample_batches_per_call, self.cfg.batch_size, self.version, beta
        )

    def _send_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        if len(self._priority_refs) >= MAX_INFLIGHT_PRIORITY_UPDATES:
            _, self._priority_refs = ray.wait(
                self._priority_refs, num_returns=1, timeout=SAMPLE_TIMEOUT_S
            )
        self._priority_refs.append(self.replay.update_priorities.remote(indices, td_errors))
