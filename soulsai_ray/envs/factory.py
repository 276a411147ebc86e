"""Builds environments from :class:`~soulsai_ray.config.EnvConfig`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.soulsgym import (
    SoulsEpisodeMetrics,
    adapt_soulsgym_kwargs,
    ensure_soulsgym,
    game_not_running_error,
    is_souls_image_id,
    is_souls_observation,
    is_soulsgym_id,
    iudex_boss_max_hp,
)
from soulsai_ray.envs.wrappers import (
    BoolImageObservation,
    FlattenDictObservation,
    Float32Observation,
    LatencyWrapper,
    StackFrames,
    is_image_space,
)
from soulsai_ray.observations import ObsSpec


@dataclass(frozen=True)
class EnvSpec:
    """What the learner needs to know about an env to build its networks and buffers."""

    obs: ObsSpec
    num_actions: int


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """Creates the env named by ``cfg.id`` with ``cfg.kwargs`` and the configured wrappers.

    ``render_mode`` (e.g. ``rgb_array`` to record videos) is passed to ``gymnasium.make``.

    ``cfg.id`` may be ``module:EnvId``: the module is imported first so that it can register
    the env, which lets users train their own envs without changing the library. SoulsGym ids
    (``SoulsGymIudex-v0``, ...) import soulsgym on demand, with kwargs renamed between soulsgym
    releases spelled the installed way (`adapt_soulsgym_kwargs`); SoulsGym-shaped envs report
    the fight's outcome per episode (`SoulsEpisodeMetrics`; fights seen as frames from
    ``info["boss_hp"]``). Dict observations are flattened by
    :class:`FlattenDictObservation` (with ``cfg.angle_keys``), Tuple observations by gymnasium's
    ``FlattenObservation``. Images (a ``Box`` [H, W, C] of uint8 pixels) stay uint8; bool
    images (MinAtar's planes) become uint8 0/1; every other ``Box`` becomes a float32 vector.
    ``cfg.frame_stack`` > 1 stacks an image env's last frames as channels (:class:`StackFrames`).

    Raises:
        ValueError: if the env cannot be created or its spaces are unsupported.
        ImportError: if a SoulsGym env is asked for and soulsgym is not installed.
        RuntimeError: if a SoulsGym env cannot reach Dark Souls III (no game, not Windows).
    """
    env_id = _import_env_module(cfg.id)
    kwargs = dict(cfg.kwargs)
    if is_soulsgym_id(env_id):
        ensure_soulsgym()
        kwargs = adapt_soulsgym_kwargs(env_id, kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = _create(cfg.id, env_id, kwargs)
    if is_souls_observation(env.observation_space):
        env = SoulsEpisodeMetrics(env)
    elif is_souls_image_id(env_id):
        env = SoulsEpisodeMetrics(env, boss_max_hp=iudex_boss_max_hp())
    if isinstance(env.observation_space, gym.spaces.Dict):
        try:
            env = FlattenDictObservation(env, cfg.angle_keys)
        except ValueError as err:
            raise ValueError(f"env.id={cfg.id!r}: {err}") from err
    elif cfg.angle_keys:
        raise ValueError(f"env.id={cfg.id!r}: env.angle_keys needs a Dict observation space")
    elif isinstance(env.observation_space, gym.spaces.Tuple):
        env = gym.wrappers.FlattenObservation(env)
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise ValueError(
            f"env.id={cfg.id!r}: observation space {env.observation_space} is not supported"
        )
    if not is_image_space(env.observation_space):
        if cfg.frame_stack > 1:
            raise ValueError(
                f"env.id={cfg.id!r}: env.frame_stack={cfg.frame_stack} stacks image frames, but "
                f"the observation space {env.observation_space} is not an image; use 1"
            )
        env = Float32Observation(env)
    elif env.observation_space.dtype == np.bool_:
        env = BoolImageObservation(env)
    if cfg.frame_stack > 1:
        env = StackFrames(env, cfg.frame_stack)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"env.id={cfg.id!r}: action space {env.action_space} is not Discrete")
    if cfg.step_latency_s > 0 or cfg.reset_latency_s > 0:
        env = LatencyWrapper(env, cfg.step_latency_s, cfg.reset_latency_s)
    return env


def probe_env_spec(cfg: EnvConfig) -> EnvSpec:
    """Creates the env once to read its observation spec and number of actions."""
    env = make_env(cfg)
    try:
        return env_spec(env)
    finally:
        env.close()


def env_spec(env: gym.Env) -> EnvSpec:
    """The spec of an env made by :func:`make_env` (or a vector env of such envs)."""
    single = getattr(env, "single_observation_space", env.observation_space)
    actions = getattr(env, "single_action_space", env.action_space)
    return EnvSpec(ObsSpec.of_space(single), int(actions.n))


def check_env_id(cfg: EnvConfig) -> None:
    """Fails fast unless ``cfg.id`` names an env gymnasium knows (after importing the module of
    a ``module:EnvId`` id); SoulsGym's envs are checked where they run, on the game PCs.

    Raises:
        ValueError: naming the id, with gymnasium's reason (e.g. no such env or version).
    """
    _check_registered(cfg.id)


OWN_ENV_MODULES = frozenset(
    {
        "soulsai_ray.envs.atari",
        "soulsai_ray.envs.fake_souls",
        "soulsai_ray.envs.fake_souls_img",
        "soulsai_ray.envs.minatar",
    }
)
"""Modules of ``module:EnvId`` ids that data may name: this package's own envs (importing one
only registers its env)."""


def check_data_env_id(config_id: str) -> None:
    """Checks an ``env.id`` read from data (a checkpoint's config): it must name an env
    registered now, importing nothing but this package's own env modules (`OWN_ENV_MODULES`;
    SoulsGym's ids import soulsgym, a dependency, where they run).

    Raises:
        ValueError: the id names another module to import, or no registered env.
    """
    module = config_id.split(":", 1)[0] if ":" in config_id else None
    if module is not None and module not in OWN_ENV_MODULES:
        raise ValueError(
            f"env.id={config_id!r}: the checkpoint's config names module {module!r} to import; "
            "a checkpoint's config imports nothing. If you trust that module, name it yourself: "
            f"env.id={config_id}"
        )
    _check_registered(config_id)


def _check_registered(config_id: str) -> None:
    """Imports the module of a ``module:EnvId`` id, then checks gymnasium knows the env."""
    env_id = _import_env_module(config_id)
    if is_soulsgym_id(env_id):
        return
    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise ValueError(f"env.id={config_id!r}: {err}") from err


def _import_env_module(config_id: str) -> str:
    """Imports the module of a ``module:EnvId`` id; returns the gymnasium id to make."""
    if ":" not in config_id:
        return config_id
    module, env_id = config_id.split(":", 1)
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"env.id={config_id!r}: cannot import module {module!r}: {err}") from err
    return env_id


def _create(config_id: str, env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"env.id={config_id!r}: {err}") from err
    except (TypeError, AssertionError):
        raise  # wrong or invalid kwargs: the env's own message says which
    except Exception as err:
        if is_soulsgym_id(env_id):
            # soulsgym reports a missing game as a bare RuntimeError or a pymem/win32 error.
            raise game_not_running_error(config_id, err) from err
        raise
