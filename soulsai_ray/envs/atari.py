"""Atari 2600 games through ale-py (ROMs ship in its wheel) with the standard DQN preprocessing:
importing this module registers ``soulsai_ray/Atari-v0``.

``gymnasium.make("soulsai_ray/Atari-v0", game="Breakout")`` gives ``ALE/<game>-v5`` (sticky
actions, as Machado et al. 2018 recommend) seen through gymnasium's ``AtariPreprocessing``
(up to 30 no-ops at reset, 4 frames per step with the max of the last two, 84x84 grayscale):
single frames, ``Box(0, 255, (84, 84, 1), uint8)``. ``conf/env/atari_breakout.yaml`` stacks the
last 4 as channels (``env.frame_stack: 4``), so a run's networks read the [84, 84, 4] image of
the DQN papers, and a frames replay stores each frame once. Needs the ``atari`` extra
(pip install 'soulsai_ray[atari]').
"""

from __future__ import annotations

import gymnasium as gym

try:
    import ale_py
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("ale-py is not installed: pip install 'soulsai_ray[atari]'") from err

__all__ = ["ENV_ID", "FRAME_SIZE", "make_atari"]

ENV_ID = "soulsai_ray/Atari-v0"
FRAME_SIZE = 84
"""Height and width of a preprocessed frame."""

gym.register_envs(ale_py)


def make_atari(game: str = "Breakout", render_mode: str | None = None) -> gym.Env:
    """``ALE/<game>-v5`` with the standard preprocessing, one 84x84x1 grayscale frame a step.

    Args:
        game: The ALE game, as its ids spell it (``Breakout``, ``Pong``, ``SpaceInvaders``).
        render_mode: Passed to the ALE env (``rgb_array`` to record videos).
    """
    env = gym.make(f"ALE/{game}-v5", frameskip=1, render_mode=render_mode)
    return gym.wrappers.AtariPreprocessing(
        env, frame_skip=4, screen_size=FRAME_SIZE, grayscale_newaxis=True
    )


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=make_atari)
