"""Typed run configuration and its validation.

The Hydra config tree (``conf/``) is composed by Hydra and then converted into the dataclasses
below by :func:`parse_config`. Unknown keys, wrong types and impossible values raise
:class:`ConfigError`, which names the offending key, before any Ray process starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from soulsai_ray.typed_config import ConfigError, build_dataclass, require

__all__ = [
    "AlgoConfig",
    "CheckpointConfig",
    "ClusterConfig",
    "ConfigError",
    "DQNConfig",
    "EnvConfig",
    "EvalConfig",
    "PPOConfig",
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
        require(self.step_latency_s >= 0, f"{key}.step_latency_s", "must be >= 0")
        require(self.reset_latency_s >= 0, f"{key}.reset_latency_s", "must be >= 0")
        for name in ("max_abs_obs", "max_abs_reward"):
            require(getattr(self, name) > 0, f"{key}.{name}", "must be > 0")
        for name in ("hard_reset_every_s", "step_timeout_s"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{key}.{name}", "must be > 0 or null")


@dataclass
class DQNConfig:
    """Asynchronous (Ape-X style) DQN."""

    name: Literal["dqn"] = "dqn"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    """Widths of the Q-network's hidden layers."""
    dueling: bool = True
    """Separate value and advantage streams."""
    layer_norm: bool = False
    """A LayerNorm after each hidden layer (keeps many updates per env step stable)."""
    normalize_obs: bool = False
    """Running mean/std observation normalization inside the Q-network; its statistics are
    learned from the training batches and travel with published weights and checkpoints."""
    double: bool = True
    """Double DQN: the online net picks the target action, the target net rates it."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 3
    """Steps summed into each transition's return before bootstrapping (the final n when
    n_step_start is set)."""
    n_step_start: int | None = None
    """n at the start of the run, annealed linearly to n_step over n_step_anneal_steps env steps
    (a rollout actor changes n between episodes); null: n_step throughout."""
    n_step_anneal_steps: int = 20_000
    """Env steps (all actors together) over which n anneals from n_step_start to n_step."""
    lr: float = 6.3e-4
    """Adam learning rate."""
    batch_size: int = 128
    """Transitions per gradient step."""
    replay_ratio: float = 128.0
    """Sampled transitions per inserted transition (batch_size / replay_ratio = env steps per update)."""
    buffer_size: int = 100_000
    """Replay capacity in transitions."""
    learning_starts: int = 2_000
    """Transitions in replay before the first update."""
    huber_delta: float = 1.0
    """Huber loss threshold (TD errors beyond it are penalized linearly)."""
    grad_clip: float = 10.0
    """Max global gradient norm (0 disables clipping)."""
    reset_every_updates: int | None = None
    """Updates between resets of the Q-network (the replay is kept); null: never. Many updates
    per env step overfit the first data a network sees; a reset lets it learn again from the
    whole replay."""
    reset_keep: float = 0.0
    """Fraction of its weights the network body keeps at a reset: 0 re-initializes it, between
    0 and 1 is shrink-and-perturb (keep * weights + (1 - keep) * fresh initialization). The
    output heads are always re-initialized; Adam's moments of the network are cleared."""
    target_update_every: int = 250
    """Updates between target-network updates."""
    target_tau: float = 1.0
    """Target update rate: 1.0 copies (hard update), < 1 is a polyak average."""
    eps_start: float = 1.0
    """Exploration epsilon at step 0."""
    eps_end: float = 0.01
    """Exploration epsilon after the decay."""
    eps_decay_steps: int = 20_000
    """Env steps over which epsilon decays linearly."""
    per_actor_eps: bool = False
    """Ape-X epsilons: actor i uses apex_eps_base ** (1 + apex_eps_alpha * i / (N - 1))."""
    apex_eps_base: float = 0.4
    apex_eps_alpha: float = 7.0
    prioritized: bool = False
    """Proportional prioritized replay."""
    per_alpha: float = 0.6
    per_beta_start: float = 0.4
    """Importance-weight exponent at the start, annealed to 1 over per_beta_updates."""
    per_beta_updates: int = 100_000
    per_eps: float = 1e-6
    publish_every: int = 50
    """Updates between weight publications to the rollout actors."""
    publish_min_interval_s: float = 0.25
    """Fewest seconds between two publications. Versions then come at most 4 per second however
    many updates the learner makes (a higher replay ratio, more game PCs, a GPU), so
    ``max_model_lag`` versions stay a span of wall time that a healthy actor's samples fit in."""
    weight_sync_every: int = 64
    """Fewest env steps between two weight installs of a rollout actor. Newer weights are
    announced to actors as they are published; 1 installs each at the next env step."""
    weight_sync_max_s: float = 0.5
    """Longest wall time between two weight installs while newer weights exist: on a slow env
    (a game at 20 steps/s) it comes before weight_sync_every steps and keeps samples fresh."""
    max_model_lag: int = 20
    """Samples from policies more than this many versions old are dropped (20 versions: at
    least 5 s at the default ``publish_min_interval_s``)."""
    push_every: int = 64
    """Transitions a rollout actor batches up before sending them to replay."""
    collect_steps: int = 256
    """Env steps per rollout call (a call also ends after collect_time_s)."""
    collect_time_s: float = 1.0
    """Wall-time cap of one rollout call, so slow envs still report regularly."""
    max_inflight_pushes: int = 2
    """Per-actor bound on unacknowledged pushes to replay (backpressure)."""
    sample_batches_per_call: int = 4
    """Batches the learner fetches per replay call (one call is always prefetched)."""
    updates_per_call: int = 200
    """Max updates per learner call before the driver gets metrics back."""
    ratio_slack_steps: int | None = 2_000
    """How far (in env steps) sampling may run ahead of learning before actors pause; null never
    pauses them (for real-time games, where a paused game PC saves the learner nothing)."""

    def validate(self, key: str) -> None:
        positive_ints = (
            "batch_size",
            "n_step",
            "buffer_size",
            "target_update_every",
            "eps_decay_steps",
            "n_step_anneal_steps",
            "per_beta_updates",
            "publish_every",
            "weight_sync_every",
            "max_model_lag",
            "push_every",
            "collect_steps",
            "max_inflight_pushes",
            "sample_batches_per_call",
            "updates_per_call",
        )
        for name in positive_ints:
            require(getattr(self, name) > 0, f"{key}.{name}", "must be > 0")
        require(bool(self.hidden_sizes), f"{key}.hidden_sizes", "needs at least one layer")
        for i, width in enumerate(self.hidden_sizes):
            require(width > 0, f"{key}.hidden_sizes[{i}]", "must be > 0")
        require(0.0 < self.gamma <= 1.0, f"{key}.gamma", "must be in (0, 1]")
        require(self.lr > 0, f"{key}.lr", "must be > 0")
        require(self.replay_ratio > 0, f"{key}.replay_ratio", "must be > 0")
        require(self.learning_starts >= 0, f"{key}.learning_starts", "must be >= 0")
        require(
            self.learning_starts <= self.buffer_size,
            f"{key}.learning_starts",
            f"must be <= algo.buffer_size ({self.buffer_size})",
        )
        require(self.batch_size <= self.buffer_size, f"{key}.batch_size", "exceeds buffer_size")
        require(self.huber_delta > 0, f"{key}.huber_delta", "must be > 0")
        require(self.grad_clip >= 0, f"{key}.grad_clip", "must be >= 0")
        require(0.0 < self.target_tau <= 1.0, f"{key}.target_tau", "must be in (0, 1]")
        for name in ("eps_start", "eps_end", "apex_eps_base"):
            require(0.0 <= getattr(self, name) <= 1.0, f"{key}.{name}", "must be in [0, 1]")
        require(self.apex_eps_alpha >= 0, f"{key}.apex_eps_alpha", "must be >= 0")
        require(self.per_alpha >= 0, f"{key}.per_alpha", "must be >= 0")
        require(0 <= self.per_beta_start <= 1, f"{key}.per_beta_start", "must be in [0, 1]")
        require(self.per_eps > 0, f"{key}.per_eps", "must be > 0")
        require(self.collect_time_s > 0, f"{key}.collect_time_s", "must be > 0")
        require(self.weight_sync_max_s > 0, f"{key}.weight_sync_max_s", "must be > 0")
        require(self.publish_min_interval_s >= 0, f"{key}.publish_min_interval_s", "must be >= 0")
        for name in ("ratio_slack_steps", "n_step_start", "reset_every_updates"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{key}.{name}", "must be > 0 or null")
        require(0.0 <= self.reset_keep < 1.0, f"{key}.reset_keep", "must be in [0, 1)")

    @property
    def max_n_step(self) -> int:
        """The largest n any transition of the run sums over."""
        return max(self.n_step, self.n_step_start or 0)

    def resets_at(self, updates: int) -> int:
        """Resets of the Q-network after ``updates`` updates (0 without resets)."""
        every = self.reset_every_updates
        return 0 if every is None else updates // every

    def n_step_at(self, env_steps: int) -> int:
        """n for episodes that start after ``env_steps`` env steps of the whole run."""
        if self.n_step_start is None:
            return self.n_step
        fraction = min(max(env_steps, 0) / self.n_step_anneal_steps, 1.0)
        return round(self.n_step_start + fraction * (self.n_step - self.n_step_start))


@dataclass
class PPOConfig:
    """Synchronous PPO that goes on when rollout actors drop out."""

    name: Literal["ppo"] = "ppo"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Widths of the policy and value networks' hidden layers (separate networks)."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden-layer activation."""
    normalize_obs: bool = True
    """Running mean/std observation normalization inside the model (travels with the weights)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE(lambda) parameter."""
    n_steps: int = 256
    """Env steps per env per iteration."""
    epochs: int = 10
    """Passes over each iteration's data."""
    minibatch_size: int = 64
    """Transitions per gradient step."""
    lr: float = 3e-4
    """Adam learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over stop.env_steps."""
    clip_coef: float = 0.2
    """Policy ratio clip range."""
    clip_value_loss: bool = False
    """Clip the value update to +-clip_coef around the old values."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Max global gradient norm (0 disables clipping)."""
    normalize_advantages: bool = True
    """Normalize advantages per minibatch."""
    target_kl: float | None = None
    """Stop the epochs early when the approximate KL exceeds this (null: never)."""
    iteration_timeout_s: float = 60.0
    """Seconds the driver waits for rollout actors each iteration."""
    min_workers: int = 1
    """Fewest actors whose data an iteration needs; with fewer the driver waits for more."""

    def validate(self, key: str) -> None:
        for name in ("n_steps", "epochs", "minibatch_size", "min_workers"):
            require(getattr(self, name) > 0, f"{key}.{name}", "must be > 0")
        require(bool(self.hidden_sizes), f"{key}.hidden_sizes", "needs at least one layer")
        for i, width in enumerate(self.hidden_sizes):
            require(width > 0, f"{key}.hidden_sizes[{i}]", "must be > 0")
        require(0.0 < self.gamma <= 1.0, f"{key}.gamma", "must be in (0, 1]")
        require(0.0 <= self.gae_lambda <= 1.0, f"{key}.gae_lambda", "must be in [0, 1]")
        require(self.lr > 0, f"{key}.lr", "must be > 0")
        require(self.clip_coef > 0, f"{key}.clip_coef", "must be > 0")
        require(self.ent_coef >= 0, f"{key}.ent_coef", "must be >= 0")
        require(self.vf_coef >= 0, f"{key}.vf_coef", "must be >= 0")
        require(self.max_grad_norm >= 0, f"{key}.max_grad_norm", "must be >= 0")
        require(
            self.target_kl is None or self.target_kl > 0, f"{key}.target_kl", "must be > 0 or null"
        )
        require(self.iteration_timeout_s > 0, f"{key}.iteration_timeout_s", "must be > 0")


AlgoConfig = DQNConfig | PPOConfig
ALGO_CONFIGS: dict[str, type] = {"dqn": DQNConfig, "ppo": PPOConfig}


@dataclass
class ClusterConfig:
    """Where Ray runs and how many rollout actors it hosts."""

    address: str | None = None
    """None starts an embedded local Ray; ``auto`` or ``HOST:PORT`` joins a running cluster."""
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
