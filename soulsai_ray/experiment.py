"""One builder turns a config into a run; scripts, tests, benchmarks and the soak all use it.

Order of calls::

    experiment = build_experiment(cfg, run_dir)   # resume checkpoint, recorder, loop; no Ray yet
    summary = experiment.run()                    # starts or joins Ray (not for cluster=serial),
                                                  # trains, stops what it started
    experiment.stop()                             # from another thread: end after this step
    experiment.close()                            # ends the run's actors on a Ray it joined

``with build_experiment(cfg, run_dir) as experiment:`` closes it on the way out.

``cluster=local`` (embedded Ray), ``cluster=remote`` (join a head) and ``cluster=serial`` (one
process, no Ray) share every part: only the loop's shells differ. A run started while this
process is already connected to Ray uses that Ray and leaves it running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from soulsai_ray.algo_config import PPOConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import load_checkpoint, read_config, verify_checkpoint
from soulsai_ray.config import TrainConfig, parse_config
from soulsai_ray.loops.common import MetricsExporter, Restore, RunRecorder
from soulsai_ray.loops.lifecycle import RunLoop
from soulsai_ray.preflight import check_before_start, check_local_placement, check_resume_matches
from soulsai_ray.run_lock import RunFolderLock
from soulsai_ray.typed_config import ConfigError

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each asks for the same graceful stop (a closed terminal or SSH session sends SIGHUP)."""


class Experiment:
    """A built run: its config, folder and loop (see the module doc)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, loop: RunLoop, lock: RunFolderLock) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.loop = loop
        self.lock = lock
        """Held from the build to the end of :meth:`run`: the run is its folder's one writer."""

    def stop(self, reason: str = "stopped") -> None:
        """Ends the run gracefully after the current step: final checkpoint, summary."""
        self.loop.stop(reason)

    def close(self) -> None:
        """Ends every actor the run started. A run on a Ray it started stops that Ray at its end
        anyway; one on a Ray it joined (a test's, a tool's) leaves its actors to be inspected
        until this is called. Also lets another run use the folder."""
        self.loop.close()
        self.lock.release()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> dict[str, Any]:
        """Trains until a stop condition, :meth:`stop` or a signal; returns the run summary.

        SIGINT, SIGTERM and SIGHUP stop the run gracefully in any phase: a summary is written, and a
        final checkpoint once training has begun. ``summary["exit_status"]`` is 1 when the run
        ended because an actor it needs was lost for good.

        Raises:
            ConfigError: a local Ray cannot offer ``env.actor_resources``.
        """
        self.loop.recorder.writes.watch_log_files()  # train.log's failed writes are counted
        try:
            if self.cfg.cluster.serial:
                with _stop_on_signals(self.loop):
                    summary = self.loop.run()
            else:
                summary = self._run_on_ray()
        finally:
            self.lock.release()
        _log_finished(summary, self.run_dir)
        return summary

    def _run_on_ray(self) -> dict[str, Any]:
        from soulsai_ray.cluster import init_ray, ray_running, shutdown_ray

        cfg, loop = self.cfg, self.loop
        owns_ray = not ray_running()
        local = cfg.cluster.address is None
        if local:  # before Ray starts: a local Ray offers only what the machine has
            check_local_placement(cfg.env.actor_resources, joined=not owns_ray)
        actors = cfg.cluster.num_rollout_actors
        cpus = cfg.cluster.rollout_num_cpus * (actors if isinstance(actors, int) else 1)
        with _stop_on_signals(loop):  # a signal during Ray's start-up stops the run right after it
            if owns_ray:
                _log_operator_addresses(init_ray(cfg.cluster, extra_cpus_needed=cpus))
            try:
                with _stop_on_signals(loop):  # again: Ray's core worker installs a native one
                    return loop.run()
            finally:
                if owns_ray:
                    shutdown_ray()


def build_experiment(cfg: TrainConfig, run_dir: Path, config_yaml: str = "") -> Experiment:
    """Builds the run ``cfg`` describes, writing into ``run_dir``; starts nothing yet.

    Args:
        cfg: A validated config.
        run_dir: The run's folder (created if missing): config, TensorBoard, checkpoints,
            summary.
        config_yaml: The resolved config as the user composed it (saved with the run and in
            every checkpoint); by default ``cfg`` itself as YAML.

    Raises:
        ConfigError: ``cfg`` fails the checks a config from the command line passes, another
            run holds ``run_dir`` or it cannot be written, or the checkpoint to resume from was
            trained with other shapes (`check_resume_matches`).
        CheckpointError: the checkpoint to resume from is missing, partial or corrupt.
    """
    parse_config(asdict(cfg))  # a config built in code passes the same checks as a composed one
    check_before_start(cfg)
    lock = RunFolderLock.take(run_dir)  # before anything is written there
    config_yaml = config_yaml or config_to_yaml(cfg)
    try:
        restore = _restore(cfg, run_dir)
        try:
            (run_dir / "config.yaml").write_text(config_yaml)  # only once the resume is sound
        except OSError as err:
            raise ConfigError("hydra.run.dir", f"cannot write the run folder: {err}") from err
    except BaseException:
        lock.release()
        raise
    export = cfg.telemetry.prometheus and not cfg.cluster.serial  # Prometheus goes through Ray
    recorder = RunRecorder(
        run_dir,
        cfg.telemetry,
        cfg.stop,
        cfg.checkpoint.keep_last,
        config_yaml,
        MetricsExporter(export, run_dir.name),
    )
    loop = _loop_class(cfg)(cfg, recorder, restore)
    return Experiment(cfg, run_dir, loop, lock)


def _restore(cfg: TrainConfig, run_dir: Path) -> Restore | None:
    """The checkpoint the run continues from (``cfg.resume``), checked against ``cfg``."""
    checkpoint_path = find_resume_checkpoint(cfg.resume, run_dir / "checkpoints")
    if checkpoint_path is None:
        return None
    check_resume_matches(cfg, read_config(checkpoint_path), checkpoint_path)
    payload, meta = load_checkpoint(checkpoint_path)
    logger.info("resuming from %s", checkpoint_path)
    return Restore(checkpoint_path, payload, meta)


def config_to_yaml(cfg: TrainConfig) -> str:
    """``cfg`` as the YAML a run saves (the config that ``resume`` and ``evaluate.py`` read)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(asdict(cfg)))


def find_resume_checkpoint(resume: str | None, checkpoint_dir: Path) -> Path | None:
    """The checkpoint ``resume`` asks for, verified before anything starts.

    Args:
        resume: None (fresh run), ``auto`` (newest good checkpoint in ``checkpoint_dir``; a fresh
            run if there is none) or the path of a checkpoint folder.
        checkpoint_dir: This run's checkpoint folder.

    Raises:
        CheckpointError: if an explicitly named checkpoint is missing, partial or corrupt.
    """
    if resume is None:
        return None
    if resume == "auto":
        latest = CheckpointManager(checkpoint_dir).latest()
        if latest is None:
            logger.info("resume=auto: no checkpoint in %s yet; starting a new run", checkpoint_dir)
            return None
        return latest.path
    path = Path(resume).expanduser().resolve()
    verify_checkpoint(path)
    return path


def _loop_class(cfg: TrainConfig) -> type[RunLoop]:
    ppo = isinstance(cfg.algo, PPOConfig)
    if cfg.cluster.serial:
        from soulsai_ray.loops.serial import SerialDQNLoop, SerialPPOLoop

        return SerialPPOLoop if ppo else SerialDQNLoop
    if ppo:
        from soulsai_ray.loops.ppo_sync import PPOSyncLoop

        return PPOSyncLoop
    from soulsai_ray.loops.dqn_async import DQNAsyncLoop

    return DQNAsyncLoop


def _log_finished(summary: dict[str, Any], run_dir: Path) -> None:
    logger.info(
        "finished (%s): %d env steps, %d episodes, return_mean=%s, summary in %s",
        summary["stop_reason"],
        summary["env_steps"],
        summary["episodes"],
        summary["return_mean"],
        run_dir / "summary.json",
    )
    if summary["stop_reason"] in {s.name for s in STOP_SIGNALS}:
        logger.info(
            "stopped by %s; continue with the same overrides plus: resume=auto hydra.run.dir=%s",
            summary["stop_reason"],
            run_dir,
        )


def _log_operator_addresses(address: dict[str, Any]) -> None:
    """Says where operators reach this run's Ray (``ray status``, ``ray list actors``)."""
    if address.get("webui_url"):
        logger.info(
            "Ray dashboard: http://%s (ray list actors --address http://%s)",
            address["webui_url"],
            address["webui_url"],
        )
    logger.info(
        "Ray GCS address: %s (ray status --address %s)",
        address.get("gcs_address"),
        address.get("gcs_address"),
    )


@contextmanager
def _stop_on_signals(loop: RunLoop) -> Iterator[None]:
    """Turns the first SIGINT/SIGTERM/SIGHUP into a graceful stop; a second one interrupts at
    once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if not loop.stop(name):
            raise KeyboardInterrupt(f"second {name}")
        logger.warning("%s received: finishing with a checkpoint (send it again to abort)", name)

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
