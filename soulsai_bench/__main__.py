"""Benchmarks that are measured, not asserted: run them on a quiet machine and compare ratios.

    python -m soulsai_bench solve --algo dqn_efficient --env lunarlander --seeds 0 1 2 3 4
    python -m soulsai_bench solve --algo dqn --env lunarlander --seeds 0 1 2 --baseline sb3
    python -m soulsai_bench solve --algo dqn_efficient --step-latency 0.05 --actors 4
    python -m soulsai_bench lockstep --algo dqn_efficient --seeds 0 1 2 3 --env-steps 60000
    python -m soulsai_bench learner --algo dqn dqn_efficient --env lunarlander
    python -m soulsai_bench throughput --actors 2 --envs-per-actor 8
    python -m soulsai_bench scale --actors 1 2 4 8 16 32 --rate 20
    sudo .venv/bin/python -m soulsai_bench scale --hosts 1 2 4 8 --rate 20 --delay-ms 30
    python -m soulsai_bench soak --minutes 30 --algo dqn --seed 0

``solve`` trains with the shipped config until the env's target return (mean of the last 100
training episodes) and reports env steps and wall seconds to the target per seed and as median
(range); ``--step-latency``/``--actors`` measure it at a game's step rate (see
``soulsai_bench/solve.py``). ``--baseline sb3`` runs Stable-Baselines3 with rl-zoo
hyperparameters in the same command (the ``bench`` extra: ``pip install -e .[bench]``);
``--baseline rllib`` runs RLlib in its own venv (``make bench-rllib``; see
``soulsai_bench/rllib_baseline.py``).

``lockstep`` screens DQN settings: each seed trains in one process without Ray (the samplers,
replay buffer and learner of a run, in lock-step at the configured replay ratio), several seeds
at once, and reports env steps to the target like ``solve`` (see ``soulsai_bench/lockstep.py``).

``learner`` times the DQN learner's update step with a shipped config on this machine and says
how many game PCs it keeps at the configured replay ratio (see ``soulsai_bench/learner.py``).

``throughput`` measures the env steps/s that PPO rollout actors deliver on LunarLander against a
single process stepping the same envs (see ``soulsai_bench/throughput.py``).

``scale`` runs DQN with N rollout actors on a game-rate env across simulated nodes of a local
multi-node cluster and reports env steps/s against N x rate, updates/s, model lag and weight-sync
latency; with ``--hosts`` the game PCs are network namespaces joined by the scripts a user runs
(see ``soulsai_bench/scale.py`` and ``soulsai_bench/scale_hosts.py``).

``soak`` trains on game-rate envs across simulated game-PC nodes while it SIGKILLs every actor
kind and the driver (then resumes it), freezes envs and fills the checkpoint disk on a seeded
schedule, and reports recovery times, segments, samples and memory (see
``soulsai_bench/soak.py``).
"""

from __future__ import annotations

import argparse
import os

# Every cluster a benchmark starts or joins uses token authentication (read when Ray is imported).
os.environ.setdefault("RAY_AUTH_MODE", "token")

from soulsai_bench.learner import cmd_learner  # noqa: E402
from soulsai_bench.lockstep import cmd_lockstep  # noqa: E402
from soulsai_bench.peer_baselines import ENV_IDS  # noqa: E402
from soulsai_bench.scale import cmd_scale  # noqa: E402
from soulsai_bench.soak import FAULT_KINDS, cmd_soak  # noqa: E402
from soulsai_bench.solve import cmd_solve  # noqa: E402
from soulsai_bench.throughput import cmd_throughput  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(
        prog="python -m soulsai_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_solve, _add_lockstep, _add_learner, _add_throughput, _add_scale, _add_soak):
        add(sub)
    return parser


def _add_solve(sub: argparse._SubParsersAction) -> None:
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
    solve.add_argument(
        "--runs-dir", help="keep each run's folder (TensorBoard, checkpoints) under this folder"
    )
    solve.set_defaults(func=cmd_solve)


def _add_lockstep(sub: argparse._SubParsersAction) -> None:
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


def _add_learner(sub: argparse._SubParsersAction) -> None:
    learner = sub.add_parser("learner", help="DQN learner updates/s and the game PCs it keeps")
    learner.add_argument("--algo", nargs="+", default=["dqn"], choices=["dqn", "dqn_efficient"])
    learner.add_argument("--env", default="lunarlander", help="a config in conf/env")
    learner.add_argument("--seconds", type=float, default=10.0, help="timed seconds per algo")
    learner.add_argument("--game-rate", type=float, default=20.0, help="env steps/s per game PC")
    learner.add_argument("--obs-dim", type=int, help="observation size (envs that need a game)")
    learner.add_argument("--actions", type=int, help="number of actions (with --obs-dim)")
    learner.add_argument(
        "--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"], help="where to learn"
    )
    learner.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    learner.set_defaults(func=cmd_learner)


def _add_throughput(sub: argparse._SubParsersAction) -> None:
    thr = sub.add_parser("throughput", help="PPO rollout env steps/s: Ray actors vs one process")
    thr.add_argument("--actors", type=int, default=2)
    thr.add_argument("--envs-per-actor", type=int, default=8)
    thr.add_argument("--n-steps", type=int, default=128)
    thr.add_argument("--seconds", type=float, default=20.0)
    thr.set_defaults(func=cmd_throughput)


def _add_scale(sub: argparse._SubParsersAction) -> None:
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
    scale.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    scale.add_argument("--json", help="write the table to this file")
    scale.set_defaults(func=cmd_scale)


def _add_soak(sub: argparse._SubParsersAction) -> None:
    soak = sub.add_parser("soak", help="chaos soak: faults of every kind on a seeded schedule")
    soak.add_argument("--minutes", type=float, default=30.0)
    soak.add_argument("--algo", default="dqn", choices=["dqn", "ppo"])
    soak.add_argument("--seed", type=int, default=0)
    soak.add_argument("--nodes", type=int, default=3, help="simulated game PCs, one actor each")
    soak.add_argument("--step-latency", type=float, default=0.02, help="seconds per env step")
    soak.add_argument(
        "--faults",
        nargs="+",
        choices=FAULT_KINDS,
        help="strike only with these kinds of fault (default: every kind the algo has)",
    )
    soak.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    soak.add_argument("--json", help="write the report to this file")
    soak.add_argument("--runs-dir", help="an empty or new folder to keep the run and its logs in")
    soak.set_defaults(func=cmd_soak)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args.func(args)


if __name__ == "__main__":
    main()
