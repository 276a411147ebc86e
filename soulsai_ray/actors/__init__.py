"""Thin ``ray.remote`` shells around the plain learner, replay and sampling classes."""

from soulsai_ray.actors.learner import LearnerActor
from soulsai_ray.actors.replay import ReplayActor
from soulsai_ray.actors.rollout import RolloutActor
from soulsai_ray.actors.weights import WeightStore

__all__ = ["LearnerActor", "ReplayActor", "RolloutActor", "WeightStore"]
