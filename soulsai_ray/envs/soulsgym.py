"""SoulsGym (Dark Souls III) support: a gymnasium 1.x compatible import and the Iudex spaces.

soulsgym is an optional dependency (the ``soulsgym`` extra). It is imported only when a SoulsGym
env is built, so that machines without it (e.g. the learner node) never need it.
"""

from __future__ import annotations

import platform
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np

__all__ = [
    "GAME_ID",
    "RetriesExceededError",
    "ensure_soulsgym",
    "game_not_running_error",
    "iudex_observation_space",
    "is_soulsgym_id",
]

GAME_ID = "DarkSoulsIII"
"""soulsgym's id of the game behind its Iudex envs."""
_IUDEX = "iudex"
_INSTALL_HINT = 'install the soulsgym extra: pip install -e ".[soulsgym]"'


class RetriesExceededError(gym.error.Error):
    """An env gave up after too many retries (removed from ``gymnasium.error`` in 1.0)."""


def is_soulsgym_id(env_id: str) -> bool:
    """Whether a gymnasium env id (without a ``module:`` prefix) names a SoulsGym env."""
    return env_id.startswith("SoulsGym")


def ensure_soulsgym() -> ModuleType:
    """Imports soulsgym, which registers its envs (``SoulsGymIudex-v0``, ...) with gymnasium.

    soulsgym 1.1.0 imports ``gymnasium.error.RetriesExceededError``, which gymnasium 1.x
    removed; a compatible class is put back first when it is missing.

    Returns:
        The ``soulsgym`` module.

    Raises:
        ImportError: if soulsgym or one of its dependencies is not installed.
    """
    if not hasattr(gym.error, "RetriesExceededError"):
        gym.error.RetriesExceededError = RetriesExceededError
    try:
        import soulsgym
    except ImportError as err:
        raise ImportError(
            f"SoulsGym envs need the soulsgym package ({err}); {_INSTALL_HINT}"
        ) from err
    return soulsgym


def game_not_running_error(env_id: str, err: BaseException) -> RuntimeError:
    """The error to raise when a SoulsGym env cannot reach the game.

    soulsgym fails with low-level errors (``Process DarkSoulsIII.exe not open``, pymem or win32
    failures) when Dark Souls III is not running; this names the env and what it needs instead.
    """
    return RuntimeError(
        f"env.id={env_id!r}: cannot connect to Dark Souls III ({type(err).__name__}: {err}). "
        "SoulsGym envs run only on Windows, with Dark Souls III running, a character loaded "
        f"in game and the game window focused (this machine runs {platform.system()}). "
        "Start rollout actors for SoulsGym only on the game PCs (env.actor_resources)."
    )


def iudex_observation_space() -> gym.spaces.Dict:
    """The observation space of soulsgym's ``SoulsGymIudex-v0``, built without the game.

    Same entries, bounds and dtypes as ``soulsgym.envs.darksouls3.iudex.IudexEnv``: the arena and
    stat bounds come from soulsgym's Iudex env config, the animation counts from
    ``soulsgym.core.static``.

    Raises:
        ImportError: if soulsgym is not installed.
    """
    soulsgym = ensure_soulsgym()
    from soulsgym.core import static

    args = _iudex_env_args(Path(soulsgym.__file__).parent)
    box_low, box_high = args["coordinate_box_low"], args["coordinate_box_high"]
    pose_low = np.array(box_low, dtype=np.float32)
    pose_high = np.array(box_high, dtype=np.float32)
    cam_low = np.array(box_low[:3] + [-1, -1, -1], dtype=np.float32)
    cam_high = np.array(box_high[:3] + [1, 1, 1], dtype=np.float32)
    num_player_animations = len(static.player_animations[GAME_ID])
    num_boss_animations = len(static.boss_animations[GAME_ID][_IUDEX]["all"])
    spaces = gym.spaces
    return spaces.Dict(
        {
            "phase": spaces.Discrete(2, start=1),
            "player_hp": spaces.Box(0, args["player_max_hp"]),
            "player_max_hp": spaces.Discrete(1, start=args["player_max_hp"]),
            "player_sp": spaces.Box(0, args["player_max_sp"]),
            "player_max_sp": spaces.Discrete(1, start=args["player_max_sp"]),
            "boss_hp": spaces.Box(0, args["boss_max_hp"]),
            "boss_max_hp": spaces.Discrete(1, start=args["boss_max_hp"]),
            "player_pose": spaces.Box(pose_low, pose_high, dtype=np.float32),
            "boss_pose": spaces.Box(pose_low, pose_high, dtype=np.float32),
            "camera_pose": spaces.Box(cam_low, cam_high, dtype=np.float32),
            "player_animation": spaces.Discrete(num_player_animations + 1, start=-1),
            "player_animation_duration": spaces.Box(0.0, 10.0),
            "boss_animation": spaces.Discrete(num_boss_animations + 1, start=-1),
            "boss_animation_duration": spaces.Box(0.0, 10.0),
            "lock_on": spaces.Discrete(2),
        }
    )


def _iudex_env_args(package_dir: Path) -> dict:
    """soulsgym's Iudex env config (arena bounds, max hp/sp), which IudexEnv reads at init."""
    import yaml

    with open(package_dir / "envs" / "config" / f"{_IUDEX}.yaml") as f:
        return yaml.safe_load(f)
