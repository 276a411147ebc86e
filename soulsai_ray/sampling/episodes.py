"""Episode bookkeeping shared by the samplers."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypedDict, TypeVar

if TYPE_CHECKING:
    from soulsai_ray.config import EnvConfig

logger = logging.getLogger(__name__)

EnvT = TypeVar("EnvT")


@dataclass
class EpisodeStats:
    """Episodes finished and faults seen since the last report."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    """Per finished episode (same order as ``returns``), what the env reported in
    ``info["episode_metrics"]`` at its end (empty dicts for envs that report nothing)."""
    env_steps: int = 0
    env_errors: int = 0
    invalid_steps: int = 0
    """Steps dropped because the env returned a NaN/inf observation or reward."""


class EnvGuards(TypedDict):
    """The keyword arguments of both samplers that an env config sets (:func:`env_guards`)."""

    hard_reset_every_s: float | None
    max_abs_obs: float
    max_abs_reward: float


def env_guards(env_cfg: EnvConfig) -> EnvGuards:
    """The bounds on what the env returns and its re-creation schedule, from ``env_cfg``."""
    return EnvGuards(
        hard_reset_every_s=env_cfg.hard_reset_every_s,
        max_abs_obs=env_cfg.max_abs_obs,
        max_abs_reward=env_cfg.max_abs_reward,
    )


def backoff_s(failures_in_row: int, cap_s: float, base_s: float = 0.1) -> float:
    """Growing, capped back-off before re-creating a crashed env (0.1, 0.2, 0.4, ... s)."""
    return min(base_s * 2.0 ** min(max(failures_in_row - 1, 0), 60), cap_s)


class EnvRecovery(Generic[EnvT]):
    """Re-creates a crashed env after a growing, capped back-off, and times every env call.

    Samplers run each ``step``/``reset`` inside :meth:`watch`, so :meth:`busy_s` (read from
    another thread) tells how long the current env call has been running: a frozen game is
    noticed from outside even though its call never raises.
    """

    def __init__(
        self,
        factory: Callable[[], EnvT],
        max_backoff_s: float,
        hard_reset_every_s: float | None = None,
    ) -> None:
        self.factory = factory
        self.max_backoff_s = max_backoff_s
        self.hard_reset_every_s = hard_reset_every_s
        self.failures_in_row = 0
        self.hard_resets = 0
        self._created_at = time.monotonic()
        self._busy_since: float | None = None

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Marks an env call (step, reset, creation) as running for :meth:`busy_s`."""
        self._busy_since = time.monotonic()
        try:
            yield
        finally:
            self._busy_since = None

    def busy_s(self) -> float:
        """Seconds the current env call has been running; 0 between calls."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def hard_reset_due(self) -> bool:
        """True once the env has lived ``hard_reset_every_s`` (games start to lag after hours)."""
        every = self.hard_reset_every_s
        return every is not None and time.monotonic() - self._created_at >= every

    def hard_reset(self, env: EnvT) -> EnvT:
        """Closes ``env`` and creates a fresh one (call it between episodes)."""
        self.hard_resets += 1
        logger.info("scheduled hard reset of the env (every %.0fs)", self.hard_reset_every_s)
        with contextlib.suppress(Exception):
            env.close()  # type: ignore[attr-defined]
        return self._create(env)

    def succeeded(self) -> None:
        """Resets the back-off after a step or reset that worked."""
        self.failures_in_row = 0

    def recreate(self, env: EnvT, err: Exception) -> EnvT:
        """Closes ``env``, waits, and returns a new env (the old one if creating fails)."""
        self.failures_in_row += 1
        delay = backoff_s(self.failures_in_row, self.max_backoff_s)
        logger.warning(
            "env error (%s: %s); re-creating the env in %.1fs", type(err).__name__, err, delay
        )
        with contextlib.suppress(Exception):  # a crashed env may not close cleanly
            env.close()  # type: ignore[attr-defined]
        time.sleep(delay)
        return self._create(env)

    def _create(self, old: EnvT) -> EnvT:
        try:
            with self.watch():
                env = self.factory()
        except Exception as create_err:  # noqa: BLE001 - retried at the next step
            logger.warning("re-creating the env failed: %s", create_err)
            return old
        self._created_at = time.monotonic()
        return env
