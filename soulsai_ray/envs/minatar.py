"""MinAtar's games (Young & Tian 2019) as gymnasium envs: importing this module registers them.

MinAtar 1.0.15 (the ``images`` extra) defines ``MinAtar/<Game>-v0`` (all 6 actions) and
``-v1`` (each game's minimal action set) in ``minatar.gym.register_envs`` but never calls it;
the env configs name ``soulsai_ray.envs.minatar:MinAtar/Breakout-v1`` so that this module does.
Observations are 10x10 bool planes, one channel per kind of object; ``make_env`` turns them into
uint8 images of 0s and 1s.
"""

from __future__ import annotations

import gymnasium as gym

try:
    from minatar.gym import register_envs
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "MinAtar is not installed: pip install 'soulsai_ray[images]' (or MinAtar)"
    ) from err

GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
"""MinAtar's games, as its gymnasium ids spell them."""

if "MinAtar/Breakout-v1" not in gym.registry:
    register_envs()
