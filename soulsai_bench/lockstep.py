"""``python -m soulsai_bench lockstep``: env steps to the target return of a DQN config, in one
process per seed and several seeds at once: a screen of settings that costs a fraction of
``solve``.

Each seed runs the product's parts without Ray: ``--actors`` epsilon-greedy samplers (the rollout
actors' code, with their env seeds, epsilons and n-step schedule) take env steps in turn; after
each step the learner makes the updates the configured replay ratio allows
(:class:`soulsai_ray.replay_ratio.ReplayRatio`, as in a run) on batches from a replay buffer, and
the samplers install the learner's weights every ``--sync-every`` env steps. There is no
transport: no weight lag beyond the sync interval, no sample dropped as stale, no actor paused.
The env steps to the target therefore measure the settings alone, and ``solve`` measures the
whole system; a setting that wins here is confirmed with ``solve`` before it ships.

The target is the env's (the mean return of the last ``telemetry.window`` training episodes, as
in a run); ``--env-steps`` caps each seed. Seeds run in parallel processes with one torch thread
each (``--jobs``, default: one per core), so wall seconds are per process, not a run's time.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import multiprocessing
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from soulsai_bench.solve import SolveRun, print_run, summary_table
from soulsai_ray.compose import compose_config

WHO = "lockstep"


def train_on_replay(learner: Any, buffer: Any, batch_size: int) -> None:
    """One update on a batch from ``buffer``, as a run's learner and replay actor make it: drawn
    with the learner's annealed importance exponent (prioritized replay), then new priorities
    from the batch's TD errors (none after a rolled-back update; uniform replay keeps none)."""
    result = learner.update(buffer.sample(batch_size, learner.per_beta()))
    if not result.rolled_back:
        buffer.update_priorities(result.indices, result.td_errors)


def lockstep_run(
    algo: str,
    env: str,
    overrides: list[str],
    seed: int,
    actors: int,
    max_env_steps: int,
    sync_every: int,
) -> SolveRun:
    """Trains one seed in this process until the target return or ``max_env_steps``."""
    import torch

    from soulsai_ray.algos.dqn import DQNLearner
    from soulsai_ray.algos.exploration import actor_epsilon
    from soulsai_ray.envs.factory import make_env
    from soulsai_ray.replay import replay_buffer
    from soulsai_ray.replay_ratio import ReplayRatio
    from soulsai_ray.sampling.epsilon_greedy import EpsilonGreedySampler

    cfg = compose_config(algo, env, [*overrides, f"seed={seed}"])
    if cfg.algo.name != "dqn":
        raise ValueError(f"algo={algo} is not a DQN config: lockstep runs DQN only")
    if actors < 1 or max_env_steps < 1 or sync_every < 1:
        raise ValueError("actors, env steps and sync interval must be >= 1")
    torch.set_num_threads(1)
    algo_cfg, env_cfg = cfg.algo, cfg.env
    samplers = [
        EpsilonGreedySampler(
            lambda: make_env(env_cfg),
            algo_cfg,
            seed=cfg.env_seed(index),  # the env seeds of a run's actors
            max_abs_obs=env_cfg.max_abs_obs,
            max_abs_reward=env_cfg.max_abs_reward,
        )
        for index in range(actors)
    ]
    obs_dim, num_actions = samplers[0].obs_dim, samplers[0].num_actions
    learner = DQNLearner(algo_cfg, obs_dim, num_actions, seed=seed)
    buffer = replay_buffer(algo_cfg, obs_dim, num_actions, seed)  # the run's kind of replay
    ratio = ReplayRatio(algo_cfg.replay_ratio, algo_cfg.batch_size, algo_cfg.learning_starts, None)
    window: collections.deque[float] = collections.deque(maxlen=cfg.telemetry.window)
    target = cfg.stop.return_mean
    version, env_steps, solved_at, solved_s = 0, 0, None, None
    start = time.perf_counter()

    def publish() -> None:
        weights = learner.policy_weights()
        for sampler in samplers:
            sampler.load_weights(weights, version)

    publish()
    while env_steps < max_env_steps and solved_at is None:
        for index, sampler in enumerate(samplers):
            sampler.set_n_step(algo_cfg.n_step_at(env_steps))  # applies from the next episode
            sampler.step(actor_epsilon(algo_cfg, index, actors, env_steps))
            env_steps += 1
            transitions = sampler.pop_transitions()
            if transitions is not None:
                buffer.add(transitions)
            window.extend(sampler.pop_stats().returns)
            ratio.inserted(1)
            if len(buffer) >= algo_cfg.learning_starts:
                updates = ratio.allowed_updates()
                for _ in range(updates):
                    train_on_replay(learner, buffer, algo_cfg.batch_size)
                ratio.learned(updates)
            if env_steps % sync_every == 0:
                version += 1
                publish()
            full = len(window) == window.maxlen
            if target is not None and full and float(np.mean(window)) >= target:
                solved_at, solved_s = env_steps, time.perf_counter() - start
                break
    return SolveRun(
        who=WHO,
        seed=seed,
        solved=solved_at is not None,
        env_steps_to_target=solved_at,
        time_to_target_s=solved_s,
        env_steps=env_steps,
        wall_s=time.perf_counter() - start,
        return_mean=float(np.mean(window)) if window else None,
        replay_ratio=learner.updates * algo_cfg.batch_size / env_steps,
        replay_ratio_configured=algo_cfg.replay_ratio,
    )


def cmd_lockstep(args: Any) -> None:
    jobs = args.jobs or os.cpu_count() or 1
    print(
        f"lockstep: algo={args.algo} env={args.env} {' '.join(args.override)}, seeds "
        f"{args.seeds}, {args.actors} samplers, at most {args.env_steps:,} env steps, "
        f"{jobs} in parallel",
        flush=True,
    )
    runs: list[SolveRun] = []
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per seed, as torch likes
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                lockstep_run,
                args.algo,
                args.env,
                args.override,
                seed,
                args.actors,
                args.env_steps,
                args.sync_every,
            )
            for seed in args.seeds
        ]
        for future in concurrent.futures.as_completed(futures):
            runs.append(future.result())
            print_run(runs[-1])
    runs.sort(key=lambda r: r.seed)
    print()
    print(summary_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=2))
