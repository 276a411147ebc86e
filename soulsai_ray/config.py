"""Typed run configuration and its validation.

The Hydra config tree (``conf/``) is composed by Hydra and then converted into the dataclasses
below by :func:`parse_config`. Unknown keys, wrong types and impossible values raise
:class:`ConfigError`, which names the offending key, before any Ray process starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from soulsai_ray.algo_config import ALGO_CONFIGS, AlgoConfig, PPOConfig
from soulsai_ray.typed_config import ConfigError, build_dataclass, require

__all__ = [
    "CheckpointConfig",
    "ClusterConfig",
    "EnvConfig",
    "EvalConfig",
    "StopConfig",
    "TelemetryConfig",
    "TrainConfig",
    "parse_config",
]


@dataclass
class EnvConfig:
    """Which environment the rollout actors run and how they are placed."""

    id: str = "LunarLander-v3"
    """gymnasium id, or ``module:EnvId`` to import a user module that registers it first."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make``."""
    max_episode_steps: int | None = None
    """Override the registered time limit (None keeps the env's own)."""
    return_target: float | None = None
    """Return at which the env counts as solved (default for ``stop.return_mean``)."""
    actor_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each rollout actor requires, e.g. ``{soulsgym: 1}``."""
    num_envs_per_actor: int = 1
    """Envs each rollout actor steps as one vector env (PPO; slow real-time envs use 1)."""
    step_latency_s: float = 0.0
    """Extra wall time per step, to make a fast env behave like a real-time game."""
    reset_latency_s: float = 0.0
    """Extra wall time per reset."""
    hard_reset_every_s: float | None = None
    """Close and re-create the env this often, between episodes (SoulsGym lags after hours)."""
    step_timeout_s: float | None = None
    """A rollout actor whose env step or reset runs longer (a frozen game) is killed and
    restarted, and counted as ``env/stalls``; null: never."""
    max_abs_obs: float = 1e6
    """Observations with a larger absolute value are rejected as a glitch or a bug (an env's
    step with one is dropped; so is a batch from a rollout actor holding one)."""
    max_abs_reward: float = 1e6
    """Like ``max_abs_obs``, for one step's reward."""
    angle_keys: list[str] = field(default_factory=list)
    """Dict-observation keys holding angles in radians, encoded as [sin, cos] pairs when the
    observation is flattened: ``key`` (every element) or ``key[i]`` (element i), nested keys
    joined by dots (see :class:`~soulsai_ray.envs.wrappers.FlattenDictObservation`)."""
    frame_stack: int = 1
    """Image envs: the last k frames as one observation, concatenated along the channel axis,
    oldest first (the first frame repeated at a reset; see
    :class:`~soulsai_ray.envs.wrappers.StackFrames`); 1 keeps single frames."""

    def validate(self, key: str) -> None:
        require(bool(self.id), f"{key}.id", "must name a gymnasium env")
        require(
            self.max_episode_steps is None or self.max_episode_steps > 0,
            f"{key}.max_episode_steps",
            "must be > 0 or null",
        )
        for name, amount in self.actor_resources.items():
            require(amount > 0, f"{key}.actor_resources.{name}", "must be > 0")
        require(self.num_envs_per_actor > 0, f"{key}.num_envs_per_actor", "must be > 0")
        require(self.frame_stack > 0, f"{key}.frame_stack", "must be > 0")
        require(self.step_latency_s >= 0, f"{key}.step_latency_s", "must be >= 0")
        require(self.reset_latency_s >= 0, f"{key}.reset_latency_s", "must be >= 0")
        for name in ("max_abs_obs", "max_abs_reward"):
            require(getattr(self, name) > 0, f"{key}.{name}", "must be > 0")
        for name in ("hard_reset_every_s", "step_timeout_s"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{key}.{name}", "must be > 0 or null")


@dataclass
class ClusterConfig:
    """Where Ray runs and how many rollout actors it hosts."""

    address: str | None = None
    """None starts an embedded local Ray; ``auto`` or ``HOST:PORT`` joins a running cluster."""
    serial: bool = False
    """Run the samplers, replay and learner in this process, without Ray (``cluster=serial``):
    for debugging an env and for fast tests. ``num_rollout_actors`` samplers take turns."""
    num_rollout_actors: int | Literal["auto"] = 2
    """Rollout actors to keep alive; ``auto``: one per slot of ``env.actor_resources``."""
    rollout_num_cpus: float = 1.0
    """Logical CPUs each rollout actor reserves."""
    num_cpus: int | None = None
    """Logical CPUs of an embedded local Ray (None: enough for every actor)."""
    torch_threads: int = 1
    """torch intra-op threads per actor (1 avoids oversubscribing small machines)."""
    include_dashboard: bool = True
    """Start Ray's dashboard (local Ray only) on 127.0.0.1, so that ``ray status``, ``ray list
    actors`` and the dashboard work during a run (``conf/cluster/remote.yaml`` leaves the head's
    to ``start_head.sh``)."""
    actor_max_restarts: int = -1
    """How often Ray restarts a dead actor (-1: forever)."""

    def validate(self, key: str) -> None:
        require(
            self.num_rollout_actors == "auto" or self.num_rollout_actors > 0,
            f"{key}.num_rollout_actors",
            "must be > 0 or auto",
        )
        require(self.rollout_num_cpus >= 0, f"{key}.rollout_num_cpus", "must be >= 0")
        require(
            self.num_cpus is None or self.num_cpus > 0, f"{key}.num_cpus", "must be > 0 or null"
        )
        require(self.torch_threads > 0, f"{key}.torch_threads", "must be > 0")
        require(self.actor_max_restarts >= -1, f"{key}.actor_max_restarts", "must be >= -1")
        if self.serial:
            require(self.address is None, f"{key}.address", "must be null with cluster.serial")
            require(
                self.num_rollout_actors != "auto",
                f"{key}.num_rollout_actors",
                "must be a number with cluster.serial (there are no nodes to count slots on)",
            )


@dataclass
class StopConfig:
    """Stop conditions; training stops at whichever is met first."""

    env_steps: int | None = 1_000_000
    """Total env steps sampled."""
    time_s: float | None = None
    """Wall-clock seconds of training."""
    return_mean: float | None = None
    """Mean return over the last 100 episodes."""

    def validate(self, key: str) -> None:
        require(
            self.env_steps is None or self.env_steps > 0, f"{key}.env_steps", "must be > 0 or null"
        )
        require(self.time_s is None or self.time_s > 0, f"{key}.time_s", "must be > 0 or null")
        require(
            any(v is not None for v in (self.env_steps, self.time_s, self.return_mean)),
            key,
            "at least one of env_steps, time_s, return_mean must be set",
        )


@dataclass
class CheckpointConfig:
    """Periodic atomic checkpoints in ``<run_dir>/checkpoints``."""

    every_updates: int = 20_000
    """Learner updates between checkpoints (one is always written at the end)."""
    keep_last: int = 3
    """Newest checkpoints to keep (the best by return is kept as well)."""
    save_replay: bool = False
    """Include the DQN replay buffer (large) so a resumed run continues with the same data."""
    best_min_interval_s: float = 30.0
    """Without evaluation, fewest seconds between two checkpoints written because the rolling
    training metric reached a new best (each evaluation's new best is always written)."""

    def validate(self, key: str) -> None:
        require(self.every_updates > 0, f"{key}.every_updates", "must be > 0")
        require(self.keep_last > 0, f"{key}.keep_last", "must be > 0")
        require(self.best_min_interval_s >= 0, f"{key}.best_min_interval_s", "must be >= 0")


@dataclass
class EvalConfig:
    """Greedy evaluation during training, on a rollout actor between its collects."""

    every_updates: int | None = None
    """Learner updates between evaluations; null: no evaluation (the best checkpoint is then
    chosen by the rolling training metric)."""
    episodes: int = 5
    """Greedy episodes per evaluation (on a game PC: played on its game, not trained on)."""
    metric: str = "return_mean"
    """What makes a checkpoint the best: ``return_mean``, ``win_rate`` or ``<name>_mean`` of an
    episode metric; of the evaluation, or of the training episodes' window without one."""

    def validate(self, key: str) -> None:
        require(
            self.every_updates is None or self.every_updates > 0,
            f"{key}.every_updates",
            "must be > 0 or null",
        )
        require(self.episodes > 0, f"{key}.episodes", "must be > 0")
        require(
            self.metric in ("return_mean", "length_mean", "win_rate")
            or (self.metric.endswith("_mean") and self.metric[:-5].isidentifier()),
            f"{key}.metric",
            "must be return_mean, win_rate or <episode metric>_mean",
        )


@dataclass
class TelemetryConfig:
    """Metrics: TensorBoard, Prometheus (through Ray) and the console line."""

    window: int = 100
    """Episodes in the rolling return mean."""
    console: bool = True
    """Show the live progress line."""
    prometheus: bool = True
    """Export metrics through ``ray.util.metrics``."""
    log_every_s: float = 2.0
    """Seconds between scalar writes."""

    def validate(self, key: str) -> None:
        require(self.window > 0, f"{key}.window", "must be > 0")
        require(self.log_every_s > 0, f"{key}.log_every_s", "must be > 0")


@dataclass
class TrainConfig:
    """The whole run."""

    algo: AlgoConfig
    env: EnvConfig = field(default_factory=EnvConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    seed: int = 0
    """Base seed; actor i seeds its env with seed + 1000 * (i + 1)."""
    device: str = "cpu"
    """Learner torch device: cpu, cuda, or auto (cuda when available)."""
    resume: str | None = None
    """Continue a run: ``auto`` (newest good checkpoint in this run dir, if any) or a checkpoint path."""

    def env_seed(self, actor_index: int) -> int:
        """The env seed of rollout actor ``actor_index`` in its first life."""
        return self.seed + 1000 * (actor_index + 1)

    def validate(self, key: str = "") -> None:
        require(self.seed >= 0, "seed", "must be >= 0")
        require(self.resume != "", "resume", "must be auto, a checkpoint path, or null")
        require(self.device in ("cpu", "cuda", "auto"), "device", "must be cpu, cuda or auto")
        require(
            self.cluster.num_rollout_actors != "auto" or bool(self.env.actor_resources),
            "cluster.num_rollout_actors",
            "auto needs env.actor_resources (e.g. {soulsgym: 1}) to count the slots",
        )
        require(
            isinstance(self.algo, PPOConfig) or self.env.num_envs_per_actor == 1,
            "env.num_envs_per_actor",
            "DQN rollout actors step one env each; use more actors instead",
        )


def parse_config(data: dict[str, Any]) -> TrainConfig:
    """Converts a plain (resolved) config dict into a validated :class:`TrainConfig`.

    Args:
        data: The composed config, e.g. ``OmegaConf.to_container(cfg, resolve=True)``.
            A top-level ``hydra`` key, if present, is ignored.

    Returns:
        The typed, validated configuration.

    Raises:
        ConfigError: naming the first offending key.
    """
    data = {k: v for k, v in data.items() if k != "hydra"}
    algo = data.get("algo")
    if not isinstance(algo, dict) or "name" not in algo:
        raise ConfigError("algo", "missing; choose one with algo=<name>")
    algo_cls = ALGO_CONFIGS.get(algo["name"])
    if algo_cls is None:
        raise ConfigError(
            "algo.name", f"unknown algorithm {algo['name']!r}; use one of {sorted(ALGO_CONFIGS)}"
        )
    data = {**data, "algo": build_dataclass(algo_cls, algo, "algo")}
    return build_dataclass(TrainConfig, data, "")
