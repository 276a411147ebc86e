"""Entry point shared by the scripts: start Ray, run the configured loop, shut down."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from soulsai_ray.cluster import init_ray, shutdown_ray
from soulsai_ray.config import PPOConfig, TrainConfig
from soulsai_ray.loops.common import MetricsExporter, RunRecorder

logger = logging.getLogger(__name__)


def run_training(cfg: TrainConfig, run_dir: Path, config_yaml: str = "") -> dict[str, Any]:
    """Trains with ``cfg``, writing everything into ``run_dir``; returns the run summary.

    Starts an embedded Ray (or joins ``cfg.cluster.address``) and shuts it down afterwards.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    actors = cfg.cluster.num_rollout_actors
    cpus = cfg.cluster.rollout_num_cpus * (actors if isinstance(actors, int) else 1)
    init_ray(cfg.cluster, extra_cpus_needed=cpus)
    try:
        recorder = RunRecorder(
            run_dir,
            cfg.telemetry,
            cfg.stop,
            cfg.checkpoint.keep_last,
            config_yaml,
            MetricsExporter(cfg.telemetry.prometheus, run_dir.name),
        )
        loop = _loop_class(cfg)(cfg, recorder)
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
    return summary


def _loop_class(cfg: TrainConfig) -> type:
    if isinstance(cfg.algo, PPOConfig):
        from soulsai_ray.loops.ppo_sync import PPOSyncLoop

        return PPOSyncLoop
    from soulsai_ray.loops.dqn_async import DQNAsyncLoop

    return DQNAsyncLoop
