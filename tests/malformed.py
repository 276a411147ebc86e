"""Malformed batches of every kind a rollout actor could send, each with the reason it must get.

`transition_cases` and `rollout_cases` list hand-made faults (one per check); `random_faults`
draws seeded combinations of them, so a failure names the seed that reproduces it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from soulsai_ray.inbound import Limits
from soulsai_ray.transitions import RolloutBatch, TransitionBatch

OBS_DIM, NUM_ACTIONS = 3, 4
LIMITS = Limits(OBS_DIM, NUM_ACTIONS, max_abs_obs=100.0, max_abs_reward=50.0, max_rows=64)
CURRENT_VERSION = 5


def good_transitions(rows: int = 8, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        obs=rng.uniform(-1, 1, (rows, OBS_DIM)).astype(np.float32),
        actions=rng.integers(NUM_ACTIONS, size=rows).astype(np.int64),
        rewards=rng.uniform(-1, 1, rows).astype(np.float32),
        next_obs=rng.uniform(-1, 1, (rows, OBS_DIM)).astype(np.float32),
        discounts=np.full(rows, 0.97, np.float32),
        next_masks=np.ones((rows, NUM_ACTIONS), bool),
        versions=np.full(rows, CURRENT_VERSION, np.int64),
    )


def good_rollout(steps: int = 4, envs: int = 2, seed: int = 0) -> RolloutBatch:
    rng = np.random.default_rng(seed)
    shape = (steps, envs)
    return RolloutBatch(
        obs=rng.uniform(-1, 1, (*shape, OBS_DIM)).astype(np.float32),
        actions=rng.integers(NUM_ACTIONS, size=shape).astype(np.int64),
        logprobs=np.full(shape, math.log(1 / NUM_ACTIONS), np.float32),
        values=rng.normal(size=shape).astype(np.float32),
        rewards=rng.uniform(-1, 1, shape).astype(np.float32),
        terminated=np.zeros(shape, bool),
        truncated=np.zeros(shape, bool),
        final_values=np.zeros(shape, np.float32),
        last_values=rng.normal(size=envs).astype(np.float32),
        masks=np.ones((*shape, NUM_ACTIONS), bool),
        version=CURRENT_VERSION,
    )


def _set(batch, name: str, value):
    return dataclasses.replace(batch, **{name: value})


def _poke(batch, name: str, index, value):
    array = getattr(batch, name).copy()
    with np.errstate(over="ignore"):  # float16 fields overflow to inf: still malformed
        array[index] = value
    return _set(batch, name, array)


Fault = Callable[[object], object]

TRANSITION_FAULTS: dict[str, tuple[str, Fault]] = {
    "not a batch": ("type", lambda b: {"obs": b.obs}),
    "list instead of array": ("type", lambda b: _set(b, "versions", b.versions.tolist())),
    "obs float64": ("dtype", lambda b: _set(b, "obs", b.obs.astype(np.float64))),
    "actions int32": ("dtype", lambda b: _set(b, "actions", b.actions.astype(np.int32))),
    "masks float": ("dtype", lambda b: _set(b, "next_masks", b.next_masks.astype(np.float32))),
    "object obs": ("dtype", lambda b: _set(b, "obs", b.obs.astype(object))),
    "wrong obs size": (
        "shape",
        lambda b: _set(b, "obs", np.zeros((len(b), OBS_DIM + 1), np.float32)),
    ),
    "wrong mask size": ("shape", lambda b: _set(b, "next_masks", np.ones((len(b), 2), bool))),
    "2-d rewards": ("shape", lambda b: _set(b, "rewards", b.rewards[:, None])),
    "rows disagree": ("shape", lambda b: _set(b, "discounts", b.discounts[:-1])),
    "huge batch": ("rows", lambda b: good_transitions(LIMITS.max_rows + 1)),
    "NaN obs": ("non_finite", lambda b: _poke(b, "obs", (0, 1), np.nan)),
    "inf next_obs": ("non_finite", lambda b: _poke(b, "next_obs", (2, 0), -np.inf)),
    "inf reward": ("non_finite", lambda b: _poke(b, "rewards", 1, np.inf)),
    "NaN discount": ("non_finite", lambda b: _poke(b, "discounts", 3, np.nan)),
    "float32 max reward": ("reward", lambda b: _poke(b, "rewards", 0, 3.4e38)),
    "reward above bound": ("reward", lambda b: _poke(b, "rewards", 0, -51.0)),
    "obs above bound": ("obs", lambda b: _poke(b, "next_obs", (1, 1), 1e4)),
    "negative action": ("action", lambda b: _poke(b, "actions", 0, -1)),
    "action too large": ("action", lambda b: _poke(b, "actions", 0, NUM_ACTIONS)),
    "discount above 1": ("discount", lambda b: _poke(b, "discounts", 0, 1.5)),
    "negative discount": ("discount", lambda b: _poke(b, "discounts", 0, -0.1)),
    "negative version": ("version", lambda b: _poke(b, "versions", 0, -3)),
    "future version": ("version", lambda b: _poke(b, "versions", 0, CURRENT_VERSION + 1)),
    "absurd version": ("version", lambda b: _poke(b, "versions", 0, 2**62)),
    "no valid next action": ("mask", lambda b: _poke(b, "next_masks", 2, False)),
    "masked array hiding NaN": (
        "type",
        lambda b: _set(b, "obs", np.ma.masked_invalid(_poke(b, "obs", (0, 0), np.nan).obs)),
    ),
}

ROLLOUT_FAULTS: dict[str, tuple[str, Fault]] = {
    "not a batch": ("type", lambda b: "rollout"),
    "obs list": ("shape", lambda b: _set(b, "obs", b.obs.tolist())),
    "empty": ("shape", lambda b: good_rollout(steps=0)),
    "too many steps": ("rows", lambda b: good_rollout(steps=LIMITS.max_rows)),
    "obs float16": ("dtype", lambda b: _set(b, "obs", b.obs.astype(np.float16))),
    "logprobs float64": ("dtype", lambda b: _set(b, "logprobs", b.logprobs.astype(np.float64))),
    "logprobs short": ("shape", lambda b: _set(b, "logprobs", b.logprobs[:-1])),
    "values 3-d": ("shape", lambda b: _set(b, "values", b.values[..., None])),
    "last_values wrong": ("shape", lambda b: _set(b, "last_values", np.zeros(5, np.float32))),
    "masks wrong": ("shape", lambda b: _set(b, "masks", b.masks[..., :2])),
    "NaN value": ("non_finite", lambda b: _poke(b, "values", (0, 0), np.nan)),
    "inf logprob": ("non_finite", lambda b: _poke(b, "logprobs", (1, 1), -np.inf)),
    "inf last value": ("non_finite", lambda b: _poke(b, "last_values", 0, np.inf)),
    "version string": ("type", lambda b: _set(b, "version", "5")),
    "old version": ("version", lambda b: _set(b, "version", CURRENT_VERSION - 1)),
    "future version": ("version", lambda b: _set(b, "version", CURRENT_VERSION + 1)),
    "huge reward": ("reward", lambda b: _poke(b, "rewards", (0, 1), 3.4e38)),
    "huge obs": ("obs", lambda b: _poke(b, "obs", (0, 1, 2), -1e9)),
    "action out of range": ("action", lambda b: _poke(b, "actions", (0, 0), 9)),
    "positive logprob": ("logprob", lambda b: _poke(b, "logprobs", (0, 0), 0.5)),
    "masked action": ("mask", lambda b: _poke(b, "masks", (0, 0), False)),
}


def transition_cases() -> list[tuple[str, object, str]]:
    """(name, malformed batch, expected reason) for every transition fault."""
    return [
        (name, fault(good_transitions()), why) for name, (why, fault) in TRANSITION_FAULTS.items()
    ]


def rollout_cases() -> list[tuple[str, object, str]]:
    """(name, malformed batch, expected reason) for every rollout fault."""
    return [(name, fault(good_rollout()), why) for name, (why, fault) in ROLLOUT_FAULTS.items()]


def random_faults(
    faults: dict[str, tuple[str, Fault]], good: Callable[[int], object], seed: int, count: int
):
    """``count`` batches, each a good one with 1-3 random faults applied in a random order."""
    rng = np.random.default_rng(seed)
    names = sorted(faults)
    for i in range(count):
        batch = good(int(rng.integers(1 << 30)))
        picked = rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False)
        for k in picked:
            try:
                batch = faults[names[k]][1](batch)
            except (IndexError, ValueError, TypeError, AttributeError):  # no longer applies
                continue
            if not dataclasses.is_dataclass(batch):
                break
        yield i, [names[k] for k in picked], batch
