"""WeightStore: the newest published policy weights as ``(version, ObjectRef)``."""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class WeightStore:
    """Holds the newest weight version and a reference to its numpy state dict.

    The learner ``ray.put``s the weights once and publishes the reference here; rollout actors
    ask for it when they see a newer version, so each node holds one copy in its object store.
    References are wrapped in a list so that Ray passes them on instead of resolving them.
    A store restarted by Ray starts empty; the driver then has the learner publish again.
    """

    def __init__(self) -> None:
        self._version = -1
        self._ref: list[ray.ObjectRef] = []

    def publish(self, version: int, ref: list[ray.ObjectRef]) -> None:
        """Stores ``ref[0]`` as the weights of ``version`` if it is newer than what is held."""
        if version > self._version:
            self._version, self._ref = version, ref

    def latest(self) -> tuple[int, list[ray.ObjectRef]]:
        """The newest ``(version, [ref])``; version -1 and an empty list before any publish."""
        return self._version, self._ref
