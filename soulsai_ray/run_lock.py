"""One writer per run folder: a lock held for as long as a run may write there.

Two runs in one folder would prune each other's checkpoints and overwrite one summary. The lock
is an ``flock`` on ``<run_dir>/.lock``: the kernel releases it when its holder exits, however it
exits (a run killed with SIGKILL leaves nothing to clean up), and the file names the holder's
pid for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from soulsai_ray.typed_config import ConfigError

LOCK_FILE = ".lock"


class RunFolderLock:
    """Holds ``<run_dir>/.lock`` from construction until :meth:`release` (or the process ends).

    Raises:
        ConfigError: another process holds the folder (naming the folder and its pid).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self.release()
            raise ConfigError(
                "hydra.run.dir",
                f"{run_dir} is in use by another run (pid {holder}); give this run a folder of "
                "its own, or wait for that one to end",
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Lets another run use the folder (safe to call twice)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()
