"""The rollout actors of a run: creation, placement, elastic scaling, and every call made to them.

Both loops talk to their rollout actors only through :class:`RolloutFleet`: it submits calls
with a per-actor in-flight cap, waits for results, turns failures into outages, watches the
progress of every running call (the stall watchdog), and reads restart counts from the GCS::

    fleet = RolloutFleet(cfg, make_actor)
    fleet.start()
    fleet.fill(cap=2, call=lambda actor: actor.collect.remote(steps))
    outcomes, ready = fleet.poll(timeout_s=0.2, also=[learner_ref])
    for o in outcomes: ...                      # o.value is the result, or None if o.failed
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayError, TaskCancelledError

from soulsai_ray.calls import ActorHealth, InFlight, StallWatch
from soulsai_ray.cluster import actor_status
from soulsai_ray.config import TrainConfig

logger = logging.getLogger(__name__)

SCALE_CHECK_EVERY_S = 2.0
RETRY_DOWN_S = 1.0
"""Pause before the next call to an actor whose last call failed (it is restarting)."""


def resource_slots(resources: dict[str, float]) -> int:
    """How many actors needing ``resources`` the cluster's nodes can host in total."""
    totals = ray.cluster_resources()
    return min(
        math.floor(totals.get(name, 0.0) / amount + 1e-9) for name, amount in resources.items()
    )


@dataclass
class Outcome:
    """A finished call of rollout actor ``index``."""

    index: int
    value: Any
    """The call's result; None if it failed."""
    extra: Any
    """What was submitted with the call (e.g. PPO's batch reference)."""
    failed: bool


class RolloutFleet:
    """Creates rollout actors, keeps their number at the configured (or ``auto``) size, and owns
    every call made to them.

    With ``cluster.num_rollout_actors: auto`` there is one actor per slot of the resources in
    ``env.actor_resources``: a game PC that joins gets an actor within ``SCALE_CHECK_EVERY_S``.
    Actors are restarted by Ray (``cluster.actor_max_restarts``); one whose node died waits for the
    resource to come back. With ``env.step_timeout_s`` set, an actor whose env step or reset runs
    longer is killed (Ray restarts it) and counted as a stall.
    """

    def __init__(self, cfg: TrainConfig, make_actor: Callable[[dict[str, Any], int], Any]) -> None:
        """Args:
        cfg: The run config.
        make_actor: ``(ray_options, index) -> handle``; must call ``.options(**ray_options)``
            on its actor class itself.
        """
        self.cfg = cfg
        self._make_actor = make_actor
        self.auto = cfg.cluster.num_rollout_actors == "auto"
        self.actors: list[Any] = []
        self.calls = InFlight()
        self.health = ActorHealth()
        self.watch = StallWatch(cfg.env.step_timeout_s)
        self.stalls = 0
        self._heartbeats: dict[ray.ObjectRef, int] = {}
        self._retry_at: dict[int, float] = {}
        self._probe_restarts: dict[int, int] = {}
        self._killed_at_restarts: dict[int, int] = {}
        self._last_probe = 0.0
        self._last_scale_check = 0.0

    @property
    def options(self) -> dict[str, Any]:
        """Ray options every rollout actor is created with."""
        cluster = self.cfg.cluster
        return {
            "num_cpus": cluster.rollout_num_cpus,
            "resources": dict(self.cfg.env.actor_resources) or None,
            "max_restarts": cluster.actor_max_restarts,
        }

    @property
    def fixed_size(self) -> int | None:
        """The configured number of actors; None for an ``auto`` fleet."""
        return None if self.auto else int(self.cfg.cluster.num_rollout_actors)

    def target_size(self) -> int:
        """The number of actors the fleet should have now."""
        if not self.auto:
            return int(self.cfg.cluster.num_rollout_actors)
        return max(resource_slots(self.cfg.env.actor_resources), 1)

    def start(self) -> None:
        """Creates the initial actors."""
        self._grow(self.target_size())

    def maybe_scale(self) -> list[int]:
        """In ``auto`` mode, adds actors for new resource slots; returns the new indices."""
        now = time.monotonic()
        if not self.auto or now - self._last_scale_check < SCALE_CHECK_EVERY_S:
            return []
        self._last_scale_check = now
        return self._grow(self.target_size())

    # --- calls --------------------------------------------------------------------------------

    def fill(
        self, cap: int, call: Callable[[Any], Any], indices: Sequence[int] | None = None
    ) -> None:
        """Submits ``call(actor)`` to every actor (or ``indices``) until each has ``cap`` in flight.

        ``call`` returns the result's ref, or ``(ref, extra)`` to keep ``extra`` with the call.
        An actor whose last call failed gets the next one only after ``RETRY_DOWN_S``.
        """
        now = time.monotonic()
        for index in range(len(self.actors)) if indices is None else indices:
            if now < self._retry_at.get(index, 0.0):
                continue
            for _ in range(cap - self.calls.count(index)):
                self.submit(index, call)

    def submit(self, index: int, call: Callable[[Any], Any]) -> None:
        """Submits one ``call(actor)`` to actor ``index`` on top of its cap (an evaluation).

        ``call`` returns the result's ref, or ``(ref, extra)`` as for :meth:`fill`.
        """
        submitted = call(self.actors[index])
        ref, extra = submitted if isinstance(submitted, tuple) else (submitted, None)
        self.calls.submit(index, ref, extra)

    def available(self) -> list[int]:
        """Actors that are up and not pausing after a failure (for a one-off call)."""
        now = time.monotonic()
        return [
            index
            for index in range(len(self.actors))
            if self.health.is_up(index) and now >= self._retry_at.get(index, 0.0)
        ]

    def busy(self, index: int) -> bool:
        """True while actor ``index`` has a call in flight."""
        return self.calls.count(index) > 0

    def poll(
        self, timeout_s: float, also: Sequence[ray.ObjectRef] = ()
    ) -> tuple[list[Outcome], list[ray.ObjectRef]]:
        """Waits up to ``timeout_s`` for any call (or any of ``also``) to finish.

        Returns:
            The finished rollout calls, and which of ``also`` are ready.
        """
        self._probe_progress()
        pending = [*self.calls.refs(), *self._heartbeats, *also]
        if not pending:
            time.sleep(timeout_s)  # nothing to wait for: never spin
            return [], []
        ready, rest = ray.wait(pending, num_returns=1, timeout=timeout_s)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        wanted = set(also)
        extra_ready = [ref for ref in ready if ref in wanted]
        outcomes = [o for ref in ready if (o := self._finish(ref)) is not None]
        outcomes += self._kill_stalled()
        return outcomes, extra_ready

    def drain(self, timeout_s: float) -> list[Outcome]:
        """Cancels queued calls and waits (bounded) for running ones; returns their outcomes.

        The stall watchdog keeps watching meanwhile: a call stuck in a frozen env ends as a
        failed outcome once ``env.step_timeout_s`` has passed, not at ``timeout_s``.
        """
        for ref in self.calls.refs():
            ray.cancel(ref)  # queued calls are dropped; running ones complete
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + timeout_s
        while len(self.calls) and (remaining := deadline - time.monotonic()) > 0:
            finished, _ = self.poll(min(remaining, 0.5))
            outcomes += finished
        return outcomes

    # --- health -------------------------------------------------------------------------------

    @property
    def num_alive(self) -> int:
        """Actors whose latest call did not fail (new actors count as alive)."""
        return self.health.num_up(range(len(self.actors)))

    @property
    def failures(self) -> int:
        """Outages seen: calls that failed, counted once per failure streak of an actor."""
        return self.health.outages

    def restarts(self) -> int:
        """Restarts of all rollout actors, as recorded by the GCS."""
        statuses = [actor_status(actor) for actor in self.actors]
        return sum(s.restarts for s in statuses if s is not None)

    def __len__(self) -> int:
        return len(self.actors)

    def _finish(self, ref: ray.ObjectRef) -> Outcome | None:
        if ref in self._heartbeats:
            self._on_heartbeat(ref)
            return None
        call = self.calls.pop(ref)
        if call is None:  # a call of an actor that was killed, or one of `also`
            return None
        try:
            value = ray.get(ref)
        except TaskCancelledError:
            return None
        except RayError as err:
            logger.debug("rollout actor %d: %s", call.key, err)
            if self.health.failed(call.key):
                logger.warning(
                    "rollout actor %d failed (%s); Ray restarts it when its resources are "
                    "available",
                    call.key,
                    type(err).__name__,
                )
            self._retry_at[call.key] = time.monotonic() + RETRY_DOWN_S
            return Outcome(call.key, None, call.extra, failed=True)
        down_s = self.health.succeeded(call.key)
        if down_s is not None:
            logger.info("rollout actor %d is back after %.0fs", call.key, down_s)
        return Outcome(call.key, value, call.extra, failed=False)

    def _probe_progress(self) -> None:
        """Sends heartbeats to busy actors (at most one outstanding per actor)."""
        if not self.watch.enabled:
            return
        now = time.monotonic()
        busy = self.calls.keys()
        for index in range(len(self.actors)):
            if index not in busy:
                self.watch.forget(index)
        if now - self._last_probe < self.watch.probe_every_s:
            return
        self._last_probe = now
        for index in busy:
            if self.watch.awaiting(index):
                continue
            status = actor_status(self.actors[index])
            if (
                status is None
                or status.state != "ALIVE"
                or status.restarts <= self._killed_at_restarts.get(index, -1)
            ):
                continue  # restarting (or not yet known to be): a heartbeat would wait too
            self._probe_restarts[index] = status.restarts
            self._heartbeats[self.actors[index].heartbeat.remote()] = index
            self.watch.sent(index, now)

    def _on_heartbeat(self, ref: ray.ObjectRef) -> None:
        index = self._heartbeats.pop(ref)
        try:
            busy_s = float(ray.get(ref))
        except RayError:
            self.watch.forget(index)  # the actor is down; its calls fail on their own
            return
        self.watch.report(index, busy_s, time.monotonic())

    def _kill_stalled(self) -> list[Outcome]:
        """Kills the actors whose env froze; their calls come back as failed outcomes."""
        dropped: list[Outcome] = []
        for index in self.watch.stalled(time.monotonic()):
            status = actor_status(self.actors[index])
            if (
                status is None
                or status.state != "ALIVE"
                or status.restarts != self._probe_restarts.get(index)
            ):
                # it restarted since the heartbeat was sent: the silence says nothing of its env
                self._forget_probes(index)
                continue
            self.stalls += 1
            self._killed_at_restarts[index] = status.restarts
            logger.error(
                "rollout actor %d: its env has not returned from a step or reset within "
                "env.step_timeout_s=%.0fs; killing it (Ray restarts it)",
                index,
                self.watch.timeout_s,
            )
            ray.kill(self.actors[index], no_restart=False)
            self._forget_probes(index)
            for _, call in self.calls.drop_calls(index):
                dropped.append(Outcome(index, None, call.extra, failed=True))
            self.health.failed(index, count=False)
            self._retry_at[index] = time.monotonic() + RETRY_DOWN_S
        return dropped

    def _forget_probes(self, index: int) -> None:
        self.watch.forget(index)
        self._heartbeats = {r: i for r, i in self._heartbeats.items() if i != index}

    def _grow(self, size: int) -> list[int]:
        new = list(range(len(self.actors), size))
        for index in new:
            self.actors.append(self._make_actor(self.options, index))
        if new and self.auto:
            logger.info("rollout fleet grew to %d actors", size)
        return new
