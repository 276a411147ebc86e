"""``python -m soulsai_bench throughput``: env steps/s of PPO rollout actors against one process.

It measures the env steps/s that PPO rollout actors deliver on LunarLander (batches fetched by
the driver, as the learner receives them, one request in flight per actor) against a
single-process loop that steps the same vector env with the same policy network, in the same
command, and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def throughput_config(envs_per_actor: int, n_steps: int, actors: int) -> Any:
    """PPO on LunarLander with ``actors`` rollout actors of ``envs_per_actor`` envs each."""
    from soulsai_ray.algo_config import PPOConfig
    from soulsai_ray.config import ClusterConfig, EnvConfig, TrainConfig

    return TrainConfig(
        algo=PPOConfig(n_steps=n_steps),
        env=EnvConfig(id="LunarLander-v3", num_envs_per_actor=envs_per_actor),
        cluster=ClusterConfig(num_rollout_actors=actors),
    )


def throughput_single_process(cfg: Any, seconds: float) -> float:
    """Steps/s of one process stepping the vector env with the PPO policy."""
    import torch

    from soulsai_ray.envs.factory import make_env
    from soulsai_ray.sampling.on_policy import OnPolicySampler

    torch.set_num_threads(1)
    sampler = OnPolicySampler(
        lambda: make_env(cfg.env), cfg.env.num_envs_per_actor, cfg.algo, seed=0
    )
    sampler.collect(cfg.algo.n_steps)  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch, _ = sampler.collect(cfg.algo.n_steps)
        steps += len(batch)
    return steps / (time.perf_counter() - start)


def throughput_actors(cfg: Any, seconds: float) -> float:
    """Steps/s the rollout actors deliver to the driver, one request in flight per actor."""
    import ray

    from soulsai_ray.actors.ppo_rollout import PPORolloutActor
    from soulsai_ray.cluster import init_ray, shutdown_ray
    from soulsai_ray.models import actor_critic, state_dict_to_numpy

    init_ray(cfg.cluster, extra_cpus_needed=cfg.cluster.num_rollout_actors)
    try:
        actors = [PPORolloutActor.remote(cfg, i) for i in range(cfg.cluster.num_rollout_actors)]
        spec = ray.get(actors[0].spec.remote())
        model = actor_critic(cfg.algo, spec.obs, spec.num_actions)
        weights = [ray.put(state_dict_to_numpy(model))]
        ray.get([a.collect.remote(0, weights)[1] for a in actors])  # warm-up
        inflight = {a.collect.remote(0, weights)[0]: a for a in actors}
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            actor = inflight.pop(ready[0])
            steps += len(ray.get(ready[0]))
            inflight[actor.collect.remote(0, weights)[0]] = actor
        return steps / (time.perf_counter() - start)
    finally:
        shutdown_ray()


def cmd_throughput(args: argparse.Namespace) -> None:
    cfg = throughput_config(args.envs_per_actor, args.n_steps, args.actors)
    single = throughput_single_process(cfg, args.seconds)
    print(
        f"single process, {args.envs_per_actor} envs:           {single:8.0f} env steps/s",
        flush=True,
    )
    actors = throughput_actors(cfg, args.seconds)
    print(
        f"{args.actors} rollout actors x {args.envs_per_actor} envs (Ray):      {actors:8.0f} env steps/s"
    )
    print(f"ratio: {actors / single:.2f}x")
