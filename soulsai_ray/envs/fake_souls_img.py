"""The FakeSouls fight seen as 90x160x3 frames, shaped like soulsgym's ``SoulsGymIudexImg-v0``.

Importing this module registers ``soulsai_ray/FakeSoulsImg-v0`` (200-step time limit), so a config
can name it as ``env.id: soulsai_ray.envs.fake_souls_img:soulsai_ray/FakeSoulsImg-v0``. It needs
the ``soulsgym`` extra (the Iudex arena and stats), as FakeSouls does.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from soulsai_ray.envs.fake_souls import _BOSS_REACH_M, FakeSoulsEnv, _Duel

__all__ = ["ENV_ID", "FRAME_SHAPE", "DuelRenderer", "FakeSoulsImgEnv"]

ENV_ID = "soulsai_ray/FakeSoulsImg-v0"
FRAME_SHAPE = (90, 160, 3)
"""SoulsGymIudexImg-v0's frame: height, width, RGB."""
HUD_ROWS = 10
"""Rows at the top of a frame holding the HP and stamina bars; the arena view is below."""
PX_PER_M = 3
"""Arena view scale: 80x160 pixels show 26.7 m x 53.3 m around the player."""
BAR_WIDTH = 76

_OUTSIDE, _FLOOR, _WALL = (20, 20, 30), (90, 80, 60), (150, 130, 90)
_BAR_EMPTY = (50, 50, 50)
_PLAYER_HP, _PLAYER_SP, _BOSS_HP = (200, 30, 30), (30, 200, 30), (230, 140, 0)
_BOSS_IDLE = (170, 170, 190)
WINDUP_COLORS = {3: (255, 200, 0), 2: (255, 110, 0), 1: (255, 0, 0)}
"""The boss's colour (and its reach ring's) by steps until its attack lands."""
_PLAYER_COLORS = {  # by animation name; any other animation is _PLAYER_DEFAULT
    "RollingMedium": (0, 200, 255),
    "AttackRightLight1": (255, 255, 0),
    "AttackRightHeavy1Sta": (255, 255, 0),
    "ParryLeftStart": (255, 0, 255),
    "DamageMiddle": (255, 255, 255),
}
_PLAYER_DEFAULT, _PLAYER_UNKNOWN = (0, 220, 0), (255, 255, 255)
_PLAYER_RADIUS_PX, _BOSS_RADIUS_PX = 2, 3


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels of a filled disc."""
    rows, cols = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = rows**2 + cols**2 <= radius**2 + radius
    return rows[inside], cols[inside]


def _ring(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels of a one-pixel circle."""
    angles = np.linspace(0.0, 2 * np.pi, 8 * radius, endpoint=False)
    offsets = np.unique(
        np.round(radius * np.stack([np.sin(angles), np.cos(angles)], axis=1)).astype(int), axis=0
    )
    return offsets[:, 0], offsets[:, 1]


class DuelRenderer:
    """Draws a FakeSouls duel top-down, centred on the player, with numpy only.

    The top `HUD_ROWS` rows hold the player's HP (red) and stamina (green) bars on the left and
    the boss's HP (orange) on the right, each `BAR_WIDTH` pixels at full. Below, the arena floor
    (walls at its edge, darkness outside) at `PX_PER_M` pixels per metre, world x along rows and
    y along columns; the boss is a disc (clamped to the frame's edge when farther away), grey
    when idle or walking and yellow, orange then red with its reach ring while an attack winds up
    (`WINDUP_COLORS`); the player is a smaller disc coloured by its animation (rolling, attack,
    parry, hit).
    """

    def __init__(
        self,
        arena_low: np.ndarray,
        arena_high: np.ndarray,
        player_animation_ids: dict[str, int],
        boss_reach_m: float,
        max_hp: tuple[float, float, float],
    ) -> None:
        """Pre-draws the arena.

        Args:
            arena_low: The arena's lowest (x, y), where its walls are.
            arena_high: The arena's highest (x, y).
            player_animation_ids: Animation name to id, for the player's colours.
            boss_reach_m: Radius of the reach ring drawn while the boss winds up.
            max_hp: Player max HP, player max stamina, boss max HP (full bars).
        """
        self._low = np.asarray(arena_low, dtype=np.float64)
        self._view = (FRAME_SHAPE[0] - HUD_ROWS, FRAME_SHAPE[1])
        self._canvas = self._draw_arena(np.asarray(arena_high, dtype=np.float64) - self._low)
        self._player_colors = {player_animation_ids[k]: c for k, c in _PLAYER_COLORS.items()}
        self._player_colors[-1] = _PLAYER_UNKNOWN
        self._player_disc = _disc(_PLAYER_RADIUS_PX)
        self._boss_disc = _disc(_BOSS_RADIUS_PX)
        self._reach_ring = _ring(round(boss_reach_m * PX_PER_M))
        self._max_hp = max_hp
        self._hud = np.zeros((HUD_ROWS, FRAME_SHAPE[1], 3), np.uint8)
        for row, col in ((1, 2), (5, 2), (1, 82)):
            self._hud[row : row + 3, col : col + BAR_WIDTH] = _BAR_EMPTY

    def _draw_arena(self, size_m: np.ndarray) -> np.ndarray:
        """The arena floor padded by half a view on each side, so any crop around the player
        fits."""
        pad = (self._view[0] // 2, self._view[1] // 2)
        rows, cols = np.round(size_m * PX_PER_M).astype(int) + 1
        canvas = np.empty((rows + 2 * pad[0], cols + 2 * pad[1], 3), np.uint8)
        canvas[:] = _OUTSIDE
        canvas[pad[0] : pad[0] + rows, pad[1] : pad[1] + cols] = _WALL
        canvas[pad[0] + 1 : pad[0] + rows - 1, pad[1] + 1 : pad[1] + cols - 1] = _FLOOR
        return canvas

    def render(self, duel: _Duel) -> np.ndarray:
        """The frame [90, 160, 3] uint8 of ``duel`` as it is now."""
        frame = np.empty(FRAME_SHAPE, np.uint8)
        frame[:HUD_ROWS] = self._hud
        player_hp, player_sp, boss_hp = self._max_hp
        self._bar(frame, 1, 2, duel.player_hp / player_hp, _PLAYER_HP)
        self._bar(frame, 5, 2, duel.player_sp / player_sp, _PLAYER_SP)
        self._bar(frame, 1, 82, duel.boss_hp / boss_hp, _BOSS_HP)
        view = frame[HUD_ROWS:]
        top, left = np.round((duel.player_xy - self._low) * PX_PER_M).astype(int)
        view[:] = self._canvas[top : top + self._view[0], left : left + self._view[1]]
        center = np.array([self._view[0] // 2, self._view[1] // 2])
        boss = center + np.round((duel.boss_xy - duel.player_xy) * PX_PER_M).astype(int)
        boss = np.clip(boss, 0, np.array(self._view) - 1)
        color = WINDUP_COLORS.get(duel.windup, _BOSS_IDLE)
        if duel.windup > 0:
            self._stamp(view, boss, self._reach_ring, color)
        self._stamp(view, boss, self._boss_disc, color)
        player_color = self._player_colors.get(duel.player_animation, _PLAYER_DEFAULT)
        self._stamp(view, center, self._player_disc, player_color)
        return frame

    @staticmethod
    def _bar(frame: np.ndarray, row: int, col: int, fraction: float, color: tuple) -> None:
        width = round(BAR_WIDTH * min(max(fraction, 0.0), 1.0))
        frame[row : row + 3, col : col + width] = color

    @staticmethod
    def _stamp(view: np.ndarray, at: np.ndarray, offsets: tuple, color: tuple) -> None:
        rows, cols = at[0] + offsets[0], at[1] + offsets[1]
        inside = (rows >= 0) & (rows < view.shape[0]) & (cols >= 0) & (cols < view.shape[1])
        view[rows[inside], cols[inside]] = color


class FakeSoulsImgEnv(FakeSoulsEnv):
    """FakeSouls (same dynamics, actions, faults and seeds) observed as frames.

    As soulsgym 1.1.0's ``IudexImgEnv``: the observation is ``Box(0, 255, (90, 160, 3), uint8)``
    and ``info`` holds ``allowed_actions`` (indices of the valid actions) and ``boss_hp`` (HP
    left). What the frames show is :class:`DuelRenderer`'s.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Creates the env; ``kwargs`` are :class:`FakeSoulsEnv`'s."""
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self._renderer = DuelRenderer(
            self._xy_low - 1.0,
            self._xy_high + 1.0,
            self._player_ids,
            boss_reach_m=_BOSS_REACH_M,
            max_hp=(self._player_max_hp, self._player_max_sp, self._boss_max_hp),
        )

    def _observation(self) -> np.ndarray:
        return self._renderer.render(self._duel)

    def _info(self) -> dict[str, Any]:
        return {
            "allowed_actions": np.flatnonzero(self._mask).tolist(),
            "boss_hp": float(self._duel.boss_hp),
        }


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:FakeSoulsImgEnv", max_episode_steps=200)
