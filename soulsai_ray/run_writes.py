"""The one path for a run's writes: a full disk or a lost folder never ends a run.

Every write into the run folder (TensorBoard, checkpoints, summary, learning curve, the console
and the log file) goes through :meth:`WriteGuard.attempt`. An ``OSError`` (disk full, folder
deleted, read-only) is counted by target (``io/write_failures/<target>``), logged once when a
target starts failing and once when it works again, and never escapes; the caller tries again
later (the next scalar, the next checkpoint interval), so writing resumes when space comes back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping

logger = logging.getLogger(__name__)

TARGETS = ("tensorboard", "checkpoint", "summary", "learning_curve", "console", "log")
"""What a run writes; each is counted on its own."""


class WriteGuard:
    """Runs a run's writes, counting and logging the ones that fail (see the module doc).

    Args:
        failures: Where the counts go, by target (a run's ``RunCounters.write_failures``, so
            they are checkpointed); a new dict by default.
    """

    def __init__(self, failures: MutableMapping[str, int] | None = None) -> None:
        self.failures: MutableMapping[str, int] = {} if failures is None else failures
        self._failing: set[str] = set()

    def attempt(self, target: str, write: Callable[[], object]) -> bool:
        """Runs ``write``; returns whether it succeeded.

        Raises:
            ValueError: ``target`` is not one of `TARGETS`.
        """
        if target not in TARGETS:
            raise ValueError(f"unknown write target {target!r}; expected one of {TARGETS}")
        try:
            write()
        except OSError as err:
            self.failed(target, err)
            return False
        if target in self._failing:
            self._failing.discard(target)
            logger.warning(
                "writing the run's %s works again (%d writes failed so far)",
                target,
                self.failures.get(target, 0),
            )
        return True

    def attempt_final(
        self, target: str, write: Callable[[], object], tries: int = 3, pause_s: float = 1.0
    ) -> bool:
        """Like :meth:`attempt` for a write made once at the end of a run: tried ``tries``
        times, ``pause_s`` apart."""
        for attempt in range(tries):
            if attempt:
                time.sleep(pause_s)
            if self.attempt(target, write):
                return True
        logger.error("gave up writing the run's %s after %d tries", target, tries)
        return False

    def failed(self, target: str, err: BaseException | None) -> None:
        """Counts a failed write of ``target`` (and logs it if ``target`` was working)."""
        self.failures[target] = self.failures.get(target, 0) + 1
        if target in self._failing:
            return
        self._failing.add(target)  # before logging: the log file may be what fails
        logger.error(
            "cannot write the run's %s (%s); training goes on and the write is tried again",
            target,
            err,
        )

    def count_into(self, failures: MutableMapping[str, int]) -> None:
        """Counts into ``failures`` from now on (a run's checkpointed counters), adding what
        was counted so far."""
        for target, n in self.failures.items():
            failures[target] = failures.get(target, 0) + n
        self.failures = failures

    def failing(self, target: str) -> bool:
        """Whether the last write of ``target`` failed."""
        return target in self._failing

    def watch_log_files(self, root: logging.Logger | None = None) -> None:
        """Counts the failed writes of ``root``'s file handlers (Hydra's ``train.log``) as the
        ``log`` target instead of printing a traceback for each line."""
        root = root or logging.getLogger()
        for handler in root.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handleError = self._log_handler_error  # type: ignore[method-assign]

    def _log_handler_error(self, _record: logging.LogRecord) -> None:
        self.failed("log", sys.exc_info()[1])
