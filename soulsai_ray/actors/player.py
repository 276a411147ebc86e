"""PlayerActor: plays a trained policy greedily on one node (a game PC), for scripts/evaluate.py."""

from __future__ import annotations

import ray

from soulsai_ray.evaluation import EvalResult, PlaySetup, play_checkpoints


@ray.remote
class PlayerActor:
    """Runs `play_checkpoints` where Ray placed it (``env.actor_resources`` picks game PCs)."""

    def __init__(self, setup: PlaySetup) -> None:
        self.setup = setup

    def play(self, episodes: int, seed: int) -> EvalResult:
        """Plays ``episodes`` episodes, the first reset seeded with ``seed``."""
        return play_checkpoints(self.setup, episodes, seed)
