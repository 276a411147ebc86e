"""RolloutActor: runs one env with the newest policy and pushes n-step transitions to replay."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import ray
import torch
from ray.exceptions import RayActorError

from soulsai_ray.actors.replay import AddReceipt
from soulsai_ray.algos.exploration import apex_epsilon, linear_epsilon
from soulsai_ray.config import TrainConfig
from soulsai_ray.envs import EnvSpec, make_env
from soulsai_ray.sampling import EpsilonGreedySampler

POLL_CHECK_EVERY = 8
PUSH_TIMEOUT_S = 60.0
WEIGHTS_TIMEOUT_S = 120.0


@dataclass
class CollectReport:
    """What one ``collect`` call did."""

    actor_index: int
    node_id: str
    env_steps: int
    returns: list[float]
    lengths: list[int]
    env_errors: int
    epsilon: float
    version: int
    accepted: int = 0
    stale: int = 0
    invalid: int = 0
    lag_sum: int = 0
    errors: list[str] = field(default_factory=list)
    weight_loads: list[tuple[int, float]] = field(default_factory=list)
    """(version, wall time) of each weight version this actor installed."""


@ray.remote
class RolloutActor:
    """Samples with epsilon-greedy exploration; never waits for the learner.

    Each ``collect`` call runs the env for up to ``collect_steps`` steps or ``collect_time_s``
    seconds, pushes completed transitions to replay every ``push_every`` transitions with at most
    ``max_inflight_pushes`` unacknowledged, and polls the weight store every
    ``weight_sync_every`` steps without blocking.
    """

    def __init__(
        self, cfg: TrainConfig, index: int, num_actors: int, replay: str, weight_store: str
    ) -> None:
        torch.set_num_threads(cfg.cluster.torch_threads)
        self.cfg = cfg.algo
        self.index = index
        self.num_actors = max(num_actors, index + 1)
        # Peers are passed by name: handles as constructor arguments would pin objects that a
        # restarted actor depends on.
        self.replay = ray.get_actor(replay)
        self.weight_store = ray.get_actor(weight_store)
        self.weight_store.register_start.remote(f"rollout-{index}")
        self.node_id = ray.get_runtime_context().get_node_id()
        env_cfg = cfg.env
        self.sampler = EpsilonGreedySampler(
            lambda: make_env(env_cfg),
            cfg.algo,
            seed=cfg.seed + 1000 * (index + 1),
            hard_reset_every_s=env_cfg.hard_reset_every_s,
        )
        self._push_refs: list[ray.ObjectRef] = []
        self._poll_ref: ray.ObjectRef | None = None
        self._steps_since_sync = 0
        self._receipts: list[AddReceipt] = []
        self._weight_loads: list[tuple[int, float]] = []
        self._errors: list[str] = []

    def spec(self) -> EnvSpec:
        """Observation size and number of actions of this actor's env."""
        return EnvSpec(int(self.sampler.env.observation_space.shape[0]), self.sampler.num_actions)

    def pid(self) -> int:
        """Process id (used by fault-injection tests and operators)."""
        return os.getpid()

    def epsilon(self, global_env_steps: int) -> float:
        """This actor's exploration rate at the given global step count."""
        c = self.cfg
        if c.per_actor_eps:
            return apex_epsilon(self.index, self.num_actors, c.apex_eps_base, c.apex_eps_alpha)
        return linear_epsilon(global_env_steps, c.eps_start, c.eps_end, c.eps_decay_steps)

    def collect(self, global_env_steps: int) -> CollectReport:
        """Samples for a while and reports finished episodes and replay's verdicts."""
        if self.sampler.version < 0:
            self._sync_weights(blocking=True)
        eps = self.epsilon(global_env_steps)
        deadline = time.monotonic() + self.cfg.collect_time_s
        for step in range(self.cfg.collect_steps):
            self.sampler.step(eps)
            self._steps_since_sync += 1
            if self._steps_since_sync >= self.cfg.weight_sync_every or (
                self._poll_ref is not None and step % POLL_CHECK_EVERY == 0
            ):
                self._sync_weights(blocking=False)
            if (step + 1) % self.cfg.push_every == 0:
                self._push()
            if time.monotonic() > deadline:
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
        chunk = self.sampler.pop_transitions()
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
        self._push_refs.append(self.replay.add.remote(chunk, self.index, self.node_id))

    def _take_receipts(self, refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            try:
                self._receipts.append(ray.get(ref))
            except RayActorError:  # replay died; Ray restarts it and pushes go on
                self._errors.append("a push was lost: replay restarted before acknowledging it")

    def _sync_weights(self, blocking: bool) -> None:
        if self._poll_ref is None:
            self._poll_ref = self.weight_store.latest.remote()
            self._steps_since_sync = 0
            if not blocking:
                return
        ready, _ = ray.wait([self._poll_ref], timeout=WEIGHTS_TIMEOUT_S if blocking else 0)
        if blocking and not ready:
            self._poll_ref = None
            raise TimeoutError(f"the weight store did not answer within {WEIGHTS_TIMEOUT_S:.0f}s")
        if not ready:
            return
        version, ref = ray.get(self._poll_ref)
        self._poll_ref = None
        if version > self.sampler.version and ref:
            self.sampler.load_weights(ray.get(ref[0]), version)
            self._weight_loads.append((version, time.time()))

    def _report(self, eps: float) -> CollectReport:
        if self._push_refs:
            done, self._push_refs = ray.wait(
                self._push_refs, num_returns=len(self._push_refs), timeout=0
            )
            self._take_receipts(done)
        receipts, self._receipts = self._receipts, []
        errors, self._errors = self._errors, []
        stats = self.sampler.pop_stats()
        return CollectReport(
            actor_index=self.index,
            node_id=self.node_id,
            env_steps=stats.env_steps,
            returns=stats.returns,
            lengths=stats.lengths,
            env_errors=stats.env_errors,
            epsilon=eps,
            version=self.sampler.version,
            accepted=sum(r.accepted for r in receipts),
            stale=sum(r.stale for r in receipts),
            invalid=sum(r.invalid for r in receipts),
            lag_sum=sum(r.lag_sum for r in receipts),
            errors=errors + [r.error for r in receipts if r.error],
            weight_loads=self._pop_weight_loads(),
        )

    def _pop_weight_loads(self) -> list[tuple[int, float]]:
        loads, self._weight_loads = self._weight_loads, []
        return loads
