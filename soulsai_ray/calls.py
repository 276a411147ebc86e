"""Calls in flight to a set of actors, their failures and their progress deadlines (no Ray).

The Ray side (:class:`~soulsai_ray.loops.fleet.RolloutFleet`) submits calls and feeds outcomes
in; these classes only keep the books, so they are unit tested without a cluster::

    calls = InFlight()
    calls.submit(index, ref)                  # ref: any hashable handle of a pending call
    calls.count(index) < cap                  # per-actor in-flight cap
    index, extra = calls.pop(ref)             # when ref is ready
    calls.drop(index)                         # forget the calls of an actor that was killed

    health = ActorHealth()
    health.failed(index)   -> True once per outage (the first failed call after a success)
    health.succeeded(index) -> seconds the outage lasted if the actor was down, else None

    stalls = StallWatch(timeout_s=60)
    stalls.report(index, busy_s, now)         # the actor's env call has run busy_s seconds
    stalls.stalled(now)   -> indices whose env call (or the heartbeat itself) overran timeout_s
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    """One call in flight."""

    key: int
    submitted_at: float
    extra: Any = None
    """Whatever travels with the call (e.g. PPO's batch reference)."""


class InFlight:
    """The calls in flight to each actor of a set, keyed by the call's handle."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._calls: dict[Hashable, Call] = {}
        self._clock = clock

    def submit(self, key: int, ref: Hashable, extra: Any = None) -> None:
        """Records a call to actor ``key`` whose result arrives as ``ref``."""
        self._calls[ref] = Call(key, self._clock(), extra)

    def count(self, key: int) -> int:
        """Calls in flight to actor ``key``."""
        return sum(call.key == key for call in self._calls.values())

    def keys(self) -> set[int]:
        """Actors with at least one call in flight."""
        return {call.key for call in self._calls.values()}

    def refs(self) -> list[Hashable]:
        """Every pending handle (for ``ray.wait``)."""
        return list(self._calls)

    def pop(self, ref: Hashable) -> Call | None:
        """Forgets a finished call; None if it was dropped before."""
        return self._calls.pop(ref, None)

    def drop(self, key: int) -> list[Hashable]:
        """Forgets every call of actor ``key`` (it was killed); returns their handles."""
        return [ref for ref, _ in self.drop_calls(key)]

    def drop_calls(self, key: int) -> list[tuple[Hashable, Call]]:
        """Like :meth:`drop`, with each call's record (its ``extra`` included)."""
        dropped = [(ref, call) for ref, call in self._calls.items() if call.key == key]
        for ref, _ in dropped:
            del self._calls[ref]
        return dropped

    def __len__(self) -> int:
        return len(self._calls)


class ActorHealth:
    """Which actors are up, and how many outages the caller has seen.

    An actor is up until a call fails and up again once a call succeeds; the failed calls of
    one outage (the actor restarting, or its node gone) count once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._down: dict[int, float] = {}
        """Actors that are down, with when they went down."""
        self._clock = clock
        self.outages = 0

    def failed(self, key: int, count: bool = True) -> bool:
        """Records a failed call; True if actor ``key`` just went down.

        ``count=False`` marks it down without counting an outage (one counted elsewhere, such
        as a stall).
        """
        if key in self._down:
            return False
        self._down[key] = self._clock()
        self.outages += count
        return True

    def succeeded(self, key: int) -> float | None:
        """Records a successful call; returns how long actor ``key`` was down, None if it was up."""
        since = self._down.pop(key, None)
        return None if since is None else self._clock() - since

    def is_up(self, key: int) -> bool:
        return key not in self._down

    def num_up(self, keys: range) -> int:
        """How many of ``keys`` are up."""
        return sum(key not in self._down for key in keys)


@dataclass
class _Probe:
    sent_at: float
    busy_s: float = 0.0
    answered_at: float | None = None


class StallWatch:
    """Progress deadline of the env call each busy actor is running.

    A rollout actor answers heartbeats from a separate thread with how long its current env
    step or reset has been running. It is stalled when that exceeds ``timeout_s``, or when a
    heartbeat goes unanswered for ``timeout_s`` (the whole process is frozen).
    """

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._probes: dict[int, _Probe] = {}

    @property
    def enabled(self) -> bool:
        return self.timeout_s is not None

    @property
    def probe_every_s(self) -> float:
        """How often to send heartbeats: often enough to catch a stall within 1.25 timeouts."""
        return min(max((self.timeout_s or 0.0) / 4, 0.1), 5.0)

    def sent(self, key: int, now: float) -> None:
        """A heartbeat to actor ``key`` was sent at ``now``."""
        previous = self._probes.get(key)
        if previous is None or previous.answered_at is not None:
            self._probes[key] = _Probe(sent_at=now)

    def awaiting(self, key: int) -> bool:
        """True while a heartbeat to ``key`` is unanswered."""
        probe = self._probes.get(key)
        return probe is not None and probe.answered_at is None

    def report(self, key: int, busy_s: float, now: float) -> None:
        """Actor ``key`` answered: its env call has been running for ``busy_s`` seconds."""
        self._probes[key] = _Probe(sent_at=now, busy_s=busy_s, answered_at=now)

    def forget(self, key: int) -> None:
        """Stops watching ``key`` (it is idle, restarting or was killed)."""
        self._probes.pop(key, None)

    def stalled(self, now: float) -> list[int]:
        """Actors past their deadline (each is reported until :meth:`forget`)."""
        if self.timeout_s is None:
            return []
        out = []
        for key, probe in self._probes.items():
            unanswered_for = now - probe.sent_at if probe.answered_at is None else 0.0
            if max(probe.busy_s, unanswered_for) > self.timeout_s:
                out.append(key)
        return out


class NodeMembership:
    """Which nodes of the cluster are alive, and how many joined and were lost since the start.

    Fed with the alive nodes (id -> address) as the control store lists them; the first listing
    is the baseline. A game PC that drops off and rejoins is one node lost and one joined (Ray
    gives it a new node id).
    """

    def __init__(self) -> None:
        self._alive: dict[str, str] | None = None
        self.joined = 0
        self.lost = 0

    @property
    def num_alive(self) -> int:
        return len(self._alive or {})

    def update(self, alive: dict[str, str]) -> tuple[list[str], list[str]]:
        """Records the nodes alive now; returns the addresses of those that joined and were lost."""
        before, self._alive = self._alive, dict(alive)
        if before is None:
            return [], []
        joined = [alive[n] for n in alive.keys() - before.keys()]
        lost = [before[n] for n in before.keys() - alive.keys()]
        self.joined += len(joined)
        self.lost += len(lost)
        return sorted(joined), sorted(lost)
