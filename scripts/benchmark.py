#!/usr/bin/env python
"""Benchmarks that are measured, not asserted: run them on a quiet machine and compare ratios.

    python scripts/benchmark.py solve --algo dqn_efficient --env lunarlander --seeds 0 1 2 3 4
    python scripts/benchmark.py solve --algo dqn --env lunarlander --seeds 0 1 2 --baseline sb3
    python scripts/benchmark.py solve --algo dqn_efficient --step-latency 0.05 --actors 4
    python scripts/benchmark.py lockstep --algo dqn_efficient --seeds 0 1 2 3 --env-steps 60000
    python scripts/benchmark.py learner --algo dqn dqn_efficient --env lunarlander
    python scripts/benchmark.py throughput --actors 2 --envs-per-actor 8
    python scripts/benchmark.py scale --actors 1 2 4 8 16 32 --rate 20
    sudo python scripts/benchmark.py scale --hosts 1 2 4 8 --rate 20 --delay-ms 30
    python scripts/benchmark.py soak --minutes 30 --algo dqn --seed 0

``throughput`` measures the env steps/s that PPO rollout actors deliver (batches fetched by the
driver, as the learner receives them) on LunarLander against a single-process loop that steps
the same vector env with the same policy network, in the same command. ``scale`` runs DQN with
N rollout actors on a latency-bound env (a game at a fixed step rate) across simulated nodes of a
local multi-node cluster and reports aggregate env steps/s against N x rate, the learner's update
rate, the model lag and how long a weight publish takes to reach the actors (p50/p99). With
``--hosts`` the game PCs are real network hosts (namespaces joined by the scripts a user runs;
see ``scripts/scale_hosts.py``).

``soak`` trains on game-rate envs across simulated game-PC nodes while it SIGKILLs every actor
kind and the driver (then resumes it), freezes envs and fills the checkpoint disk on a seeded
schedule, and reports recovery times, segments, samples and memory (see ``scripts/soak.py``).

``solve`` trains with the shipped config until the env's target return (mean of the last 100
training episodes) and reports env steps and wall seconds to the target per seed and as median
(range); ``--step-latency``/``--actors`` measure it at a game's step rate (see
``scripts/bench_solve.py``). ``--baseline sb3`` runs Stable-Baselines3 with rl-zoo
hyperparameters in the same command (the ``bench`` extra: ``pip install -e .[bench]``);
``--baseline rllib`` runs RLlib in its own venv (``make bench-rllib``; see
``scripts/rllib_baseline.py``).

``lockstep`` screens DQN settings: each seed trains in one process without Ray (the samplers,
replay buffer and learner of a run, in lock-step at the configured replay ratio), several seeds
at once, and reports env steps to the target like ``solve`` (see ``scripts/bench_lockstep.py``).

``learner`` times the DQN learner's update step with a shipped config on this machine and says
how many game PCs it keeps at the configured replay ratio (see ``scripts/bench_learner.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# Every cluster a benchmark starts or joins uses token authentication (read when Ray is imported).
os.environ.setdefault("RAY_AUTH_MODE", "token")

from bench_learner import cmd_learner  # noqa: E402
from bench_lockstep import cmd_lockstep  # noqa: E402
from bench_solve import cmd_solve  # noqa: E402
from peer_baselines import ENV_IDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _throughput_config(envs_per_actor: int, n_steps: int, actors: int) -> Any:
    from soulsai_ray.config import ClusterConfig, EnvConfig, PPOConfig, TrainConfig

    return TrainConfig(
        algo=PPOConfig(n_steps=n_steps),
        env=EnvConfig(id="LunarLander-v3", num_envs_per_actor=envs_per_actor),
        cluster=ClusterConfig(num_rollout_actors=actors),
    )


def throughput_single_process(cfg: Any, seconds: float) -> float:
    """Steps/s of one process stepping the vector env with the PPO policy."""
    import torch

    from soulsai_ray.envs import make_env
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
    from soulsai_ray.models import ActorCritic, state_dict_to_numpy

    init_ray(cfg.cluster, extra_cpus_needed=cfg.cluster.num_rollout_actors)
    try:
        actors = [PPORolloutActor.remote(cfg, i) for i in range(cfg.cluster.num_rollout_actors)]
        spec = ray.get(actors[0].spec.remote())
        model = ActorCritic(
            spec.obs_dim, spec.num_actions, cfg.algo.hidden_sizes, cfg.algo.activation
        )
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
    cfg = _throughput_config(args.envs_per_actor, args.n_steps, args.actors)
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


def scale_once(actors: int, nodes: int, rate: float, seconds: float) -> dict[str, Any]:
    """DQN with ``actors`` latency-bound rollout actors spread over ``nodes`` simulated game PCs."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    from soulsai_ray.config import (
        CheckpointConfig,
        ClusterConfig,
        DQNConfig,
        EnvConfig,
        StopConfig,
        TelemetryConfig,
        TrainConfig,
    )
    from soulsai_ray.loops.common import MetricsExporter, RunRecorder
    from soulsai_ray.loops.dqn_async import DQNAsyncLoop

    per_node = -(-actors // nodes)
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1"}
    )
    for _ in range(nodes):
        cluster.add_node(
            num_cpus=per_node, resources={"soulsgym": per_node}, node_ip_address="127.0.0.1"
        )
    ray.init(address=cluster.address)
    cfg = TrainConfig(
        # settings for a real-time env, as in conf/algo_env/dqn_iudex.yaml
        algo=DQNConfig(
            hidden_sizes=[128, 128],
            learning_starts=500,
            batch_size=64,
            replay_ratio=64,
            weight_sync_every=1,
            push_every=16,
            collect_steps=64,
            collect_time_s=0.5,  # short calls: the measurement sees steps within 0.5 s
            ratio_slack_steps=None,
        ),
        # Acrobot: 500-step episodes even for a poor policy, so resets hardly count
        env=EnvConfig(id="Acrobot-v1", step_latency_s=1.0 / rate, actor_resources={"soulsgym": 1}),
        cluster=ClusterConfig(
            address=cluster.address, num_rollout_actors=actors, rollout_num_cpus=0
        ),
        stop=StopConfig(env_steps=None, time_s=3600.0),
        checkpoint=CheckpointConfig(every_updates=10**9),
        telemetry=TelemetryConfig(console=False, prometheus=False),
    )
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_scale_{actors}_"))
    loop = DQNAsyncLoop(
        cfg, RunRecorder(run_dir, cfg.telemetry, cfg.stop, 1, "", MetricsExporter(False, "b"))
    )
    window: dict[str, Any] = {}

    def measure() -> None:
        try:
            while (
                not hasattr(loop, "fleet")
                or len(loop.fleet.alive) < actors
                or not loop.sync_latencies
            ):
                time.sleep(0.1)
            time.sleep(2.0)
            c = loop.counters
            t0, steps0, updates0, lag0, acc0 = (
                time.monotonic(),
                c.env_steps,
                c.updates,
                c.model_lag_sum,
                c.model_lag_samples,
            )
            time.sleep(seconds)
            dt = time.monotonic() - t0
            window.update(
                steps_per_s=(c.env_steps - steps0) / dt,
                updates_per_s=(c.updates - updates0) / dt,
                model_lag=(c.model_lag_sum - lag0) / max(c.model_lag_samples - acc0, 1),
            )
        finally:
            cfg.stop.time_s = 0.001  # always end the run

    thread = threading.Thread(target=measure, daemon=True)
    thread.start()
    try:
        summary = loop.run()
    finally:
        ray.shutdown()
        cluster.shutdown()
    limit = actors * rate
    return {
        "actors": actors,
        "limit_steps_per_s": limit,
        "efficiency": window["steps_per_s"] / limit,
        **window,
        "weight_sync_p50_s": summary["weight_sync_p50_s"],
        "weight_sync_p99_s": summary["weight_sync_p99_s"],
    }


def cmd_scale(args: argparse.Namespace) -> None:
    if args.hosts:
        from scale_hosts import cmd_scale_hosts

        cmd_scale_hosts(args)
        return
    print(
        f"latency-bound env at {args.rate:g} steps/s per actor, {args.nodes} simulated nodes, DQN learning"
    )
    print(" actors  steps/s  limit  efficiency  updates/s  model lag  sync p50  sync p99")
    rows = []
    for n in args.actors:
        r = scale_once(n, min(args.nodes, n), args.rate, args.seconds)
        rows.append(r)
        print(
            f"{n:7d} {r['steps_per_s']:8.1f} {r['limit_steps_per_s']:6.0f} {r['efficiency']:11.3f} "
            f"{r['updates_per_s']:10.1f} {r['model_lag']:10.2f} {r['weight_sync_p50_s'] * 1e3:7.1f}ms "
            f"{r['weight_sync_p99_s'] * 1e3:7.1f}ms",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def cmd_soak(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from soak import Soak
    from soak_report import print_report

    soak = Soak(args.algo, args.minutes, args.seed, args.nodes, args.step_latency)
    report = soak.run()
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    solve = sub.add_parser("solve", help="wall time and env steps to the env's target return")
    solve.add_argument("--algo", default="dqn", choices=["dqn", "dqn_efficient", "ppo"])
    solve.add_argument("--env", default="lunarlander", choices=sorted(ENV_IDS))
    solve.add_argument("--seeds", type=int, nargs="+", default=[0])
    solve.add_argument("--time-limit", type=float, default=1800.0, help="seconds per run")
    solve.add_argument("--baseline", choices=["none", "sb3", "rllib"], default="none")
    solve.add_argument("--baseline-time-limit", type=float, default=3600.0)
    solve.add_argument(
        "--step-latency", type=float, default=0.0, help="seconds per env step, as on a game PC"
    )
    solve.add_argument("--actors", type=int, default=None, help="rollout actors (game PCs)")
    solve.add_argument(
        "--override", nargs="*", default=[], help="extra Hydra overrides for our runs"
    )
    solve.add_argument("--json", help="write all results to this file")
    solve.set_defaults(func=cmd_solve)
    lock = sub.add_parser("lockstep", help="screen DQN settings: env steps to target, no Ray")
    lock.add_argument("--algo", default="dqn_efficient", choices=["dqn", "dqn_efficient"])
    lock.add_argument("--env", default="lunarlander", choices=sorted(ENV_IDS))
    lock.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    lock.add_argument("--env-steps", type=int, default=100_000, help="cap per seed")
    lock.add_argument("--actors", type=int, default=4, help="samplers stepped in turn")
    lock.add_argument("--sync-every", type=int, default=32, help="env steps between weight syncs")
    lock.add_argument("--jobs", type=int, default=None, help="seeds at once (default: cores)")
    lock.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    lock.add_argument("--json", help="write all results to this file")
    lock.set_defaults(func=cmd_lockstep)
    learner = sub.add_parser("learner", help="DQN learner updates/s and the game PCs it keeps")
    learner.add_argument("--algo", nargs="+", default=["dqn"], choices=["dqn", "dqn_efficient"])
    learner.add_argument("--env", default="lunarlander", help="a config in conf/env")
    learner.add_argument("--seconds", type=float, default=10.0, help="timed seconds per algo")
    learner.add_argument("--game-rate", type=float, default=20.0, help="env steps/s per game PC")
    learner.add_argument("--obs-dim", type=int, help="observation size (envs that need a game)")
    learner.add_argument("--actions", type=int, help="number of actions (with --obs-dim)")
    learner.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    learner.set_defaults(func=cmd_learner)
    thr = sub.add_parser("throughput", help="PPO rollout env steps/s: Ray actors vs one process")
    thr.add_argument("--actors", type=int, default=2)
    thr.add_argument("--envs-per-actor", type=int, default=8)
    thr.add_argument("--n-steps", type=int, default=128)
    thr.add_argument("--seconds", type=float, default=20.0)
    thr.set_defaults(func=cmd_throughput)
    scale = sub.add_parser("scale", help="aggregate env steps/s vs the physical limit for N actors")
    scale.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    scale.add_argument("--nodes", type=int, default=4, help="simulated game-PC nodes")
    scale.add_argument("--rate", type=float, default=20.0, help="env steps/s per actor")
    scale.add_argument("--seconds", type=float, default=30.0, help="measurement window per N")
    scale.add_argument(
        "--hosts",
        type=int,
        nargs="*",
        help="game-PC network namespaces per run (needs root): real hosts instead of --actors",
    )
    scale.add_argument("--delay-ms", type=int, default=30, help="--hosts: link delay (netem)")
    scale.add_argument("--loss-pct", type=float, default=0.0, help="--hosts: link loss")
    scale.add_argument("--json", help="write the table to this file")
    scale.set_defaults(func=cmd_scale)
    soak = sub.add_parser("soak", help="chaos soak: faults of every kind on a seeded schedule")
    soak.add_argument("--minutes", type=float, default=30.0)
    soak.add_argument("--algo", default="dqn", choices=["dqn", "ppo"])
    soak.add_argument("--seed", type=int, default=0)
    soak.add_argument("--nodes", type=int, default=3, help="simulated game PCs, one actor each")
    soak.add_argument("--step-latency", type=float, default=0.02, help="seconds per env step")
    soak.add_argument("--json", help="write the report to this file")
    soak.set_defaults(func=cmd_soak)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args.func(args)


if __name__ == "__main__":
    main()
