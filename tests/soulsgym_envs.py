"""soulsgym's own env classes built without the game (imported by this name, which no other test
folder uses): the tests check the project's Iudex configs and FakeSouls envs against them."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def soulsgym_env_without_game(monkeypatch: Any, name: str, **kwargs: Any) -> Any:
    """soulsgym's Iudex env class ``name`` (``IudexEnv``, ``IudexImgEnv``) built from the game's
    static data alone: its spaces, info keys and config are the real ones; stepping needs the
    game. ``monkeypatch`` undoes the patched ``SoulsEnv.__init__`` after the test."""
    from soulsai_ray.envs.soulsgym import ensure_soulsgym

    ensure_soulsgym()
    from soulsgym.envs.darksouls3 import iudex
    from soulsgym.envs.soulsenv import SoulsEnv
    from soulsgym.games.game import StaticGameData

    def init_without_game(self, game_speed=1.0):
        self.game = SimpleNamespace(data=StaticGameData("DarkSoulsIII"))
        self.config_path = Path(inspect.getfile(SoulsEnv)).parent / "config"
        self.env_args = self._load_env_args()

    monkeypatch.setattr(SoulsEnv, "__init__", init_without_game)
    return getattr(iudex, name)(**kwargs)
