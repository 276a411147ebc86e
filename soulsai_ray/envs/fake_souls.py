"""A SoulsGym-shaped env for tests: Iudex's spaces, action masks and faults, without the game.

Importing this module registers ``soulsai_ray/FakeSouls-v0`` (200-step time limit), so a config
can name it as ``env.id: soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0``. It needs the
``soulsgym`` extra for the Iudex observation space.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from soulsai_ray.envs.soulsgym import GAME_ID, iudex_observation_space

__all__ = ["ENV_ID", "NOOP", "FakeSoulsEnv", "InvalidActionError"]

ENV_ID = "soulsai_ray/FakeSouls-v0"
NUM_ACTIONS = 20
NOOP = 19
"""The do-nothing action; like SoulsGym's, it is always valid."""
LIGHT_ATTACK, HEAVY_ATTACK, PARRY = 16, 17, 18

# Player action effects: (stamina change, boss damage if in reach, player animation name).
_ATTACKS = {
    LIGHT_ATTACK: (-15.0, 60.0, "AttackRightLight1"),
    HEAVY_ATTACK: (-30.0, 110.0, "AttackRightHeavy1Sta"),
    PARRY: (-10.0, 0.0, "ParryLeftStart"),
}
_WALK_M, _ROLL_M, _BOSS_WALK_M = 0.6, 2.0, 0.4
_ROLL_SP, _WALK_SP_GAIN, _IDLE_SP_GAIN = -20.0, 10.0, 15.0
_PLAYER_REACH_M, _BOSS_REACH_M = 3.0, 4.0
_BOSS_ATTACK_PROB, _BOSS_WINDUP_STEPS, _BOSS_DAMAGE, _RIPOSTE_DAMAGE = 0.25, 3, 100.0, 150.0
_UNKNOWN_ANIMATION_PROB = 0.2
_STEP_S, _MAX_DURATION_S = 0.1, 10.0


class InvalidActionError(ValueError):
    """The action is masked out by the env's last reported ``info["action_mask"]``."""


@dataclass
class _Duel:
    """Mutable fight state of one episode."""

    player_xy: np.ndarray
    boss_xy: np.ndarray
    player_hp: float
    player_sp: float
    boss_hp: float
    player_animation: int
    boss_animation: int
    player_animation_s: float = _STEP_S
    boss_animation_s: float = _STEP_S
    windup: int = 0
    """Steps until the boss's current attack lands (0: not attacking)."""


class FakeSoulsEnv(gym.Env):
    """A duel with Iudex's observation and action spaces that runs in microseconds.

    Actions follow SoulsGym: 0-7 walk, 8-15 roll (dodges a landing hit), 16 light attack,
    17 heavy attack, 18 parry (turns a landing hit into a riposte), 19 no-op. Attacks damage
    the boss when it is in reach; the boss walks up, winds up an attack for a few steps and
    hits the player if it is in reach. The reward is the boss's hp fraction lost minus the
    player's, plus 1 for a kill and minus 1 for a death (both terminate the episode).

    ``info["action_mask"]`` (bool, 20) marks the valid actions for the next step: no-op always,
    each other action with probability ``valid_action_prob`` while the player has stamina
    (rolls, attacks and parry need stamina, as in SoulsGym). A masked action raises
    :class:`InvalidActionError`. Faults are injected with the given probabilities as
    ``RuntimeError("injected game crash")`` before a step or reset takes effect; the env stays
    usable afterwards. A hang (``step_hang_prob``) blocks the step forever without raising, as
    a frozen game does. Everything is deterministic after ``reset(seed=...)``.

    Attributes:
        step_count: Completed steps over the env's lifetime.
        reset_count: Completed resets over the env's lifetime.
        injected_errors: Faults raised so far.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        step_error_prob: float = 0.0,
        reset_error_prob: float = 0.0,
        valid_action_prob: float = 0.7,
        phase: int = 1,
        nan_reward_prob: float = 0.0,
        step_hang_prob: float = 0.0,
        glitch_reward: float = float("nan"),
    ) -> None:
        """Creates the env.

        Args:
            step_error_prob: Probability that a step raises an injected crash.
            reset_error_prob: Probability that a reset raises an injected crash.
            valid_action_prob: Probability that an action other than no-op is valid in a step.
            phase: Boss phase reported in the observation (1 or 2).
            nan_reward_prob: Probability that a step reports ``glitch_reward`` (corrupt game data).
            step_hang_prob: Probability that a step never returns (a frozen game).
            glitch_reward: The corrupt reward: NaN by default, or e.g. inf or 3.4e38.
        """
        for name, prob in (
            ("step_error_prob", step_error_prob),
            ("reset_error_prob", reset_error_prob),
            ("valid_action_prob", valid_action_prob),
            ("nan_reward_prob", nan_reward_prob),
            ("step_hang_prob", step_hang_prob),
        ):
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {prob}")
        if phase not in (1, 2):
            raise ValueError(f"phase must be 1 or 2, got {phase}")
        self.step_error_prob = step_error_prob
        self.reset_error_prob = reset_error_prob
        self.valid_action_prob = valid_action_prob
        self.nan_reward_prob = nan_reward_prob
        self.step_hang_prob = step_hang_prob
        self.glitch_reward = float(glitch_reward)
        self.phase = phase
        self.observation_space = iudex_observation_space()
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._load_arena()
        self.step_count = 0
        self.reset_count = 0
        self.injected_errors = 0
        self._error_rng = np.random.default_rng()
        self._duel: _Duel | None = None
        self._mask = np.ones(NUM_ACTIONS, dtype=bool)
        self._terminated = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Starts a duel from the Iudex start poses, jittered by up to 1 m."""
        super().reset(seed=seed)
        if seed is not None:
            self._error_rng = np.random.default_rng([seed, 1])
        self._maybe_crash(self.reset_error_prob)
        rng = self.np_random
        self._duel = _Duel(
            player_xy=self._player_start + rng.uniform(-1.0, 1.0, 2),
            boss_xy=self._boss_start + rng.uniform(-1.0, 1.0, 2),
            player_hp=self._player_max_hp,
            player_sp=self._player_max_sp,
            boss_hp=self._boss_max_hp,
            player_animation=self._player_ids["Idle"],
            boss_animation=self._boss_ids["IdleBattle"],
        )
        self._terminated = False
        self._mask = self._draw_mask()
        self.reset_count += 1
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Plays one 0.1 s exchange: the player's action, then the boss's."""
        if self._duel is None or self._terminated:
            raise RuntimeError("step() needs a reset() first (no episode is running)")
        self._maybe_crash(self.step_error_prob)
        if self.step_hang_prob and self._error_rng.random() < self.step_hang_prob:
            threading.Event().wait()  # blocks forever, holding no lock, like a frozen game
        action = int(action)
        if not (0 <= action < NUM_ACTIONS and self._mask[action]):
            valid = np.flatnonzero(self._mask).tolist()
            raise InvalidActionError(f"action {action} is masked out (valid: {valid})")
        duel = self._duel
        boss_hp, player_hp = duel.boss_hp, duel.player_hp
        rolling = self._player_acts(action)
        self._boss_acts(dodged=rolling, parried=action == PARRY)
        reward = (boss_hp - duel.boss_hp) / self._boss_max_hp
        reward -= (player_hp - duel.player_hp) / self._player_max_hp
        self._terminated = duel.boss_hp <= 0 or duel.player_hp <= 0
        if self._terminated:
            reward += 1.0 if duel.boss_hp <= 0 else -1.0
        self._mask = self._draw_mask()
        self.step_count += 1
        if self.nan_reward_prob > 0 and self._error_rng.random() < self.nan_reward_prob:
            reward = self.glitch_reward
        return self._observation(), float(reward), self._terminated, False, self._info()

    def _load_arena(self) -> None:
        from soulsgym.core import static

        space = self.observation_space
        self._player_max_hp = float(space["player_max_hp"].start)
        self._player_max_sp = float(space["player_max_sp"].start)
        self._boss_max_hp = float(space["boss_max_hp"].start)
        low, high = space["player_pose"].low, space["player_pose"].high
        self._xy_low, self._xy_high = low[:2] + 1.0, high[:2] - 1.0
        self._z_bounds = (float(low[2]), float(high[2]))
        coordinates = static.coordinates[GAME_ID]["iudex"]
        self._player_start = np.asarray(coordinates["player_init_pose"][:2], dtype=np.float64)
        self._boss_start = np.asarray(coordinates["boss_init_pose"][:2], dtype=np.float64)
        self._z = float(coordinates["boss_init_pose"][2])
        self._player_ids = {k: v["ID"] for k, v in static.player_animations[GAME_ID].items()}
        boss = static.boss_animations[GAME_ID]["iudex"]["all"]
        self._boss_ids = {k: v["ID"] for k, v in boss.items()}
        self._boss_attack_ids = [v["ID"] for v in boss.values() if v["type"] == "attacks"]

    def _maybe_crash(self, prob: float) -> None:
        if prob > 0 and self._error_rng.random() < prob:
            self.injected_errors += 1
            raise RuntimeError("injected game crash")

    def _draw_mask(self) -> np.ndarray:
        mask = np.append(self.np_random.random(NUM_ACTIONS - 1) < self.valid_action_prob, True)
        if self._duel is not None and self._duel.player_sp <= 0:
            mask[8:NOOP] = False
        return mask

    def _player_acts(self, action: int) -> bool:
        """Applies the player's action; returns whether the player is rolling."""
        duel = self._duel
        to_boss = duel.boss_xy - duel.player_xy
        rolling = 8 <= action < 16
        if action < 16:
            heading = np.arctan2(to_boss[1], to_boss[0]) - (action % 8) * np.pi / 4
            step_m = _ROLL_M if rolling else _WALK_M
            duel.player_xy = duel.player_xy + step_m * np.array([np.cos(heading), np.sin(heading)])
            duel.player_xy = np.clip(duel.player_xy, self._xy_low, self._xy_high)
            sp_change = _ROLL_SP if rolling else _WALK_SP_GAIN
            animation = "RollingMedium" if rolling else "Move"
        elif action == NOOP:
            sp_change, animation = _IDLE_SP_GAIN, "Idle"
        else:
            sp_change, damage, animation = _ATTACKS[action]
            if np.linalg.norm(to_boss) <= _PLAYER_REACH_M:
                duel.boss_hp = max(duel.boss_hp - damage, 0.0)
        duel.player_sp = float(np.clip(duel.player_sp + sp_change, 0.0, self._player_max_sp))
        self._set_player_animation(self._player_ids[animation])
        return rolling

    def _boss_acts(self, dodged: bool, parried: bool) -> None:
        duel = self._duel
        if duel.boss_hp <= 0:
            return
        to_player = duel.player_xy - duel.boss_xy
        distance = float(np.linalg.norm(to_player))
        rng = self.np_random
        if duel.windup > 0:
            duel.windup -= 1
            if duel.windup == 0:
                self._boss_hit_lands(distance <= _BOSS_REACH_M and not dodged, parried)
            return
        if distance <= _BOSS_REACH_M - 0.5 and rng.random() < _BOSS_ATTACK_PROB:
            duel.windup = _BOSS_WINDUP_STEPS
            self._set_boss_animation(int(rng.choice(self._boss_attack_ids)))
        elif distance > 2.5:
            duel.boss_xy = duel.boss_xy + _BOSS_WALK_M * to_player / distance
            self._set_boss_animation(self._boss_ids["WalkFrontBattle"])
        else:
            self._set_boss_animation(self._boss_ids["IdleBattle"])

    def _boss_hit_lands(self, hits: bool, parried: bool) -> None:
        duel = self._duel
        if hits and parried:
            duel.boss_hp = max(duel.boss_hp - _RIPOSTE_DAMAGE, 0.0)
            self._set_boss_animation(self._boss_ids["DamageParryEnemy1"])
        elif hits:
            duel.player_hp = max(duel.player_hp - _BOSS_DAMAGE, 0.0)
            unknown = self.np_random.random() < _UNKNOWN_ANIMATION_PROB
            self._set_player_animation(-1 if unknown else self._player_ids["DamageMiddle"])

    def _set_player_animation(self, animation: int) -> None:
        duel = self._duel
        same = animation == duel.player_animation
        duel.player_animation_s = duel.player_animation_s + _STEP_S if same else _STEP_S
        duel.player_animation = animation

    def _set_boss_animation(self, animation: int) -> None:
        duel = self._duel
        same = animation == duel.boss_animation
        duel.boss_animation_s = duel.boss_animation_s + _STEP_S if same else _STEP_S
        duel.boss_animation = animation

    def _observation(self) -> dict[str, Any]:
        duel = self._duel
        to_boss = duel.boss_xy - duel.player_xy
        facing = float(np.arctan2(to_boss[1], to_boss[0]))
        normal = to_boss / max(float(np.linalg.norm(to_boss)), 1e-6)
        camera_z = min(self._z + 1.5, self._z_bounds[1])

        def arr(*values: float) -> np.ndarray:
            return np.array(values, dtype=np.float32)

        return {
            "phase": self.phase,
            "player_hp": arr(duel.player_hp),
            "player_max_hp": int(self._player_max_hp),
            "player_sp": arr(duel.player_sp),
            "player_max_sp": int(self._player_max_sp),
            "boss_hp": arr(duel.boss_hp),
            "boss_max_hp": int(self._boss_max_hp),
            "player_pose": arr(*duel.player_xy, self._z, facing),
            "boss_pose": arr(*duel.boss_xy, self._z, _wrap_angle(facing + np.pi)),
            "camera_pose": arr(*duel.player_xy, camera_z, normal[0], normal[1], 0.0),
            "player_animation": duel.player_animation,
            "player_animation_duration": arr(min(duel.player_animation_s, _MAX_DURATION_S)),
            "boss_animation": duel.boss_animation,
            "boss_animation_duration": arr(min(duel.boss_animation_s, _MAX_DURATION_S)),
            "lock_on": 1,
        }

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._mask.copy()}


def _wrap_angle(angle: float) -> float:
    """Wraps an angle in radians into [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:FakeSoulsEnv", max_episode_steps=200)
