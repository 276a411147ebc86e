"""Playing checkpoints on a cluster's game PCs (``scripts/evaluate.py cluster=remote``)."""

from __future__ import annotations

import logging

import ray

from soulsai_ray.actors.player import PlayerActor
from soulsai_ray.cluster import init_ray, shutdown_ray
from soulsai_ray.config import ClusterConfig
from soulsai_ray.evaluation import EvalResult, PlaySetup, merge_results
from soulsai_ray.loops.fleet import resource_slots

logger = logging.getLogger(__name__)


def play_on_cluster(
    setup: PlaySetup, cluster: ClusterConfig, episodes: int, seed: int
) -> EvalResult:
    """Joins ``cluster.address`` and plays there (`play_on_nodes`)."""
    init_ray(cluster)
    try:
        return play_on_nodes(setup, cluster, episodes, seed)
    finally:
        shutdown_ray()


def play_on_nodes(setup: PlaySetup, cluster: ClusterConfig, episodes: int, seed: int) -> EvalResult:
    """Plays ``episodes`` greedy episodes split over one player per rollout slot (Ray is up).

    With ``cluster.num_rollout_actors=auto`` there is one player per slot of
    ``env.actor_resources`` (one per game PC); each plays its share on its own env.
    """
    count = cluster.num_rollout_actors
    if count == "auto":
        count = max(resource_slots(dict(setup.env.actor_resources)), 1)
    count = min(int(count), episodes)
    players = [
        PlayerActor.options(
            num_cpus=cluster.rollout_num_cpus,
            resources=dict(setup.env.actor_resources) or None,
        ).remote(setup)
        for _ in range(count)
    ]
    shares = [episodes // count + (i < episodes % count) for i in range(count)]
    logger.info("playing %d episodes on %d players", episodes, count)
    refs = [
        p.play.remote(n, seed + 1000 * i)
        for i, (p, n) in enumerate(zip(players, shares, strict=True))
    ]
    results = ray.get(refs)
    for player in players:
        ray.kill(player)
    return merge_results(results)
