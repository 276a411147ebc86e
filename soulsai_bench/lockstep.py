"""``python -m soulsai_bench lockstep``: env steps to the target return of a DQN config, in one
process per seed and several seeds at once: a screen of settings that costs a fraction of
``solve``.

Each seed is a run with ``cluster=serial`` (:mod:`soulsai_ray.loops.serial`): ``--actors``
samplers (the rollout actors' code, with their env seeds, epsilons and n-step schedule) take env
steps in turn; after each step the learner makes the updates the configured replay ratio allows,
and the samplers install the learner's newest weights every ``--sync-every`` env steps
(``algo.weight_sync_every``). There is no transport: no weight lag beyond the sync interval, no
sample dropped as stale, no actor paused.
The env steps to the target therefore measure the settings alone, and ``solve`` measures the
whole system; a setting that wins here is confirmed with ``solve`` before it ships.

The target is the env's (the mean return of the last ``telemetry.window`` training episodes, as
in a run); ``--env-steps`` caps each seed. Seeds run in parallel processes with one torch thread
each (``--jobs``, default: one per core), so wall seconds are per process, not a run's time.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from soulsai_bench.solve import SolveRun, print_run, summary_table
from soulsai_ray.compose import compose_config

WHO = "lockstep"


def lockstep_run(
    algo: str,
    env: str,
    overrides: list[str],
    seed: int,
    actors: int,
    max_env_steps: int,
    sync_every: int,
) -> SolveRun:
    """Trains one seed in this process (``cluster=serial``) until the target or
    ``max_env_steps``; its run folder is a temporary one."""
    from soulsai_ray.experiment import build_experiment

    if actors < 1 or max_env_steps < 1 or sync_every < 1:
        raise ValueError("actors, env steps and sync interval must be >= 1")
    cfg = compose_config(
        algo,
        env,
        [
            *overrides,
            f"seed={seed}",
            "cluster=serial",
            f"cluster.num_rollout_actors={actors}",
            f"stop.env_steps={max_env_steps}",
            "checkpoint.every_updates=1000000000",
            "telemetry.console=false",
            "telemetry.prometheus=false",
        ],
    )
    if cfg.algo.name != "dqn":
        raise ValueError(f"algo={algo} is not a DQN config: lockstep runs DQN only")
    cfg = replace(cfg, algo=replace(cfg.algo, weight_sync_every=sync_every))
    with tempfile.TemporaryDirectory(prefix="lockstep") as run_dir:
        summary = build_experiment(cfg, Path(run_dir)).run()
    steps = summary["env_steps"]
    return SolveRun(
        who=WHO,
        seed=seed,
        solved=summary["env_steps_to_target"] is not None,
        env_steps_to_target=summary["env_steps_to_target"],
        time_to_target_s=summary["time_to_target_s"],
        env_steps=steps,
        wall_s=summary["wall_s"],
        return_mean=summary["return_mean"],
        replay_ratio=summary["updates"] * cfg.algo.batch_size / max(steps, 1),
        replay_ratio_configured=cfg.algo.replay_ratio,
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
