"""What the loops of each algorithm write at a telemetry write, on Ray and in one process alike:
the scalars (named in `soulsai_ray.metric_names`) and the fields of the console line. No Ray."""

from __future__ import annotations

from collections.abc import Mapping

from soulsai_ray import metric_names as mn
from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.loops.common import RunCounters
from soulsai_ray.loops.dqn_books import IntervalStats, mean_or_none

Scalars = dict[str, float | int | None]


def dqn_scalars(iv: IntervalStats, algo: DQNConfig, counters: RunCounters, now: float) -> Scalars:
    """The DQN learner's and samplers' metrics over the interval ``iv``, which ends ``now``."""
    dt = max(now - iv.start, 1e-9)
    return {
        mn.TRAIN_LOSS: mean_or_none(iv.losses),
        mn.TRAIN_Q_MEAN: mean_or_none(iv.q_means),
        mn.TRAIN_GRAD_NORM: mean_or_none(iv.grad_norms),
        mn.TRAIN_EPSILON: mean_or_none(iv.epsilons),
        mn.TRAIN_N_STEP: algo.n_step_at(counters.env_steps),
        mn.TRAIN_RESETS: algo.resets_at(counters.updates),
        mn.PERF_ENV_STEPS_PER_S: iv.env_steps / dt,
        mn.PERF_UPDATES_PER_S: iv.updates / dt,
    }


def dqn_console(scalars: Scalars, counters: RunCounters) -> Scalars:
    """The console fields of a DQN loop, from its :func:`dqn_scalars`."""
    return {
        "eps": scalars[mn.TRAIN_EPSILON],
        "upd": counters.updates,
        "sps": scalars[mn.PERF_ENV_STEPS_PER_S],
        "ups": scalars[mn.PERF_UPDATES_PER_S],
        "loss": scalars[mn.TRAIN_LOSS],
    }


PPO_LEARNER_METRICS = {
    "policy_loss": mn.TRAIN_POLICY_LOSS,
    "value_loss": mn.TRAIN_VALUE_LOSS,
    "entropy": mn.TRAIN_ENTROPY,
    "approx_kl": mn.TRAIN_APPROX_KL,
    "clip_fraction": mn.TRAIN_CLIP_FRACTION,
    "explained_variance": mn.TRAIN_EXPLAINED_VARIANCE,
    "lr": mn.TRAIN_LR,
}
"""The name each metric of `PPOLearner.update` is written under."""


def ppo_scalars(
    metrics: Mapping[str, float],
    env_steps_per_s: float,
    update_s: float | None,
    workers: int,
    iterations: int,
) -> Scalars:
    """A PPO iteration's metrics: the learner's (``metrics``; empty at the end of a run), the
    sampling rate, the update's duration, the rollout actors trained on and iterations so far."""
    return {
        **{name: metrics.get(key) for key, name in PPO_LEARNER_METRICS.items()},
        mn.PERF_ENV_STEPS_PER_S: env_steps_per_s,
        mn.PERF_UPDATE_S: update_s,
        mn.DIST_ITERATION_WORKERS: workers,
        mn.PROGRESS_ITERATIONS: iterations,
    }


def ppo_console(scalars: Scalars) -> Scalars:
    """The console fields of a PPO loop, from its :func:`ppo_scalars`."""
    return {
        "it": scalars[mn.PROGRESS_ITERATIONS],
        "workers": scalars[mn.DIST_ITERATION_WORKERS],
        "sps": scalars[mn.PERF_ENV_STEPS_PER_S],
        "kl": scalars[mn.TRAIN_APPROX_KL],
        "ev": scalars[mn.TRAIN_EXPLAINED_VARIANCE],
    }
