"""Data arriving from another process or from the env: the one place it is checked.

Rollout actors run on game PCs the head does not control: a misconfigured PC, a glitching game
or a bug can send anything. Replay checks every pushed DQN batch and the PPO learner every
rollout batch with the functions here (the driver checks episode reports with
:mod:`soulsai_ray.inbound_episodes`), against the env's spec and the run's limits (never against
the data itself). A batch that fails a check is rejected whole, counted by reason and by node,
and the sending actor is named in a rate-limited log line
(:class:`soulsai_ray.rejections.Rejections`). The samplers apply :func:`env_output_problem` to
what the env returns, so a glitch is dropped at its source before it costs a whole batch.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from soulsai_ray.observations import ObsSpec
from soulsai_ray.steps import StepBatch
from soulsai_ray.transitions import RolloutBatch, TransitionBatch

if TYPE_CHECKING:
    from soulsai_ray.config import TrainConfig

logger = logging.getLogger(__name__)

REASONS = (
    "type",
    "shape",
    "dtype",
    "rows",
    "non_finite",
    "obs",
    "reward",
    "action",
    "mask",
    "discount",
    "horizon",
    "logprob",
    "version",
    "episode",
)
"""Why inbound data was rejected: the keys of ``dist/rejected/<reason>``."""
LOGPROB_SLACK = 1e-4
"""Rounding room above 0 for float32 log-probabilities."""


@dataclass(frozen=True)
class Limits:
    """What a batch from a rollout actor may hold."""

    obs: ObsSpec
    """Shape and dtype of an observation (an int: a float32 vector of that size)."""
    num_actions: int
    max_abs_obs: float
    """Bound on |observation| values; an image's pixels are bounded by its spec's ``high``."""
    max_abs_reward: float
    """Bound on a transition's reward (a DQN n-step sum), or on one step's reward (PPO, and DQN
    with ``algo.replay_layout: frames``)."""
    max_rows: int
    frame_stack: int = 1
    """Frames an observation stacks along its last axis (``env.frame_stack``)."""
    max_n: int = sys.maxsize
    """Bound on a frames push's step horizons (``algo.max_n_step``; a frames replay's n)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs", ObsSpec.of(self.obs))
        self.obs.single_frame(self.frame_stack)  # raises unless obs is whole frames

    @property
    def frame(self) -> ObsSpec:
        """One frame of an observation: what a `StepBatch` carries."""
        return self.obs.single_frame(self.frame_stack)

    @classmethod
    def of_shapes(
        cls, obs: ObsSpec | int, num_actions: int, frame_stack: int = 1, max_n: int = sys.maxsize
    ) -> Limits:
        """Sizes only, no value bounds: for data this process made or its own checkpoint
        (``max_n``: the n of the replay it goes to)."""
        sizes = (ObsSpec.of(obs), num_actions, math.inf, math.inf, sys.maxsize)
        return cls(*sizes, frame_stack, max_n)

    @classmethod
    def for_run(cls, cfg: TrainConfig, obs: ObsSpec | int, num_actions: int) -> Limits:
        """The limits of a run: the env's sizes, ``env.max_abs_*`` and the algorithm's batch size.

        A DQN push holds at most ``push_every`` steps' transitions plus those an episode end
        flushes (``n_step``), or with ``algo.replay_layout: frames`` ``push_every`` steps (each
        at most one start); a PPO rollout at most ``n_steps`` x ``num_envs_per_actor`` steps.
        """
        algo, env = cfg.algo, cfg.env
        max_reward = env.max_abs_reward
        if algo.name != "dqn":
            max_rows = algo.n_steps * env.num_envs_per_actor
        elif algo.replay_layout == "frames":
            max_rows = 2 * algo.push_every
        else:
            max_rows = 2 * (algo.push_every + algo.max_n_step)
            max_reward = env.max_abs_reward * algo.max_n_step
        bounds = (env.max_abs_obs, max_reward, max_rows)
        max_n = algo.max_n_step if algo.name == "dqn" else sys.maxsize
        return cls(ObsSpec.of(obs), num_actions, *bounds, env.frame_stack, max_n)


class Rejection(NamedTuple):
    """Why a batch was refused: a key of `REASONS` and a sentence for the log."""

    reason: str
    detail: str


def env_output_problem(
    obs: Any, reward: Any, max_abs_obs: float, max_abs_reward: float
) -> str | None:
    """Checks what an env returned (one step, or a vector env's batch of steps).

    Returns:
        Why the step must not be trained on (non-finite or out-of-bounds values), or None.
    """
    obs = np.asarray(obs)
    if obs.dtype != np.uint8:  # pixels are finite and bounded by their dtype
        obs = obs.astype(np.float64)
    reward = np.asarray(reward, dtype=np.float64)
    if not (np.isfinite(obs).all() and np.isfinite(reward).all()):
        return "the env returned a non-finite observation or reward"
    if obs.size and np.abs(obs).max() > max_abs_obs:
        return f"the env returned an observation above env.max_abs_obs={max_abs_obs:g}"
    if reward.size and np.abs(reward).max() > max_abs_reward:
        return f"the env returned a reward above env.max_abs_reward={max_abs_reward:g}"
    return None


def check_transitions(
    batch: TransitionBatch, limits: Limits, newest_version: int | None
) -> Rejection | None:
    """Checks a DQN batch: types, dtypes, shapes, row count, then every value's range.

    Args:
        batch: What a rollout actor pushed (or a checkpoint held).
        limits: The run's limits.
        newest_version: The newest policy version published; versions above it are from the
            future. None skips that bound (a checkpoint's buffer).
    """
    if not isinstance(batch, TransitionBatch):
        return Rejection("type", f"expected a TransitionBatch, got {type(batch).__name__}")
    spec, a = limits.obs, limits.num_actions
    fields = {
        "obs": (spec.np_dtype, spec.shape),
        "actions": (np.int64, ()),
        "rewards": (np.float32, ()),
        "next_obs": (spec.np_dtype, spec.shape),
        "discounts": (np.float32, ()),
        "next_masks": (np.bool_, (a,)),
        "versions": (np.int64, ()),
    }
    problem = _check_arrays(batch, fields, limits.max_rows, allow_empty=True)
    if problem is not None or len(batch) == 0:
        return problem
    floats = (batch.rewards, batch.discounts)
    if not spec.is_image:
        floats = (batch.obs, batch.next_obs, *floats)
    if not all(np.isfinite(x).all() for x in floats):
        return Rejection("non_finite", "NaN or inf in obs, next_obs, rewards or discounts")
    # a target bootstraps from the best valid next action: it needs one unless the episode ended
    if not batch.next_masks.any(axis=-1)[batch.discounts > 0].all():
        return Rejection("mask", "a transition that bootstraps has no valid next action")
    return (
        _obs_problem(limits, batch.obs, batch.next_obs)
        or _bounded("reward", _abs_max(batch.rewards), limits.max_abs_reward)
        or _in_range("action", batch.actions, 0, a - 1)
        or _in_range("discount", batch.discounts, 0.0, 1.0)
        or _in_range("version", batch.versions, 0, newest_version)
    )


def check_steps(batch: StepBatch, limits: Limits, newest_version: int | None) -> Rejection | None:
    """Checks a frames push: types, dtypes, shapes, row count, its starts, then value ranges.

    Args:
        batch: What a rollout actor pushed.
        limits: The run's limits (``max_abs_reward`` bounds one step's reward).
        newest_version: The newest policy version published; None skips that bound.
    """
    if not isinstance(batch, StepBatch):
        return Rejection("type", f"expected a StepBatch, got {type(batch).__name__}")
    for name in ("stream", "seq"):
        value = getattr(batch, name)
        if not (_is_int(value) and 0 <= value < 2**63):
            return Rejection("type", f"{name} must be an int in [0, 2**63), got {value!r}")
    if not isinstance(batch.continues, bool | np.bool_):
        return Rejection("type", f"continues is a {type(batch.continues).__name__}, not a bool")
    frame, a = limits.frame, limits.num_actions
    fields = {
        "starts": (np.bool_, ()),
        "actions": (np.int64, ()),
        "rewards": (np.float64, ()),
        "next_frames": (frame.np_dtype, frame.shape),
        "terminated": (np.bool_, ()),
        "truncated": (np.bool_, ()),
        "next_masks": (np.bool_, (a,)),
        "versions": (np.int64, ()),
        "horizons": (np.int64, ()),
    }
    first_obs = {"first_obs": (frame.np_dtype, (limits.frame_stack, *frame.shape))}
    problem = _check_arrays(batch, fields, limits.max_rows, allow_empty=False) or _check_arrays(
        batch, first_obs, limits.max_rows, allow_empty=False
    )
    if problem is not None:
        return problem
    if not batch.starts[0] or len(batch.first_obs) != np.count_nonzero(batch.starts):
        return Rejection("shape", "first_obs needs one entry per start, and step 0 is a start")
    floats = (
        (batch.rewards,) if frame.is_image else (batch.rewards, batch.first_obs, batch.next_frames)
    )
    if not all(np.isfinite(x).all() for x in floats):
        return Rejection("non_finite", "NaN or inf in rewards or frames")
    # a target bootstraps from the best valid next action: it needs one unless the episode ended
    if not batch.next_masks.any(axis=-1)[~batch.terminated].all():
        return Rejection("mask", "a step that bootstraps has no valid next action")
    return (
        _obs_problem(limits, batch.first_obs, batch.next_frames)
        or _bounded("reward", _abs_max(batch.rewards), limits.max_abs_reward)
        or _in_range("action", batch.actions, 0, a - 1)
        or _in_range("version", batch.versions, 0, newest_version)
        or _in_range("horizon", batch.horizons, 1, limits.max_n)
    )


def check_rollout(batch: RolloutBatch, limits: Limits, version: int | None) -> Rejection | None:
    """Checks a PPO rollout: types, dtypes, shapes, then ranges, masks and its policy version.

    Args:
        batch: What a rollout actor returned.
        limits: The run's limits.
        version: The learner's current version; on-policy data must have been acted with it
            (None: skip that check).
    """
    if not isinstance(batch, RolloutBatch):
        return Rejection("type", f"expected a RolloutBatch, got {type(batch).__name__}")
    obs, spec = batch.obs, limits.obs
    if not isinstance(obs, np.ndarray) or obs.ndim != 2 + len(spec.shape) or 0 in obs.shape[:2]:
        return Rejection(
            "shape", f"obs must be a non-empty [T, E, *{spec.shape}] array, got {_shape(obs)}"
        )
    steps, envs = obs.shape[:2]
    if steps * envs > limits.max_rows:
        return Rejection("rows", f"{steps * envs} steps, more than the {limits.max_rows} allowed")
    a = limits.num_actions
    fields = {
        "obs": (spec.np_dtype, (steps, envs, *spec.shape)),
        "actions": (np.int64, (steps, envs)),
        "logprobs": (np.float32, (steps, envs)),
        "values": (np.float32, (steps, envs)),
        "rewards": (np.float32, (steps, envs)),
        "terminated": (np.bool_, (steps, envs)),
        "truncated": (np.bool_, (steps, envs)),
        "final_values": (np.float32, (steps, envs)),
        "last_values": (np.float32, (envs,)),
        "masks": (np.bool_, (steps, envs, a)),
    }
    problem = _check_arrays(batch, fields, None, allow_empty=False)
    if problem is not None:
        return problem
    floats = (batch.logprobs, batch.values, batch.rewards, batch.final_values, batch.last_values)
    if not spec.is_image:
        floats = (batch.obs, *floats)
    if not all(np.isfinite(x).all() for x in floats):
        return Rejection("non_finite", "NaN or inf in a float field")
    if isinstance(batch.version, bool) or not isinstance(batch.version, int | np.integer):
        return Rejection("type", f"version is a {type(batch.version).__name__}, expected int")
    if version is not None and batch.version != version:
        return Rejection("version", f"acted with version {batch.version}, learner is at {version}")
    problem = (
        _obs_problem(limits, batch.obs)
        or _bounded("reward", _abs_max(batch.rewards), limits.max_abs_reward)
        or _in_range("action", batch.actions, 0, a - 1)
        or _in_range("logprob", batch.logprobs, -math.inf, LOGPROB_SLACK)
    )
    if problem is not None:
        return problem
    if not batch.masks.any(axis=-1).all():
        return Rejection("mask", "some steps have no valid action")
    if not np.take_along_axis(batch.masks, batch.actions[..., None], axis=-1).all():
        return Rejection("mask", "some actions are invalid under masks")
    return None


def _check_arrays(
    batch: Any,
    fields: dict[str, tuple[type, tuple[int, ...]]],
    max_rows: int | None,
    allow_empty: bool,
) -> Rejection | None:
    """Type, dtype and shape of each field; with ``max_rows``, ``fields`` give trailing shapes."""
    rows = None
    for name, (dtype, shape) in fields.items():
        value = getattr(batch, name, None)
        if type(value) is not np.ndarray:  # a subclass (MaskedArray, matrix) hides its values
            return Rejection("type", f"{name} is a {type(value).__name__}, expected np.ndarray")
        if value.dtype != dtype:
            return Rejection("dtype", f"{name} has dtype {value.dtype}, expected {np.dtype(dtype)}")
        if max_rows is None:
            if value.shape != shape:
                return Rejection("shape", f"{name} has shape {value.shape}, expected {shape}")
            continue
        if value.ndim != 1 + len(shape) or value.shape[1:] != shape:
            expected = ", ".join(["B", *map(str, shape)])
            return Rejection("shape", f"{name} has shape {value.shape}, expected ({expected})")
        rows = value.shape[0] if rows is None else rows
        if value.shape[0] != rows:
            return Rejection("shape", f"{name} has {value.shape[0]} rows, obs has {rows}")
    if max_rows is not None and rows is not None:
        if rows > max_rows:
            return Rejection("rows", f"{rows} rows, more than the {max_rows} allowed")
        if rows == 0 and not allow_empty:
            return Rejection("rows", "empty batch")
    return None


def _obs_problem(limits: Limits, *observations: np.ndarray) -> Rejection | None:
    """Observations beyond ``max_abs_obs``, or an image's pixels above its spec's ``high``."""
    spec = limits.obs
    if spec.is_image:
        top = max(int(x.max()) if x.size else 0 for x in observations)
        if top > spec.high:
            return Rejection(
                "obs", f"pixel values reach {top}, above the image's high {spec.high:g}"
            )
        return None
    return _bounded("obs", max(_abs_max(x) for x in observations), limits.max_abs_obs)


def _abs_max(array: np.ndarray) -> float:
    return float(np.abs(array).max()) if array.size else 0.0


def _bounded(reason: str, value: float, bound: float) -> Rejection | None:
    if value > bound:
        return Rejection(reason, f"|{reason}| reaches {value:.3g}, above the bound {bound:g}")
    return None


def _in_range(reason: str, array: np.ndarray, low: float, high: float | None) -> Rejection | None:
    if not array.size:
        return None
    lo, hi = array.min(), array.max()
    if lo < low or (high is not None and hi > high):
        top = "" if high is None else f", {high:g}"
        return Rejection(reason, f"{reason}s span [{lo:g}, {hi:g}], outside [{low:g}{top}]")
    return None


def _shape(value: Any) -> str:
    return str(getattr(value, "shape", type(value).__name__))


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
