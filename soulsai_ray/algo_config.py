"""The algorithm part of the run configuration: ``algo=dqn`` (and ``dqn_efficient``) and ``algo=ppo``.

:func:`soulsai_ray.config.parse_config` picks the class by ``algo.name`` (:data:`ALGO_CONFIGS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from soulsai_ray.observations import ObsSpec
from soulsai_ray.typed_config import require

__all__ = ["ALGO_CONFIGS", "TORSOS", "AlgoConfig", "DQNConfig", "PPOConfig", "torso_problem"]

Torso = Literal["mlp", "nature_cnn", "impala_small", "minatar_cnn"]
"""What reads observations before the hidden layers (:mod:`soulsai_ray.torsos`)."""
TORSOS: tuple[str, ...] = get_args(Torso)

MIN_SIDES = {"nature_cnn": 36, "minatar_cnn": 3}
"""Smallest image height and width a torso's kernels fit (Nature-CNN: 8x8/4, 4x4/2 and 3x3/1
leave one pixel of a 36x36 image); impala_small's padding fits any image."""
KERNELS = {"nature_cnn": "8x8/4, 4x4/2 and 3x3", "minatar_cnn": "3x3"}


def torso_problem(torso: str, obs: ObsSpec) -> str | None:
    """Why ``torso`` cannot read observations of ``obs``, or None."""
    if torso not in TORSOS:
        return f"unknown torso {torso!r}; use one of {list(TORSOS)}"
    if torso == "mlp":
        return None
    if not obs.is_image:
        return f"{torso} needs image observations, the env gives {obs.describe()}; use mlp"
    side = MIN_SIDES.get(torso, 1)
    if min(obs.shape[:2]) < side:
        return (
            f"{torso}'s {KERNELS[torso]} kernels need images of at least {side}x{side}, the "
            f"env gives a {obs.describe()}; use impala_small"
        )
    return None


@dataclass
class DQNConfig:
    """Asynchronous (Ape-X style) DQN."""

    name: Literal["dqn"] = "dqn"
    torso: Torso = "mlp"
    """What reads the observations before the hidden layers: mlp (vectors as they are, images
    flattened), nature_cnn (Mnih 2015; images of at least 36x36), impala_small (Espeholt 2018's
    residual net, any image size) or minatar_cnn (Young & Tian 2019: one 16 3x3 convolution,
    cheap enough for a CPU learner)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    """Widths of the Q-network's hidden layers (after the torso)."""
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
    """Replay capacity in transitions (in frames with ``replay_layout: frames``)."""
    learning_starts: int = 2_000
    """Transitions in replay before the first update."""
    replay_layout: Literal["transitions", "frames"] = "transitions"
    """transitions: each n-step transition stored with its obs and next_obs; frames: each env
    frame stored once, n-step transitions and frame stacks rebuilt when sampled; buffer_size
    then counts frames (for image envs, where frames are big)."""
    huber_delta: float = 1.0
    """Huber loss threshold (TD errors beyond it are penalized linearly)."""
    grad_clip: float = 10.0
    """Max global gradient norm (0 disables clipping)."""
    compile: bool = False
    """Run the learner's update step as one ``torch.compile`` graph: 2-3x the updates per second
    of the eager step on a CPU, the same numbers to float rounding. The first update then takes
    5-15 s to compile (a few seconds once inductor's on-disk cache holds that network); where
    compiling fails (no C++ compiler) the learner logs why and runs eager. The shipped configs
    (``conf/algo/dqn.yaml``) turn it on; a config built in Python runs eager unless it asks."""
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
    torso: Torso = "mlp"
    """As DQN's ``torso``; over images the policy and value heads share the torso and hidden
    layers, over vectors they are separate MLPs."""
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Widths of the policy and value networks' hidden layers (separate networks over vectors,
    shared over images)."""
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
