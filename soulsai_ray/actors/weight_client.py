"""WeightClient: a rollout actor's view of the weight store, kept fresh by a background thread.

Like Acme's ``VariableClient.update(wait=False)``: a thread keeps one ``WeightStore.wait_newer``
call open, fetches a new version's weights as soon as it is published (while the env step
runs), and leaves it for the sampling thread to take between two env steps. It fetches the next
version only once the last one was taken, so an actor that installs rarely
(``algo.weight_sync_every``) also downloads rarely::

    client = WeightClient(store)
    version, weights = client.wait(timeout_s=120)   # the first weights (blocking)
    update = client.take()                          # newest not yet taken, or None (never blocks)
    client.pop_errors()                             # faults seen (store restarting, ...)
    client.close()                                  # stops the thread (before ray.shutdown)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import ray

LONG_POLL_S = 30.0
"""How long the weight store may hold a ``wait_newer`` call before answering with no news."""
WEIGHTS_TIMEOUT_S = 120.0
"""Longest wait for a weight store answer or a weights transfer."""
RETRY_S = (0.1, 2.0)
"""Pause after a failed call (the store restarting, weights freed): doubling from the first
value to the second while calls keep failing."""
ERRORS_KEPT = 16

Weights = dict[str, Any]


class WeightClient:
    """Follows the newest published weights; see the module docstring."""

    def __init__(self, store: ray.actor.ActorHandle) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._fresh = threading.Condition(self._lock)
        self._newest: tuple[int, Weights] | None = None
        """Fetched and not yet taken."""
        self._fetched = -1
        """The newest version fetched (the thread waits for a different one)."""
        self._errors: deque[str] = deque(maxlen=ERRORS_KEPT)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="weight-client", daemon=True)
        self._thread.start()

    def take(self) -> tuple[int, Weights] | None:
        """The newest fetched ``(version, weights)`` not yet taken; None if there is none."""
        if self._newest is None:  # called every env step: no lock while nothing has arrived
            return None
        with self._fresh:
            newest, self._newest = self._newest, None
            self._fresh.notify_all()
        return newest

    def wait(self, timeout_s: float) -> tuple[int, Weights]:
        """Like :meth:`take`, but waits up to ``timeout_s`` for weights to arrive.

        Raises:
            TimeoutError: nothing arrived in time.
        """
        with self._fresh:
            if not self._fresh.wait_for(lambda: self._newest is not None, timeout_s):
                raise TimeoutError(f"no weights arrived from the weight store in {timeout_s:.0f}s")
            newest, self._newest = self._newest, None
            self._fresh.notify_all()
        assert newest is not None
        return newest

    def pop_errors(self) -> list[str]:
        """Faults since the last call (at most ``ERRORS_KEPT``, newest kept)."""
        with self._lock:
            errors = list(self._errors)
            self._errors.clear()
        return errors

    def close(self, timeout_s: float = LONG_POLL_S) -> None:
        """Stops the background thread (it finishes the call it is waiting on first)."""
        self._closed.set()
        with self._fresh:
            self._fresh.notify_all()
        self._thread.join(timeout_s)

    def _follow(self) -> None:
        pause = RETRY_S[0]
        while not self._closed.is_set() and ray.is_initialized():
            try:
                self._fetch_next()
                pause = RETRY_S[0]
            except (ray.exceptions.RayError, ValueError) as err:  # restarting, weights freed
                with self._lock:
                    self._errors.append(f"weight poll failed ({type(err).__name__}); retrying")
                self._closed.wait(pause)
                pause = min(pause * 2, RETRY_S[1])

    def _fetch_next(self) -> None:
        with self._fresh:  # the last version fetched is taken first
            self._fresh.wait_for(lambda: self._newest is None or self._closed.is_set())
        if self._closed.is_set():
            return
        answer = self._store.wait_newer.remote(self._fetched, LONG_POLL_S)
        version, ref = ray.get(answer, timeout=LONG_POLL_S + WEIGHTS_TIMEOUT_S)
        if version == self._fetched or not ref:
            return
        weights = ray.get(ref[0], timeout=WEIGHTS_TIMEOUT_S)
        with self._fresh:
            self._fetched = version
            self._newest = (version, weights)
            self._fresh.notify_all()
