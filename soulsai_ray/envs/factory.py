"""Builds environments from :class:`~soulsai_ray.config.EnvConfig`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym

from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.wrappers import Float32Observation, LatencyWrapper


@dataclass(frozen=True)
class EnvSpec:
    """What the learner needs to know about an env to build its networks."""

    obs_dim: int
    num_actions: int


def make_env(cfg: EnvConfig) -> gym.Env:
    """Creates the env named by ``cfg.id`` with ``cfg.kwargs`` and the configured wrappers.

    ``cfg.id`` may be ``module:EnvId``: the module is imported first so that it can register
    the env, which lets users train their own envs without changing the library.

    Raises:
        ValueError: if the env cannot be created or its spaces are unsupported.
    """
    _import_env_module(cfg.id)
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        env = gym.make(cfg.id.split(":")[-1], **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"env.id={cfg.id!r}: {err}") from err
    if isinstance(env.observation_space, gym.spaces.Dict | gym.spaces.Tuple):
        env = gym.wrappers.FlattenObservation(env)
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise ValueError(
            f"env.id={cfg.id!r}: observation space {env.observation_space} is not supported"
        )
    env = Float32Observation(env)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"env.id={cfg.id!r}: action space {env.action_space} is not Discrete")
    if cfg.step_latency_s > 0 or cfg.reset_latency_s > 0:
        env = LatencyWrapper(env, cfg.step_latency_s, cfg.reset_latency_s)
    return env


def probe_env_spec(cfg: EnvConfig) -> EnvSpec:
    """Creates the env once to read its observation size and number of actions."""
    env = make_env(cfg)
    try:
        return EnvSpec(
            obs_dim=int(env.observation_space.shape[0]),
            num_actions=int(env.action_space.n),
        )
    finally:
        env.close()


def _import_env_module(env_id: str) -> None:
    if ":" not in env_id:
        return
    module = env_id.split(":", 1)[0]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"env.id={env_id!r}: cannot import module {module!r}: {err}") from err
