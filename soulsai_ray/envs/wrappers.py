"""Wrappers applied by :func:`soulsai_ray.envs.make_env`, and action-mask extraction."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np


def action_mask_from_info(info: dict[str, Any], num_actions: int) -> np.ndarray | None:
    """Returns the valid-action mask an env reports in ``info``, or None if it reports none.

    Envs report either ``info["action_mask"]`` (bool array, True = valid) or
    ``info["allowed_actions"]`` (indices of the valid actions).
    """
    mask = info.get("action_mask")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape != (num_actions,):
            raise ValueError(
                f"info['action_mask'] has shape {mask.shape}, expected ({num_actions},)"
            )
    else:
        allowed = info.get("allowed_actions")
        if allowed is None:
            return None
        mask = np.zeros(num_actions, dtype=bool)
        mask[np.asarray(allowed, dtype=np.int64)] = True
    if not mask.any():
        raise ValueError("the env reported an action mask with no valid action")
    return mask


class Float32Observation(gym.ObservationWrapper):
    """Casts a Box observation to a flat float32 vector."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        self.observation_space = gym.spaces.Box(
            low=space.low.astype(np.float32).reshape(-1),
            high=space.high.astype(np.float32).reshape(-1),
            dtype=np.float32,
        )

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32).reshape(-1)


class LatencyWrapper(gym.Wrapper):
    """Holds each step and reset to a minimum wall time, like a real-time game.

    A step that already took longer than ``step_latency_s`` is not delayed further, so the
    wrapper models a fixed step rate (e.g. 0.05 s = 20 steps/s), not an added delay.
    """

    def __init__(self, env: gym.Env, step_latency_s: float, reset_latency_s: float) -> None:
        super().__init__(env)
        self.step_latency_s = step_latency_s
        self.reset_latency_s = reset_latency_s

    def step(self, action: Any) -> Any:
        start = time.perf_counter()
        result = self.env.step(action)
        _sleep_until(start + self.step_latency_s)
        return result

    def reset(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = self.env.reset(**kwargs)
        _sleep_until(start + self.reset_latency_s)
        return result


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
