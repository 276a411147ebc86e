"""Every metric a run writes, by name: the TensorBoard tag, and the Prometheus gauge it is exported
as (:func:`prometheus_name`: ``dist/actors_alive`` -> ``soulsai_dist_actors_alive``, shown by
Ray's metrics endpoint as ``ray_soulsai_dist_actors_alive``).

The loops, telemetry and the Grafana dashboard's test take names from here and nowhere else.
Most names are fixed (:data:`ALL`); a few families are completed at run time (:data:`FAMILIES`):
an env's own episode metrics, an evaluation's statistics, rejection reasons and node ids.
"""

from __future__ import annotations

import re

# --- episodes: written as rollout actors report finished episodes ---------------------------

EPISODE_RETURN = "episode/return"
"""Undiscounted return of one finished episode (TensorBoard only: one point per episode)."""
EPISODE_LENGTH = "episode/length"
"""Env steps of one finished episode (TensorBoard only)."""
EPISODE_RETURN_MEAN = "episode/return_mean"
"""Mean return of the last ``telemetry.window`` episodes."""
EPISODE_LENGTH_MEAN = "episode/length_mean"
"""Mean length of the last ``telemetry.window`` episodes."""
EPISODE_WIN_RATE = "episode/win_rate"
"""Share of the last episodes won, for envs that report ``win`` (SoulsGym)."""
EPISODE = "episode/"
"""Prefix of each episode metric an env reports (``episode/boss_hp_final``) and of its window
mean (``episode/boss_hp_final_mean``)."""

# --- evaluation: greedy episodes between collects (eval.every_updates) -----------------------

EVAL = "eval/"
"""Prefix of an evaluation's statistics (`episode_window.summarize_episodes`)."""
EVAL_RETURN_MEAN = "eval/return_mean"
"""Mean return of the last evaluation's episodes."""
EVAL_WIN_RATE = "eval/win_rate"
"""Share of the last evaluation's episodes won (envs that report ``win``)."""

# --- training: the learner's updates ----------------------------------------------------------

TRAIN_LOSS = "train/loss"
"""DQN: mean Huber TD loss of the updates since the last write."""
TRAIN_Q_MEAN = "train/q_mean"
"""DQN: mean Q-value of the taken actions in the sampled batches."""
TRAIN_GRAD_NORM = "train/grad_norm"
"""DQN: mean gradient norm before clipping."""
TRAIN_EPSILON = "train/epsilon"
"""DQN: mean exploration epsilon the rollout actors reported."""
TRAIN_N_STEP = "train/n_step"
"""DQN: the n of the n-step returns now (``algo.n_step_start`` anneals it)."""
TRAIN_RESETS = "train/resets"
"""DQN: Q-network resets so far (``algo.reset_every_updates``)."""
TRAIN_POLICY_LOSS = "train/policy_loss"
"""PPO: clipped-surrogate policy loss of the last iteration."""
TRAIN_VALUE_LOSS = "train/value_loss"
"""PPO: value loss of the last iteration."""
TRAIN_ENTROPY = "train/entropy"
"""PPO: mean policy entropy of the last iteration."""
TRAIN_APPROX_KL = "train/approx_kl"
"""PPO: approximate KL divergence between the acting and the updated policy."""
TRAIN_CLIP_FRACTION = "train/clip_fraction"
"""PPO: share of samples whose probability ratio was clipped."""
TRAIN_EXPLAINED_VARIANCE = "train/explained_variance"
"""PPO: how much of the returns' variance the acting values explain."""
TRAIN_LR = "train/lr"
"""PPO: the learning rate of the last iteration (``algo.anneal_lr``)."""
TRAIN_NAN_ROLLBACKS = "train/nan_rollbacks"
"""Updates rolled back because a loss, gradient or weight became NaN or inf."""

# --- throughput -------------------------------------------------------------------------------

PERF_ENV_STEPS_PER_S = "perf/env_steps_per_s"
"""Env steps per second of all rollout actors together."""
PERF_UPDATES_PER_S = "perf/updates_per_s"
"""DQN: learner updates per second."""
PERF_UPDATE_S = "perf/update_s"
"""PPO: seconds the last iteration's update took."""

# --- the distributed run: actors, nodes, weights and samples ----------------------------------

DIST_ACTORS_ALIVE = "dist/actors_alive"
"""Rollout actors alive now."""
DIST_ACTORS = "dist/actors"
"""Rollout actors the run keeps (alive or restarting)."""
DIST_NODES_ALIVE = "dist/nodes_alive"
"""Ray nodes alive now."""
DIST_NODES_JOINED = "dist/nodes_joined"
"""Nodes that joined after the run started (a rejoining game PC counts again)."""
DIST_NODES_LOST = "dist/nodes_lost"
"""Nodes that left the cluster or were declared dead."""
DIST_ACTOR_FAILURES = "dist/actor_failures"
"""Rollout actor outages: calls that failed, counted once per failure streak of an actor."""
DIST_LEARNER_FAILURES = "dist/learner_failures"
"""Learner calls that failed (the learner died; DQN counts each outage once)."""
DIST_ACTOR_RESTARTS = "dist/actor_restarts"
"""Rollout actors restarted by Ray."""
DIST_LEARNER_RESTARTS = "dist/learner_restarts"
"""Restarts of the learner actor."""
DIST_REPLAY_RESTARTS = "dist/replay_restarts"
"""Restarts of the replay actor (DQN)."""
DIST_WEIGHT_STORE_RESTARTS = "dist/weight_store_restarts"
"""Restarts of the weight store (DQN)."""
DIST_SAMPLES_STALE = "dist/samples_stale"
"""Samples dropped as stale: acted more than ``algo.max_model_lag`` versions before the newest."""
DIST_SAMPLES_INVALID = "dist/samples_invalid"
"""Samples in batches that failed an inbound check (by reason: :func:`rejected`)."""
DIST_WEIGHT_VERSION = "dist/weight_version"
"""Newest published weight version."""
DIST_MODEL_LAG_MEAN = "dist/model_lag_mean"
"""DQN: mean versions between an accepted sample's policy and the newest (since the last write)."""
DIST_WEIGHT_SYNC_LATENCY_S = "dist/weight_sync_latency_s"
"""DQN: mean seconds from a publish until a rollout actor installed the weights."""
DIST_REPLAY_LEAD_STEPS = "dist/replay_lead_steps"
"""DQN: env steps sampled beyond what learning has consumed at the replay ratio."""
DIST_ITERATION_WORKERS = "dist/iteration_workers"
"""PPO: rollout actors whose batches the last iteration trained on."""
DIST_NODE_SAMPLES = "dist/node_samples"
"""Samples accepted from each node: one Prometheus gauge tagged ``node``; in TensorBoard one tag
per node (:func:`node_samples`)."""
DIST_REJECTED = "dist/rejected/"
"""Prefix of the count of inbound batches and reports rejected for each reason
(:data:`soulsai_ray.inbound.REASONS`)."""

# --- the env, checkpoints and progress --------------------------------------------------------

ENV_ERRORS = "env/errors"
"""Env exceptions in step or reset (each re-creates the env)."""
ENV_INVALID_STEPS = "env/invalid_steps"
"""Env steps whose observation or reward was corrupt or out of bounds (never trained on)."""
ENV_STALLS = "env/stalls"
"""Rollout actors killed because an env step or reset overran ``env.step_timeout_s``."""
PROGRESS_UPDATES = "progress/updates"
"""Learner updates so far (PPO: gradient steps)."""
PROGRESS_EPISODES = "progress/episodes"
"""Episodes finished so far."""
PROGRESS_ITERATIONS = "progress/iterations"
"""PPO: iterations so far."""
IO_WRITE_FAILURES = "io/write_failures/"
"""Prefix of the count of failed writes into the run folder for each target
(:data:`soulsai_ray.run_writes.TARGETS`: disk full, folder deleted or read-only)."""

ALL: tuple[str, ...] = tuple(
    value
    for name, value in sorted(globals().items())
    if name.isupper() and isinstance(value, str) and not value.endswith("/")
)
"""Every fixed metric name above."""
FAMILIES: tuple[str, ...] = (
    EPISODE,
    EVAL,
    DIST_REJECTED,
    f"{DIST_NODE_SAMPLES}/",
    IO_WRITE_FAILURES,
)
"""Prefixes of the names completed at run time."""


def episode_metric(name: str) -> str:
    """The name of an env's episode metric, or of its window mean (``boss_hp_final_mean``)."""
    return EPISODE + name


def evaluation(statistic: str) -> str:
    """The name of an evaluation's statistic (``return_mean`` -> ``eval/return_mean``)."""
    return EVAL + statistic


def rejected(reason: str) -> str:
    """The name of the count of inbound data rejected for ``reason``."""
    return DIST_REJECTED + reason


def write_failures(target: str) -> str:
    """The name of the count of failed writes of ``target`` (``checkpoint``, ``tensorboard``)."""
    return IO_WRITE_FAILURES + target


def node_samples(node: str) -> str:
    """The TensorBoard tag of the samples accepted from ``node`` (its id's first 12 characters)."""
    return f"{DIST_NODE_SAMPLES}/{node[:12]}"


def is_known(name: str) -> bool:
    """Whether ``name`` is a fixed name or one of a family."""
    return name in ALL or any(name.startswith(prefix) and name != prefix for prefix in FAMILIES)


def prometheus_name(name: str) -> str:
    """The gauge ``name`` is exported as (``train/loss`` -> ``soulsai_train_loss``).

    Ray's metrics endpoint shows it with Ray's prefix: ``ray_soulsai_train_loss``.
    """
    return "soulsai_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)
