"""Environment construction: ``make_env`` builds every env the same way from config."""

from soulsai_ray.envs.factory import EnvSpec, make_env, probe_env_spec
from soulsai_ray.envs.wrappers import (
    EPISODE_METRICS_KEY,
    action_mask_from_info,
    episode_metrics_from_info,
    vector_episode_metrics,
)

__all__ = [
    "EPISODE_METRICS_KEY",
    "EnvSpec",
    "action_mask_from_info",
    "episode_metrics_from_info",
    "make_env",
    "probe_env_spec",
    "vector_episode_metrics",
]
