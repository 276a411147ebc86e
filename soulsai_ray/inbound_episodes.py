"""Inbound checks of the episode reports the driver receives (returns, lengths and the envs'
episode metrics): what :mod:`soulsai_ray.inbound` does for pushed batches. A report that fails
is dropped and counted under ``dist/rejected/episode``.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from soulsai_ray.config import EnvConfig

MAX_EPISODE_METRICS = 16
"""Most names one episode may report in ``info["episode_metrics"]`` (telemetry stays bounded)."""
MAX_ABS_EPISODE_METRIC = 1e9
_METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")  # fullmatch: "$" would admit "win\n"


MAX_EPISODE_STEPS = 10**8
"""Longest episode accepted from an env that sets no limit (``env.max_episode_steps`` null)."""


def finite_episodes(
    returns: Sequence[Any],
    lengths: Sequence[Any],
    metrics: Sequence[Any] | None = None,
    env: EnvConfig | None = None,
) -> tuple[list[float], list[int], list[dict[str, float]], int]:
    """The episodes of a report whose return is a finite number, length a positive int, and
    episode metrics (if any) pass `episode_metrics_problem`; with ``env``, also bounded: at most
    ``env.max_episode_steps`` steps (`MAX_EPISODE_STEPS` without a limit), and a return within
    ``env.max_abs_reward`` per step. A bogus return (1e300) can then never reach the return
    mean or trip ``stop.return_mean``.

    Args:
        returns: Each episode's return.
        lengths: Each episode's length, in the same order.
        metrics: Each episode's ``info["episode_metrics"]``; None: no episode reported any.
        env: The run's env settings, for the bounds; None: no bounds.

    Returns:
        The kept returns, lengths and metrics, and how many episodes were dropped.
    """
    if metrics is None:
        metrics = [{}] * len(returns)
    if not isinstance(metrics, list | tuple) or not len(returns) == len(lengths) == len(metrics):
        return [], [], [], max(len(returns), len(lengths))
    max_reward, max_length = math.inf, sys.maxsize
    if env is not None:
        max_reward, max_length = env.max_abs_reward, env.max_episode_steps or MAX_EPISODE_STEPS
    kept_returns, kept_lengths, kept_metrics = [], [], []
    for ret, length, numbers in zip(returns, lengths, metrics, strict=True):
        if (
            _is_number(ret)
            and math.isfinite(ret)
            and _is_int(length)
            and 0 < length <= max_length
            and abs(ret) <= max_reward * length
            and episode_metrics_problem(numbers) is None
        ):
            kept_returns.append(float(ret))
            kept_lengths.append(int(length))
            kept_metrics.append({name: float(value) for name, value in numbers.items()})
    return kept_returns, kept_lengths, kept_metrics, len(returns) - len(kept_returns)


def episode_metrics_problem(metrics: Any) -> str | None:
    """What is wrong with one episode's metrics, or None.

    They must be a dict of at most `MAX_EPISODE_METRICS` names (a letter, then letters, digits
    or ``_``; at most 40 characters) to finite numbers within ``±MAX_ABS_EPISODE_METRIC``.
    """
    if not isinstance(metrics, dict):
        return f"episode metrics are a {type(metrics).__name__}, not a dict"
    if len(metrics) > MAX_EPISODE_METRICS:
        return f"{len(metrics)} episode metrics, more than {MAX_EPISODE_METRICS}"
    for name, value in metrics.items():
        if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
            return f"episode metric name {name!r} is not a plain identifier"
        if not (_is_number(value) or isinstance(value, bool | np.bool_)):
            return f"episode metric {name} is a {type(value).__name__}, not a number"
        if not abs(float(value)) <= MAX_ABS_EPISODE_METRIC:
            return f"episode metric {name}={value!r} is not finite or beyond ±{MAX_ABS_EPISODE_METRIC:g}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
