"""WeightStore: the newest published policy weights as ``(version, ObjectRef)``."""

from __future__ import annotations

import asyncio

import ray


@ray.remote(num_cpus=0)
class WeightStore:
    """Holds the newest weight version and a reference to its numpy state dict.

    The learner ``ray.put``s the weights once and publishes the reference here; rollout actors
    keep one ``wait_newer`` call open, which answers as soon as a version other than theirs is
    published, so new weights reach them without polling. Each node holds one copy of a version
    in its object store. References are wrapped in a list so that Ray passes them on instead of
    resolving them. A store restarted by Ray starts empty; the driver then has the learner
    publish again. It is an asyncio actor: open ``wait_newer`` calls cost no thread.
    """

    def __init__(self) -> None:
        self._version = -1
        self._ref: list[ray.ObjectRef] = []
        self._published = asyncio.Event()
        """Set (and replaced) at every publish; waiters wake up and look at the version."""

    async def publish(self, version: int, ref: list[ray.ObjectRef]) -> None:
        """Stores ``ref[0]`` as the weights of ``version`` if it is newer than what is held."""
        if version > self._version:
            self._version, self._ref = version, ref
            published, self._published = self._published, asyncio.Event()
            published.set()

    async def latest(self) -> tuple[int, list[ray.ObjectRef]]:
        """The newest ``(version, [ref])``; version -1 and an empty list before any publish."""
        return self._version, self._ref

    async def wait_newer(self, version: int, timeout_s: float) -> tuple[int, list[ray.ObjectRef]]:
        """Like :meth:`latest`, but first waits (up to ``timeout_s``) until a version other than
        ``version`` is held; after the timeout it answers with what it holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._version < 0 or self._version == version:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._published.wait(), remaining)
            except TimeoutError:
                break
        return self._version, self._ref
