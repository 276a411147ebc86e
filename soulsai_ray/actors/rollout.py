"""RolloutActor: runs one env with the newest policy and pushes n-step transitions (or, with
algo.replay_layout frames, env steps) to replay."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ray

from soulsai_ray.actors.shell import HEALTH_GROUPS, RolloutShell, rollout_seed
from soulsai_ray.actors.weight_client import WEIGHTS_TIMEOUT_S, WeightClient
from soulsai_ray.algos.exploration import actor_epsilon
from soulsai_ray.config import TrainConfig
from soulsai_ray.sampling.epsilon_greedy import EpsilonGreedySampler

PUSH_TIMEOUT_S = 60.0


@dataclass
class CollectReport:
    """What one ``collect`` call did (replay's verdicts on the data reach the driver from replay)."""

    actor_index: int
    node_id: str
    env_steps: int
    returns: list[float]
    lengths: list[int]
    episode_metrics: list[dict[str, float]]
    """What the env reported per finished episode (``info["episode_metrics"]``)."""
    env_errors: int
    invalid_steps: int
    """Steps whose observation or reward was corrupt (dropped with their episode)."""
    epsilon: float
    version: int
    errors: list[str] = field(default_factory=list)
    weight_loads: list[tuple[int, float]] = field(default_factory=list)
    """(version, wall time) of each weight version this actor installed."""


@ray.remote(concurrency_groups=HEALTH_GROUPS)
class RolloutActor(RolloutShell):
    """Samples with epsilon-greedy exploration; never waits for the learner.

    Each ``collect`` call runs the env for up to ``collect_steps`` steps or ``collect_time_s``
    seconds, and pushes completed transitions to replay every ``push_every`` transitions with at
    most ``max_inflight_pushes`` unacknowledged. Its :class:`WeightClient` fetches each new
    weight version in the background as it is published; the actor installs the newest at its
    next env step once ``weight_sync_every`` steps or ``weight_sync_max_s`` seconds have passed
    since the last install (on a slow env the seconds come first), never waiting for it.
    """

    def __init__(
        self, cfg: TrainConfig, index: int, num_actors: int | None, replay: str, weight_store: str
    ) -> None:
        """Args:
        cfg: The run config.
        index: This actor's index in the fleet.
        num_actors: Fleet size for Ape-X epsilons; None for an elastic (``auto``) fleet.
        replay: Name of the replay actor (looked up when first needed; it may restart).
        weight_store: Name of the weight store.
        """
        self._setup(cfg, index)
        self.cfg = cfg.algo
        self.num_actors = num_actors
        self._replay_name = replay
        self._replay: ray.actor.ActorHandle | None = None
        self.weights = WeightClient(ray.get_actor(weight_store))
        self.sampler = EpsilonGreedySampler.for_run(cfg, rollout_seed(cfg, index))
        self._push_refs: list[ray.ObjectRef] = []
        self._steps_since_sync = 0
        self._synced_at = time.monotonic()
        self._weight_loads: list[tuple[int, float]] = []
        self._errors: list[str] = []

    def epsilon(self, global_env_steps: int) -> float:
        """This actor's exploration rate at the given global step count."""
        return actor_epsilon(self.cfg, self.index, self.num_actors, global_env_steps)

    def collect(self, global_env_steps: int) -> CollectReport:
        """Samples for a while and reports finished episodes and faults."""
        if self.sampler.version < 0:
            self._install_weights(blocking=True)
        eps = self.epsilon(global_env_steps)
        self.sampler.set_n_step(self.cfg.n_step_at(global_env_steps))
        deadline = time.monotonic() + self.cfg.collect_time_s
        for step in range(self.cfg.collect_steps):
            self.sampler.step(eps)
            self._steps_since_sync += 1
            now = time.monotonic()  # one clock read per step for the sync and the deadline
            if (
                self._steps_since_sync >= self.cfg.weight_sync_every
                or now - self._synced_at >= self.cfg.weight_sync_max_s
            ):
                self._install_weights()
            if (step + 1) % self.cfg.push_every == 0:
                self._push()
            if now > deadline:
                break
        self._push()
        return self._report(eps)

    def flush(self) -> int:
        """Waits (bounded) until replay acknowledged every push; returns how many are still open."""
        if self._push_refs:
            done, self._push_refs = ray.wait(
                self._push_refs, num_returns=len(self._push_refs), timeout=PUSH_TIMEOUT_S
            )
            self._take_receipts(done)
        return len(self._push_refs)

    def _push(self) -> None:
        chunk = self.sampler.pop_batch()
        if chunk is None:
            return
        while len(self._push_refs) >= self.cfg.max_inflight_pushes:
            done, self._push_refs = ray.wait(self._push_refs, num_returns=1, timeout=PUSH_TIMEOUT_S)
            if not done:
                self._errors.append(
                    f"replay did not acknowledge a push within {PUSH_TIMEOUT_S:.0f}s"
                )
                continue
            self._take_receipts(done)
        if self._replay is None:  # created after the rollout actors, once the env spec is known
            self._replay = ray.get_actor(self._replay_name)
        self._push_refs.append(self._replay.add.remote(chunk, self.index, self.node_id))

    def _take_receipts(self, refs: list[ray.ObjectRef]) -> None:
        """Collects push acknowledgements; replay counts and logs the batches it rejects."""
        for ref in refs:
            try:
                ray.get(ref)
            except ray.exceptions.RayError:  # replay died; Ray restarts it and pushes go on
                self._errors.append("a push was lost: replay restarted before acknowledging it")

    def _install_weights(self, blocking: bool = False) -> None:
        """Installs the newest weights the client fetched (``blocking``: waits for the first)."""
        newest = self.weights.wait(WEIGHTS_TIMEOUT_S) if blocking else self.weights.take()
        if newest is None:
            return
        version, weights = newest
        self.sampler.load_weights(weights, version)
        self._weight_loads.append((version, time.time()))
        self._steps_since_sync = 0
        self._synced_at = time.monotonic()

    def _report(self, eps: float) -> CollectReport:
        if self._push_refs:
            done, self._push_refs = ray.wait(
                self._push_refs, num_returns=len(self._push_refs), timeout=0
            )
            self._take_receipts(done)
        errors, self._errors = self._errors + self.weights.pop_errors(), []
        loads, self._weight_loads = self._weight_loads, []
        stats = self.sampler.pop_stats()
        return CollectReport(
            actor_index=self.index,
            node_id=self.node_id,
            env_steps=stats.env_steps,
            returns=stats.returns,
            lengths=stats.lengths,
            episode_metrics=stats.metrics,
            env_errors=stats.env_errors,
            invalid_steps=stats.invalid_steps,
            epsilon=eps,
            version=self.sampler.version,
            errors=errors,
            weight_loads=loads,
        )
