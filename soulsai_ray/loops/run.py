"""Entry point shared by the scripts: start Ray, run the configured loop, shut down."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from soulsai_ray.checkpoint import CheckpointManager, load_checkpoint, verify_checkpoint
from soulsai_ray.cluster import init_ray, missing_local_resources, shutdown_ray
from soulsai_ray.config import ConfigError, PPOConfig, TrainConfig
from soulsai_ray.loops.common import MetricsExporter, Restore, RunRecorder

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def run_training(cfg: TrainConfig, run_dir: Path, config_yaml: str = "") -> dict[str, Any]:
    """Trains with ``cfg``, writing everything into ``run_dir``; returns the run summary.

    Starts an embedded Ray (or joins ``cfg.cluster.address``) and shuts it down afterwards.
    SIGINT and SIGTERM stop the run gracefully in any phase: a summary is written, and a final
    checkpoint once training has begun. ``summary["exit_status"]`` is 1 when the run ended
    because an actor it needs was lost for good.

    Raises:
        CheckpointError: the checkpoint to resume from is missing, partial or corrupt.
        ConfigError: a local Ray cannot offer ``env.actor_resources``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = find_resume_checkpoint(cfg.resume, run_dir / "checkpoints")
    restore = None
    if checkpoint_path is not None:
        payload, meta = load_checkpoint(checkpoint_path)
        restore = Restore(checkpoint_path, payload, meta)
        del payload
        logger.info("resuming from %s", checkpoint_path)
    (run_dir / "config.yaml").write_text(config_yaml)
    recorder = RunRecorder(
        run_dir,
        cfg.telemetry,
        cfg.stop,
        cfg.checkpoint.keep_last,
        config_yaml,
        MetricsExporter(cfg.telemetry.prometheus, run_dir.name),
    )
    loop = _loop_class(cfg)(cfg, recorder, restore)
    del restore  # learner and replay load their own state; the driver keeps none of it
    actors = cfg.cluster.num_rollout_actors
    cpus = cfg.cluster.rollout_num_cpus * (actors if isinstance(actors, int) else 1)
    with _stop_on_signals(loop):  # a signal during Ray's start-up stops the run right after it
        address = init_ray(cfg.cluster, extra_cpus_needed=cpus)
        _log_operator_addresses(address)
        try:
            with _stop_on_signals(loop):  # again: Ray's core worker installs a native one
                if cfg.cluster.address is None:
                    check_local_placement(cfg.env.actor_resources)
                summary = loop.run()
        finally:
            shutdown_ray()
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
    return summary


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


def check_local_placement(actor_resources: dict[str, float]) -> None:
    """Fails fast when an embedded local Ray cannot host a single rollout actor.

    Raises:
        ConfigError: naming ``env.actor_resources`` and the two ways out.
    """
    missing = missing_local_resources(dict(actor_resources))
    if missing:
        raise ConfigError(
            "env.actor_resources",
            f"rollout actors need {missing}, which the local Ray (cluster.address=null) does "
            "not offer; train on game PCs with cluster=remote, or run the env on this machine "
            "with env.actor_resources=null",
        )


@contextmanager
def _stop_on_signals(loop: Any) -> Iterator[None]:
    """Turns the first SIGINT/SIGTERM into a graceful stop; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if loop.stop_requested is not None:
            raise KeyboardInterrupt(f"second {name}")
        logger.warning("%s received: finishing with a checkpoint (send it again to abort)", name)
        loop.stop_requested = name

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _loop_class(cfg: TrainConfig) -> type:
    if isinstance(cfg.algo, PPOConfig):
        from soulsai_ray.loops.ppo_sync import PPOSyncLoop

        return PPOSyncLoop
    from soulsai_ray.loops.dqn_async import DQNAsyncLoop

    return DQNAsyncLoop
