"""Pieces every training loop shares: counters, stop conditions, metrics export, checkpoints."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from soulsai_ray import metric_names as mn
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.config import StopConfig, TelemetryConfig, TrainConfig
from soulsai_ray.run_writes import WriteGuard
from soulsai_ray.telemetry import Telemetry

logger = logging.getLogger(__name__)


@dataclass
class RunCounters:
    """Progress of a run; saved in every checkpoint."""

    env_steps: int = 0
    episodes: int = 0
    updates: int = 0
    weight_version: int = 0
    samples_accepted: int = 0
    samples_trained: int = 0
    model_lag_sum: int = 0
    """Sum over accepted samples of (learner version - sample version), with model_lag_samples."""
    model_lag_samples: int = 0
    samples_stale: int = 0
    samples_invalid: int = 0
    env_errors: int = 0
    env_invalid_steps: int = 0
    """Env steps whose observation or reward was corrupt or out of bounds (never trained on)."""
    env_stalls: int = 0
    """Rollout actors killed because their env step or reset overran ``env.step_timeout_s``."""
    actor_failures: int = 0
    learner_failures: int = 0
    actor_restarts: int = 0
    learner_restarts: int = 0
    replay_restarts: int = 0
    weight_store_restarts: int = 0
    nodes_joined: int = 0
    """Nodes that joined the cluster after the run started (a rejoining game PC counts again)."""
    nodes_lost: int = 0
    """Nodes that left the cluster or were declared dead by Ray."""
    nan_rollbacks: int = 0
    resumes: int = 0
    evaluations: int = 0
    """Greedy evaluations finished during training (``eval.every_updates``)."""
    batches_rejected: dict[str, int] = field(default_factory=dict)
    """Batches and reports from rollout actors that failed an inbound check, by reason."""
    write_failures: dict[str, int] = field(default_factory=dict)
    """Writes into the run folder that failed (disk full, folder gone), by target
    (`soulsai_ray.run_writes.TARGETS`); each is tried again later."""

    def scalars(self) -> dict[str, int]:
        """The telemetry every loop writes from these counts: faults, bad data, progress."""
        return {
            mn.DIST_NODES_JOINED: self.nodes_joined,
            mn.DIST_NODES_LOST: self.nodes_lost,
            mn.DIST_ACTOR_FAILURES: self.actor_failures,
            mn.DIST_LEARNER_FAILURES: self.learner_failures,
            mn.DIST_ACTOR_RESTARTS: self.actor_restarts,
            mn.DIST_LEARNER_RESTARTS: self.learner_restarts,
            mn.DIST_REPLAY_RESTARTS: self.replay_restarts,
            mn.DIST_WEIGHT_STORE_RESTARTS: self.weight_store_restarts,
            mn.DIST_SAMPLES_STALE: self.samples_stale,
            mn.DIST_SAMPLES_INVALID: self.samples_invalid,
            **{mn.rejected(reason): n for reason, n in self.batches_rejected.items()},
            mn.DIST_WEIGHT_VERSION: self.weight_version,
            mn.TRAIN_NAN_ROLLBACKS: self.nan_rollbacks,
            mn.ENV_ERRORS: self.env_errors,
            mn.ENV_INVALID_STEPS: self.env_invalid_steps,
            mn.ENV_STALLS: self.env_stalls,
            **{mn.write_failures(target): n for target, n in self.write_failures.items()},
            mn.PROGRESS_UPDATES: self.updates,
            mn.PROGRESS_EPISODES: self.episodes,
        }


@dataclass
class Restore:
    """A checkpoint a run continues from."""

    path: Path
    payload: dict[str, Any]
    meta: dict[str, Any]


def counters_from_meta(meta: dict[str, Any]) -> RunCounters:
    """The counters saved in a checkpoint's metadata (other fields and malformed values ignored)."""
    counters = RunCounters()
    for f in fields(RunCounters):
        value, default = meta.get(f.name), getattr(counters, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and isinstance(default, int) and value >= 0:
            setattr(counters, f.name, value)
        elif isinstance(value, dict) and isinstance(default, dict):
            counts = {k: v for k, v in value.items() if isinstance(v, int) and v >= 0}
            setattr(counters, f.name, counts)
    older = meta.get("checkpoint_failures")  # the count's name before every write was guarded
    if isinstance(older, int) and not isinstance(older, bool) and older > 0:
        counters.write_failures.setdefault("checkpoint", older)
    return counters


RESUME_SEED_STRIDE = 1_000_003


def resume_state(
    cfg: TrainConfig, recorder: RunRecorder, restore: Restore | None
) -> tuple[TrainConfig, RunCounters]:
    """Config and counters a run starts with; a resumed run continues its counters and curve.

    A resumed run's actors get fresh seeds, so they do not replay the exploration noise of the
    run's start.
    """
    if restore is None:
        counters = RunCounters()
    else:
        counters = counters_from_meta(restore.meta)
        counters.resumes += 1
        recorder.restore(restore.payload)
        cfg = replace(cfg, seed=cfg.seed + RESUME_SEED_STRIDE * counters.resumes)
    recorder.writes.count_into(counters.write_failures)
    return cfg, counters


def stop_reason(
    cfg: StopConfig, counters: RunCounters, return_mean: float | None, elapsed_s: float
) -> str | None:
    """Which stop condition is met, if any."""
    if cfg.return_mean is not None and return_mean is not None and return_mean >= cfg.return_mean:
        return "return_mean"
    if cfg.env_steps is not None and counters.env_steps >= cfg.env_steps:
        return "env_steps"
    if cfg.time_s is not None and elapsed_s >= cfg.time_s:
        return "time_s"
    return None


class MetricsExporter:
    """Mirrors scalar metrics to Prometheus through ``ray.util.metrics`` gauges.

    Names become ``soulsai_<group>_<name>`` (`metric_names.prometheus_name`).
    """

    def __init__(self, enabled: bool, run_name: str) -> None:
        self.enabled = enabled
        self.tags = {"run": run_name}
        self._gauges: dict[str, Any] = {}

    def export(
        self, scalars: dict[str, float | int | None], node_samples: dict[str, int] | None = None
    ) -> None:
        """Sets one gauge per finite scalar, and one ``node``-tagged gauge of samples per node.

        Per-node values share one gauge (tagged), so nodes coming and going add no gauges.
        """
        if not self.enabled:
            return
        for key, value in scalars.items():
            if value is not None and math.isfinite(value):
                self._gauge(key, ("run",)).set(float(value), tags=self.tags)
        gauge = self._gauge(mn.DIST_NODE_SAMPLES, ("run", "node"))
        for node, samples in (node_samples or {}).items():
            gauge.set(float(samples), tags={**self.tags, "node": node[:12]})

    def _gauge(self, key: str, tag_keys: tuple[str, ...]) -> Any:
        from ray.util.metrics import Gauge

        gauge = self._gauges.get(key)
        if gauge is None:
            gauge = Gauge(mn.prometheus_name(key), description=key, tag_keys=tag_keys)
            self._gauges[key] = gauge
        return gauge


class RunRecorder:
    """Telemetry, Prometheus export, checkpoints and the summary of one run."""

    def __init__(
        self,
        run_dir: Path,
        telemetry_cfg: TelemetryConfig,
        stop_cfg: StopConfig,
        keep_last: int,
        config_yaml: str,
        metrics: MetricsExporter,
    ) -> None:
        self.run_dir = run_dir
        self.stop_cfg = stop_cfg
        self.config_yaml = config_yaml
        self.writes = WriteGuard()
        """Every write into ``run_dir`` goes through it (see `soulsai_ray.run_writes`)."""
        self.telemetry = Telemetry(
            run_dir,
            window=telemetry_cfg.window,
            console=telemetry_cfg.console,
            total_env_steps=stop_cfg.env_steps,
            time_limit_s=stop_cfg.time_s,
            writes=self.writes,
        )
        self.checkpoints = CheckpointManager(run_dir / "checkpoints", keep_last=keep_last)
        self.metrics = metrics
        self.start = time.monotonic()
        self.time_to_target_s: float | None = None
        self.env_steps_to_target: int | None = None
        self.last_checkpoint: Path | None = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def record_episodes(
        self,
        env_steps: int,
        returns: list[float],
        lengths: list[int],
        metrics: list[dict[str, float]] | None = None,
    ) -> None:
        """Logs finished episodes and notes the first time the target return is reached."""
        if not returns:
            return
        self.telemetry.log_episodes(env_steps, returns, lengths, metrics)
        target = self.stop_cfg.return_mean
        mean = self.telemetry.return_mean
        if (
            self.time_to_target_s is None
            and target is not None
            and mean is not None
            and mean >= target
        ):
            self.time_to_target_s = self.elapsed_s
            self.env_steps_to_target = env_steps

    def record_scalars(
        self,
        env_steps: int,
        scalars: dict[str, float | int | None],
        node_samples: dict[str, int] | None = None,
    ) -> None:
        """Writes scalars (and samples per node, if given) to TensorBoard and Prometheus.

        Prometheus also gets the episode window's means (``episode/return_mean``,
        ``episode/win_rate``, ...), which TensorBoard receives as episodes finish.
        """
        per_node = {mn.node_samples(n): v for n, v in (node_samples or {}).items()}
        self.telemetry.log_scalars(env_steps, {**scalars, **per_node})
        self.metrics.export({**scalars, **self.telemetry.episode_means()}, node_samples)

    def save_checkpoint(
        self,
        counters: RunCounters,
        payload: dict[str, Any],
        score: float | None = None,
        score_metric: str | None = None,
    ) -> Path:
        """Writes an atomic checkpoint named after the update and env-step counts.

        Besides ``payload`` (learner and optionally replay state) it holds the learning curve
        (bounded numpy arrays), so a resumed run continues its statistics; ``meta.json`` holds
        the counters, and the ``score`` of the run's best-checkpoint metric (``score_metric``,
        e.g. ``eval/return_mean``) by which the best checkpoint is chosen.
        """
        telemetry = {
            "curve": self.telemetry.curve_state(),
            "time_to_target_s": self.time_to_target_s,
            "env_steps_to_target": self.env_steps_to_target,
            "elapsed_s": self.elapsed_s,
        }
        meta = {
            **asdict(counters),
            "return_mean": self.telemetry.return_mean,
            "score": score,
            "score_metric": score_metric,
            "wall_s": self.elapsed_s,
        }
        name = f"ckpt_{counters.updates:09d}_{counters.env_steps:011d}"
        if "eval_policy" in payload:  # never replaced by a periodic one of the same counters
            name += "_eval"
        self.last_checkpoint = self.checkpoints.save(
            name, {**payload, "telemetry": telemetry}, meta, self.config_yaml
        )
        return self.last_checkpoint

    def restore(self, payload: dict[str, Any]) -> None:
        """Continues the statistics of a checkpointed run (see :meth:`save_checkpoint`).

        The curve is a `Telemetry.curve_state` dict or, in older checkpoints, a list of
        ``(env_step, return)`` pairs.
        """
        state = payload.get("telemetry", {})
        self.telemetry.restore_curve(state.get("curve", []))
        self.time_to_target_s = state.get("time_to_target_s")
        self.env_steps_to_target = state.get("env_steps_to_target")
        elapsed = float(state.get("elapsed_s", 0.0))
        self.start -= elapsed
        if self.stop_cfg.time_s is not None:  # the console's ETA counts what is left
            self.telemetry.time_limit_s = max(self.stop_cfg.time_s - elapsed, 0.0)

    def finish(self, counters: RunCounters, reason: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Writes ``summary.json`` and ``learning_curve.png``; returns the summary."""
        summary = {
            "env_steps": counters.env_steps,
            "episodes": counters.episodes,
            "updates": counters.updates,
            "wall_s": round(self.elapsed_s, 3),
            "return_mean": self.telemetry.return_mean,
            "episode_metrics": {
                tag.removeprefix(mn.EPISODE): value
                for tag, value in self.telemetry.episode_means().items()
            },
            "return_target": self.stop_cfg.return_mean,
            "time_to_target_s": self.time_to_target_s,
            "env_steps_to_target": self.env_steps_to_target,
            "stop_reason": reason,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "counters": asdict(counters),
            **extra,
        }
        self.writes.attempt_final(
            "summary", lambda: self.telemetry.write_summary(self.run_dir / "summary.json", summary)
        )
        self.writes.attempt_final(
            "learning_curve",
            lambda: self.telemetry.plot_learning_curve(
                self.run_dir / "learning_curve.png",
                title=str(extra.get("title", "")),
                target=self.stop_cfg.return_mean,
            ),
        )
        self.telemetry.close()
        return summary
