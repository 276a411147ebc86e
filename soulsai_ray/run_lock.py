"""One writer per run folder: a lock held for as long as a run may write there.

Two runs in one folder would prune each other's checkpoints and overwrite one summary. The lock
is an ``flock`` on ``<run_dir>/.lock``: the kernel releases it when its holder exits, however it
exits (a run killed with SIGKILL leaves nothing to clean up), and the file names the holder's
pid for the message the second run prints.

``scripts/train.py`` takes the lock before Hydra writes anything into the folder (see
`RunFolderCallback`); the run's builder then takes over that lock
(:meth:`RunFolderLock.take`). A second run in the same process is refused like any other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from soulsai_ray.typed_config import ConfigError

LOCK_FILE = ".lock"

_CREATED: set[Path] = set()
"""Run folders this process created (see `remove_if_unused`)."""
_RESERVED: dict[Path, RunFolderLock] = {}
"""Locks taken before their run was built (by `RunFolderCallback`), by resolved folder."""


class RunFolderLock:
    """Holds ``<run_dir>/.lock`` from construction until :meth:`release` (or the process ends).

    Creates ``run_dir`` if missing; writing the holder's pid also proves the folder writable.

    Raises:
        ConfigError: another process holds the folder (naming the folder and its pid), or the
            folder cannot be created or written (read-only, disk full, permissions).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._key = run_dir.resolve()
        self._fd: int | None = None
        try:
            if not run_dir.exists():
                run_dir.mkdir(parents=True, exist_ok=True)
                _CREATED.add(self._key)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self.release()
            raise ConfigError(
                "hydra.run.dir",
                f"{run_dir} is in use by another run (pid {holder}); give this run a folder of "
                "its own, or wait for that one to end",
            ) from None
        except OSError as err:
            self.release()
            raise _unwritable(run_dir, err) from None
        try:
            os.ftruncate(self._fd, 0)
            if os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0) == 0:
                raise OSError("nothing was written")
            os.fsync(self._fd)
        except OSError as err:
            self.release()
            raise _unwritable(run_dir, err) from None

    @classmethod
    def reserve(cls, run_dir: Path) -> None:
        """Takes the lock for the run this process is about to build (see :meth:`take`)."""
        lock = cls(Path(run_dir))
        _RESERVED[lock._key] = lock

    @classmethod
    def take(cls, run_dir: Path) -> RunFolderLock:
        """The lock of ``run_dir`` for a run: the one :meth:`reserve` took, or a new one."""
        reserved = _RESERVED.pop(Path(run_dir).resolve(), None)
        return reserved if reserved is not None and reserved.held else cls(Path(run_dir))

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


class RunFolderCallback(Callback):
    """Takes the run folder's lock before Hydra writes into it (``.hydra/``, ``train.log``):
    a folder that another run holds, or that cannot be written, ends the command with one line
    and exit status 2, and leaves the folder as it was. Named in ``conf/config.yaml``."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from soulsai_ray.compose import exit_config_error

        HydraConfig.instance().set_config(config)  # what Hydra does next, for ${hydra:...}
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        try:
            RunFolderLock.reserve(run_dir)
        except ConfigError as err:
            exit_config_error(str(err))


STARTUP_FILES = frozenset({LOCK_FILE, ".hydra", "train.log"})
"""What a run folder holds before its run writes anything (the lock, Hydra's files)."""


def remove_if_unused(run_dir: Path) -> bool:
    """Removes ``run_dir`` if this process created it and nothing but `STARTUP_FILES` is in it
    (a command refused before training leaves no folder behind); returns whether it did."""
    import shutil

    key = Path(run_dir).resolve()
    if key not in _CREATED or not key.is_dir():
        return False
    if any(entry.name not in STARTUP_FILES for entry in key.iterdir()):
        return False
    log = key / "train.log"
    if log.is_file() and log.stat().st_size > 0:
        return False
    shutil.rmtree(key, ignore_errors=True)
    _CREATED.discard(key)
    return True


def _unwritable(run_dir: Path, err: OSError) -> ConfigError:
    return ConfigError(
        "hydra.run.dir", f"cannot write the run folder {run_dir}: {err.strerror or err}"
    )
