"""SoulsGym (Dark Souls III) support: a gymnasium 1.x compatible import and the Iudex spaces.

soulsgym is an optional dependency (the ``soulsgym`` extra). It is imported only when a SoulsGym
env is built, so that machines without it (e.g. the learner node) never need it.
"""

from __future__ import annotations

import inspect
import platform
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "GAME_ID",
    "RENAMED_KWARGS",
    "RetriesExceededError",
    "SoulsEpisodeMetrics",
    "adapt_soulsgym_kwargs",
    "ensure_soulsgym",
    "frame_fight_outcome",
    "game_not_running_error",
    "iudex_boss_max_hp",
    "iudex_observation_space",
    "is_souls_image_id",
    "is_soulsgym_id",
    "is_souls_observation",
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


IMAGE_FIGHT_IDS = ("SoulsGymIudexImg-", "soulsai_ray/FakeSoulsImg-")
"""Id prefixes of the Iudex fights seen as frames: their ``info`` holds ``boss_hp``."""


def is_souls_image_id(env_id: str) -> bool:
    """Whether a gymnasium env id names an Iudex fight observed as frames (`IMAGE_FIGHT_IDS`)."""
    return env_id.startswith(IMAGE_FIGHT_IDS)


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


RENAMED_KWARGS = {"init_pose_randomization": "random_player_pose"}
"""soulsgym kwargs renamed between releases (1.1.0 on PyPI: the key; master: the value)."""


def adapt_soulsgym_kwargs(env_id: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with each renamed kwarg spelled the way the installed soulsgym spells it.

    A config written for soulsgym 1.1.0 (``init_pose_randomization``) works with a release that
    calls it ``random_player_pose``, and the other way round. Kwargs the env does not know are
    passed on unchanged, so the env's own error names them.
    """
    accepted = _accepted_kwargs(env_id)
    adapted = dict(kwargs)
    if accepted is None:
        return adapted
    for old, new in (*RENAMED_KWARGS.items(), *((n, o) for o, n in RENAMED_KWARGS.items())):
        if old in adapted and old not in accepted and new in accepted and new not in adapted:
            adapted[new] = adapted.pop(old)
    return adapted


def _accepted_kwargs(env_id: str) -> set[str] | None:
    """The keyword arguments of a registered env's constructor; None if they cannot be read."""
    try:
        entry_point = gym.spec(env_id).entry_point
        if isinstance(entry_point, str):
            module, name = entry_point.split(":")
            entry_point = getattr(__import__(module, fromlist=[name]), name)
        params = inspect.signature(entry_point).parameters.values()
    except Exception:  # noqa: BLE001 - an unreadable signature leaves the kwargs as they are
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def is_souls_observation(space: gym.Space) -> bool:
    """Whether an observation space looks like SoulsGym's: a Dict with boss and player hp."""
    return isinstance(space, gym.spaces.Dict) and {"boss_hp", "player_hp"} <= set(space.keys())


class SoulsEpisodeMetrics(gym.Wrapper):
    """Reports a boss fight's outcome in ``info["episode_metrics"]`` at each episode's end.

    Works on any SoulsGym-shaped env without changing it. From a Dict observation
    (`is_souls_observation`):

    - ``boss_hp_final`` and ``player_hp_final``: the HP left, as a fraction of the max HP when
      the observation holds it (``boss_max_hp``, ``player_max_hp``), else in HP;
    - ``win``: 1.0 if the boss's HP reached 0, else 0.0.

    A fight seen as frames (``SoulsGymIudexImg-v0``) reports the boss's HP only in
    ``info["boss_hp"]``: given ``boss_max_hp``, the wrapper reads it there and reports
    ``boss_hp_final`` and ``win`` (`frame_fight_outcome`).

    Every step's info also gets ``boss_phase`` (the observation's ``phase``), so a player can
    switch policies when a whole-fight env (``SoulsGymIudexDemo-v0``) enters phase 2. Numbers an
    env reports itself in ``info["episode_metrics"]`` are kept.
    """

    def __init__(self, env: gym.Env, boss_max_hp: float | None = None) -> None:
        """Wraps ``env``; ``boss_max_hp`` only for a fight seen as frames.

        Raises:
            ValueError: the observation is no SoulsGym Dict and no ``boss_max_hp`` is given.
        """
        if not is_souls_observation(env.observation_space) and boss_max_hp is None:
            raise ValueError(
                "SoulsEpisodeMetrics needs a Dict observation with boss_hp and player_hp, or "
                "boss_max_hp for a fight seen as frames (boss HP in info['boss_hp'])"
            )
        super().__init__(env)
        self._frame_boss_max_hp = (
            None if is_souls_observation(env.observation_space) else boss_max_hp
        )

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, _with_phase(obs, info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = _with_phase(obs, info)
        if terminated or truncated:
            own = info.get("episode_metrics")
            if self._frame_boss_max_hp is None:
                outcome = fight_outcome(obs)
            else:
                outcome = frame_fight_outcome(info, self._frame_boss_max_hp)
            info["episode_metrics"] = {
                **outcome,
                **(dict(own) if isinstance(own, Mapping) else {}),
            }
        return obs, reward, terminated, truncated, info


def frame_fight_outcome(info: Mapping[str, Any], boss_max_hp: float) -> dict[str, float]:
    """``boss_hp_final`` (a fraction of ``boss_max_hp``) and ``win`` of a fight seen as frames,
    from the last step's ``info["boss_hp"]``.

    Raises:
        ValueError: ``info`` has no ``boss_hp``.
    """
    if "boss_hp" not in info:
        raise ValueError(
            f"a fight seen as frames reports the boss's HP in info['boss_hp']; got {sorted(info)}"
        )
    boss_hp = _scalar(info["boss_hp"])
    return {"boss_hp_final": _fraction(boss_hp, boss_max_hp), "win": 1.0 if boss_hp <= 0 else 0.0}


def fight_outcome(obs: Mapping[str, Any]) -> dict[str, float]:
    """``boss_hp_final``, ``player_hp_final`` and ``win`` of a SoulsGym observation."""
    boss_hp, player_hp = _scalar(obs["boss_hp"]), _scalar(obs["player_hp"])
    outcome = {
        "boss_hp_final": _fraction(boss_hp, obs.get("boss_max_hp")),
        "player_hp_final": _fraction(player_hp, obs.get("player_max_hp")),
        "win": 1.0 if boss_hp <= 0.0 else 0.0,
    }
    return outcome


def _with_phase(obs: Any, info: Mapping[str, Any]) -> dict[str, Any]:
    info = dict(info)
    if isinstance(obs, Mapping) and "phase" in obs:
        info["boss_phase"] = int(_scalar(obs["phase"]))
    return info


def _scalar(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _fraction(hp: float, max_hp: Any) -> float:
    if max_hp is None:
        return hp
    top = _scalar(max_hp)
    return hp / top if top > 0 else hp


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


def iudex_boss_max_hp() -> float:
    """Iudex Gundyr's max HP in soulsgym's Iudex env config (the full boss HP bar).

    Raises:
        ImportError: if soulsgym is not installed.
    """
    return float(_iudex_env_args(Path(ensure_soulsgym().__file__).parent)["boss_max_hp"])


def _iudex_env_args(package_dir: Path) -> dict:
    """soulsgym's Iudex env config (arena bounds, max hp/sp), which IudexEnv reads at init."""
    import yaml

    with open(package_dir / "envs" / "config" / f"{_IUDEX}.yaml") as f:
        return yaml.safe_load(f)
