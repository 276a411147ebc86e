"""Wrappers applied by :func:`soulsai_ray.envs.factory.make_env`, and action-mask extraction."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

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


EPISODE_METRICS_KEY = "episode_metrics"
"""``info`` key under which an env reports per-episode numbers at an episode's end."""


def episode_metrics_from_info(info: Mapping[str, Any]) -> dict[str, float]:
    """The per-episode numbers an env reports in ``info["episode_metrics"]`` at episode end.

    Envs report a dict of floats (e.g. ``{"win": 1.0, "boss_hp_final": 0.0}``); entries that
    are not a string name with a real number are left out here, and the head checks the rest
    (`soulsai_ray.inbound_episodes.episode_metrics_problem`).
    """
    metrics = info.get(EPISODE_METRICS_KEY)
    if not isinstance(metrics, Mapping):
        return {}
    return {
        str(name): float(value)
        for name, value in metrics.items()
        if isinstance(name, str) and _is_real(value)
    }


def vector_episode_metrics(infos: Mapping[str, Any], index: int) -> dict[str, float]:
    """`episode_metrics_from_info` of sub-env ``index`` of a vector env that just ended an episode.

    With gymnasium's same-step autoreset the final step's info is in ``infos["final_info"]``,
    each entry an array over the sub-envs with a ``_<key>`` presence mask.
    """
    final = infos.get("final_info")
    if not isinstance(final, Mapping):
        return {}
    metrics = final.get(EPISODE_METRICS_KEY)
    present = final.get(f"_{EPISODE_METRICS_KEY}")
    if not isinstance(metrics, Mapping) or present is None or not present[index]:
        return {}
    picked = {}
    for name, values in metrics.items():
        if isinstance(name, str) and not name.startswith("_") and metrics[f"_{name}"][index]:
            picked[name] = values[index]
    return episode_metrics_from_info({EPISODE_METRICS_KEY: picked})


def _is_real(value: Any) -> bool:
    """A Python or numpy number or bool (``win: True`` counts as 1.0)."""
    return isinstance(value, int | float | np.integer | np.floating | np.bool_)


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


class BoolImageObservation(gym.ObservationWrapper):
    """Turns a bool image [H, W, C] (MinAtar's object planes) into a uint8 image of 0s and 1s."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, shape, np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, dtype=np.uint8)


class StackFrames(gym.Wrapper):
    """The last ``k`` frames of an image env as one image [H, W, C * k]: concatenated along the
    channel (last) axis, oldest first. At a reset the first frame fills every place."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        space = env.observation_space
        if not is_image_space(space) or k < 1:
            raise ValueError(f"stacking {k} frames needs an image space and k >= 1, got {space}")
        self.k = k
        self.observation_space = gym.spaces.Box(
            np.concatenate([space.low] * k, axis=-1),
            np.concatenate([space.high] * k, axis=-1),
            dtype=space.dtype,
        )
        self._frames: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._frames.extend([np.array(obs)] * self.k)
        return self._stacked(), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(np.array(obs))
        return self._stacked(), reward, terminated, truncated, info

    def _stacked(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=-1)


def is_image_space(space: gym.Space) -> bool:
    """A Box of shape [H, W, C] holding uint8 pixels or bool planes: kept as an image."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and np.dtype(space.dtype) in (np.dtype(np.uint8), np.dtype(np.bool_))
    )


class FlattenDictObservation(gym.ObservationWrapper):
    """Flattens a (possibly nested) Dict observation into one float32 vector.

    Keys are visited in sorted order, depth first; nested keys are named by their path joined
    with dots (``"player.pose"``). Each entry of the space becomes zero or more parts of the
    vector, in this order:

    * ``Box``: its elements (flattened in C order), each scaled to [-1, 1] by its bounds where
      both bounds are finite and passed through unscaled otherwise (kind ``"box"``). A Box with
      ``low == high`` everywhere is constant and dropped.
    * Angles named in ``angle_keys``: ``"key"`` marks every element of a Box as an angle in
      radians, ``"key[i]"`` only its flat element ``i``. Angles are replaced by ``[sin, cos]``
      pairs (kind ``"sincos"``) placed after the key's remaining elements; a whole-key entry is
      one part named ``key``, element entries are one part each named ``key[i]``.
    * ``Discrete(n, start)``: a one-hot vector of length ``n``, value ``v`` at index
      ``v - start`` (kind ``"onehot"``). ``Discrete(1)`` is constant and dropped.
    * ``MultiBinary``: its bits as 0/1 floats (kind ``"binary"``).

    The output space is a float32 Box bounded by [-1, 1] for scaled and sin/cos parts, [0, 1]
    for one-hot and binary parts, and the raw bounds for unscaled elements. Values outside a
    Box's bounds map outside [-1, 1]; they are not clipped.

    Attributes:
        layout: ``(key, slice, kind)`` per part, in vector order, to locate a feature.
    """

    def __init__(self, env: gym.Env, angle_keys: Sequence[str] = ()) -> None:
        """Builds the layout for ``env.observation_space``.

        Args:
            env: An env whose observation space is a ``gymnasium.spaces.Dict``.
            angle_keys: Keys (``"key"`` or ``"key[i]"``) whose values are angles in radians.

        Raises:
            ValueError: if the space holds an unsupported subspace, an angle key names no Box
                (element) of the space, or nothing would be left to observe.
        """
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict):
            raise ValueError(f"FlattenDictObservation needs a Dict space, got {space}")
        angles = _parse_angle_keys(angle_keys)
        self._parts = _dict_parts(space, (), angles)
        if angles:
            raise ValueError(f"angle_keys {sorted(angles)} name no Box in the observation space")
        if not self._parts:
            raise ValueError(f"observation space {space} has only constant entries")
        self.layout: list[tuple[str, slice, str]] = []
        start = 0
        for part in self._parts:
            self.layout.append((part.key, slice(start, start + part.low.size), part.kind))
            start += part.low.size
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([p.low for p in self._parts]).astype(np.float32),
            high=np.concatenate([p.high for p in self._parts]).astype(np.float32),
            dtype=np.float32,
        )

    def observation(self, observation: Mapping[str, Any]) -> np.ndarray:
        """Encodes one Dict observation as a vector laid out as :attr:`layout`."""
        out = np.empty(self.observation_space.shape, dtype=np.float32)
        for part, (_, where, _) in zip(self._parts, self.layout, strict=True):
            value = observation
            for name in part.path:
                value = value[name]
            out[where] = part.encode(value)
        return out


class _Part(NamedTuple):
    """One piece of the flattened vector and how to compute it from the entry's value."""

    key: str
    path: tuple[Any, ...]
    kind: str
    low: np.ndarray
    high: np.ndarray
    encode: Callable[[Any], np.ndarray]


# Angle elements per key: None marks every element of the key's Box as an angle.
_AngleSpec = dict[str, set[int] | None]
_ELEMENT_KEY = re.compile(r"^(?P<key>.+)\[(?P<index>\d+)\]$")


def _parse_angle_keys(angle_keys: Sequence[str]) -> _AngleSpec:
    angles: _AngleSpec = {}
    for entry in angle_keys:
        match = _ELEMENT_KEY.match(entry)
        if match is None:
            angles[entry] = None
            continue
        indices = angles.setdefault(match["key"], set())
        if indices is not None:
            indices.add(int(match["index"]))
    return angles


def _dict_parts(space: gym.spaces.Dict, path: tuple[Any, ...], angles: _AngleSpec) -> list[_Part]:
    """Parts of every entry of ``space``; consumes the entries of ``angles`` it uses."""
    parts: list[_Part] = []
    for name in sorted(space.spaces, key=str):
        sub, sub_path = space.spaces[name], (*path, name)
        key = ".".join(str(p) for p in sub_path)
        if isinstance(sub, gym.spaces.Dict):
            parts += _dict_parts(sub, sub_path, angles)
        elif isinstance(sub, gym.spaces.Box):
            parts += _box_parts(sub, key, sub_path, angles)
        elif key in angles:
            raise ValueError(f"angle key {key!r} names a {type(sub).__name__}, not a Box")
        elif isinstance(sub, gym.spaces.Discrete):
            parts += _discrete_parts(sub, key, sub_path)
        elif isinstance(sub, gym.spaces.MultiBinary):
            n = int(np.prod(sub.shape))
            zeros, ones = np.zeros(n), np.ones(n)
            parts.append(_Part(key, sub_path, "binary", zeros, ones, _as_flat_floats(n, key)))
        else:
            raise ValueError(f"observation key {key!r}: {type(sub).__name__} is not supported")
    return parts


def _box_parts(
    space: gym.spaces.Box, key: str, path: tuple[Any, ...], angles: _AngleSpec
) -> list[_Part]:
    low = space.low.reshape(-1).astype(np.float64)
    high = space.high.reshape(-1).astype(np.float64)
    n = low.size
    marked = angles.pop(key, set())
    angle_idx = list(range(n)) if marked is None else sorted(marked)
    if angle_idx and angle_idx[-1] >= n:
        raise ValueError(f"angle key {key}[{angle_idx[-1]}] is out of range for {space}")
    plain = np.setdiff1d(np.arange(n), angle_idx)
    parts: list[_Part] = []
    if plain.size and not np.array_equal(low[plain], high[plain]):
        parts.append(_scaled_box_part(key, path, low, high, plain))
    if marked is None:
        parts.append(_sincos_part(key, path, n, np.arange(n)))
    else:
        parts += [_sincos_part(f"{key}[{i}]", path, n, np.array([i])) for i in angle_idx]
    return parts


def _scaled_box_part(
    key: str, path: tuple[Any, ...], low: np.ndarray, high: np.ndarray, elements: np.ndarray
) -> _Part:
    n = low.size
    low, high = low[elements], high[elements]
    finite = np.isfinite(low) & np.isfinite(high)
    center, half = np.zeros(low.size), np.ones(low.size)
    center[finite] = (low[finite] + high[finite]) / 2
    # Elements with low == high keep the unit divisor and map to 0.
    spread = finite & (high > low)
    half[spread] = (high[spread] - low[spread]) / 2

    def encode(value: Any) -> np.ndarray:
        x = _flat(value, key, n)[elements]
        return np.where(finite, (x - center) / half, x)

    out_low, out_high = np.where(finite, -1.0, low), np.where(finite, 1.0, high)
    return _Part(key, path, "box", out_low, out_high, encode)


def _sincos_part(key: str, path: tuple[Any, ...], n: int, elements: np.ndarray) -> _Part:
    def encode(value: Any) -> np.ndarray:
        angle = _flat(value, key, n)[elements]
        return np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(-1)

    ones = np.ones(2 * elements.size)
    return _Part(key, path, "sincos", -ones, ones, encode)


def _discrete_parts(space: gym.spaces.Discrete, key: str, path: tuple[Any, ...]) -> list[_Part]:
    n, start = int(space.n), int(space.start)
    if n == 1:
        return []

    def encode(value: Any) -> np.ndarray:
        index = int(np.asarray(value).item()) - start
        if not 0 <= index < n:
            raise ValueError(f"observation key {key!r}: {value} is outside Discrete({n}, {start})")
        one_hot = np.zeros(n)
        one_hot[index] = 1.0
        return one_hot

    return [_Part(key, path, "onehot", np.zeros(n), np.ones(n), encode)]


def _as_flat_floats(n: int, key: str) -> Callable[[Any], np.ndarray]:
    return lambda value: _flat(value, key, n)


def _flat(value: Any, key: str, n: int) -> np.ndarray:
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size != n:
        raise ValueError(f"observation key {key!r} has {flat.size} elements, expected {n}")
    return flat


class LatencyWrapper(gym.Wrapper):
    """Holds the env to a fixed step rate, like a real-time game (e.g. 0.05 s = 20 steps/s).

    Steps return on the ticks of a fixed clock, ``step_latency_s`` apart, counted from the last
    reset: the agent's own time per step overlaps with the game's, as it does when a game ticks
    at a fixed rate, and a step that returns late (the agent or the machine was slow) is
    followed by a shorter wait, as the game went on meanwhile. A step later than a whole tick
    starts the clock anew: missed ticks are not made up.
    """

    def __init__(self, env: gym.Env, step_latency_s: float, reset_latency_s: float) -> None:
        super().__init__(env)
        self.step_latency_s = step_latency_s
        self.reset_latency_s = reset_latency_s
        self._tick = time.perf_counter()
        """When the last step (or reset) was due to return."""

    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        self._tick = next_tick(self._tick, self.step_latency_s, time.perf_counter())
        _sleep_until(self._tick)
        return result

    def reset(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = self.env.reset(**kwargs)
        self._tick = max(start + self.reset_latency_s, time.perf_counter())
        _sleep_until(self._tick)
        return result


def next_tick(previous: float, period: float, now: float) -> float:
    """The tick after ``previous``; ``now`` if that one passed more than a whole period ago."""
    due = previous + period
    return now if due < now - period else due


def _sleep_until(deadline: float) -> None:
    """Sleeps until ``deadline`` (perf_counter time)."""
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
