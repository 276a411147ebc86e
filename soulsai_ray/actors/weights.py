"""WeightStore: the newest published policy weights as ``(version, ObjectRef)``."""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class WeightStore:
    """Holds the newest weight version and a reference to its numpy state dict.

    The learner ``ray.put``s the weights once and publishes the reference here; rollout actors
    ask for it when they see a newer version, so each node holds one copy in its object store.
    References are wrapped in a list so that Ray passes them on instead of resolving them.
    """

    def __init__(self) -> None:
        self._version = -1
        self._ref: list[ray.ObjectRef] = []
        self._starts: dict[str, int] = {}

    def register_start(self, role: str) -> int:
        """Counts a (re)start of the actor ``role`` (e.g. ``rollout-3``); returns its restarts."""
        self._starts[role] = self._starts.get(role, 0) + 1
        return self._starts[role] - 1

    def restarts(self) -> dict[str, int]:
        """Restarts per role prefix (``rollout``, ``learner``, ``replay``) so far."""
        totals: dict[str, int] = {}
        for role, starts in self._starts.items():
            kind = role.split("-")[0]
            totals[kind] = totals.get(kind, 0) + starts - 1
        return totals

    def publish(self, version: int, ref: list[ray.ObjectRef]) -> None:
        """Stores ``ref[0]`` as the weights of ``version`` if it is newer than what is held."""
        if version > self._version:
            self._version, self._ref = version, ref

    def latest(self) -> tuple[int, list[ray.ObjectRef]]:
        """The newest ``(version, [ref])``; version -1 and an empty list before any publish."""
        return self._version, self._ref

    def version(self) -> int:
        """The newest version number."""
        return self._version
