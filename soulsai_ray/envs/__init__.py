"""Environment construction: ``make_env`` builds every env the same way from config."""

from soulsai_ray.envs.factory import EnvSpec, make_env, probe_env_spec
from soulsai_ray.envs.wrappers import action_mask_from_info

__all__ = ["EnvSpec", "action_mask_from_info", "make_env", "probe_env_spec"]
