"""MinAtar's games (Young & Tian 2019) as gymnasium envs: importing this module registers them.

MinAtar 1.0.15 (the ``images`` extra) defines ``MinAtar/<Game>-v0`` (all 6 actions) and
``-v1`` (each game's minimal action set) in ``minatar.gym.register_envs`` but never calls it;
the env configs name ``soulsai_ray.envs.minatar:MinAtar/Breakout-v1`` so that this module does.
Observations are 10x10 bool planes, one channel per kind of object; ``make_env`` turns them into
uint8 images of 0s and 1s.
"""

from __future__ import annotations

import importlib
import logging
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import gymnasium as gym

DRAWING_MODULES = ("matplotlib.pyplot", "seaborn")
"""What MinAtar imports only to draw frames (``render``) and would import with itself: seaborn
brings scipy and pandas, about 1.2 CPU-s and 110 MB in every process that plays a game."""


class _ImportedOnFirstUse:
    """Stands for a module until one of its attributes is read, then imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


@contextmanager
def _without_drawing_modules():
    """Makes the drawing modules unimportable (unless already imported) and MinAtar's warning
    about them silent while MinAtar is imported."""
    blocked = [name for name in DRAWING_MODULES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment] - an import of it raises ImportError
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(disabled)
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _draw_on_first_use(*modules: ModuleType) -> None:
    """Gives MinAtar's modules the drawing modules they failed to import, imported on first
    use: ``render`` works as it does with them imported up front."""
    names = {"plt": "matplotlib.pyplot", "colors": "matplotlib.colors", "sns": "seaborn"}
    for module in modules:
        for attribute, name in names.items():
            if not isinstance(getattr(module, attribute, None), ModuleType):
                setattr(module, attribute, _ImportedOnFirstUse(name))


try:
    with _without_drawing_modules():
        import minatar.environment
        import minatar.gym
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "MinAtar is not installed: pip install 'soulsai_ray[images]' (or MinAtar)"
    ) from err
_draw_on_first_use(minatar.environment, minatar.gym)

GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
"""MinAtar's games, as its gymnasium ids spell them."""

if "MinAtar/Breakout-v1" not in gym.registry:
    minatar.gym.register_envs()
