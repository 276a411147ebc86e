"""Plain (Ray-free) sampling logic that the rollout actors wrap."""

from soulsai_ray.sampling.episodes import EpisodeStats
from soulsai_ray.sampling.epsilon_greedy import EpsilonGreedySampler

__all__ = ["EpisodeStats", "EpsilonGreedySampler"]
