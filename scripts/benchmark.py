#!/usr/bin/env python
"""Benchmarks that are measured, not asserted: run them on a quiet machine and compare ratios.

    python scripts/benchmark.py solve --algo dqn --env lunarlander --seeds 0 1
    python scripts/benchmark.py solve --algo dqn --env lunarlander --baseline sb3

``solve`` trains with the shipped config until the env's target return (mean of the last 100
training episodes) and reports wall seconds and env steps to the target. ``--baseline sb3`` runs
Stable-Baselines3's rl-zoo DQN hyperparameters on the same env in the same command (needs the
``bench`` extra: ``pip install -e .[bench]``) and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV_IDS = {"lunarlander": ("LunarLander-v3", 200.0), "cartpole": ("CartPole-v1", 475.0)}

# rl-zoo (hyperparams/dqn.yml) settings for LunarLander-v3 and CartPole-v1.
SB3_DQN = {
    "lunarlander": dict(
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=0,
        gamma=0.99,
        target_update_interval=250,
        train_freq=4,
        gradient_steps=-1,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
    "cartpole": dict(
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
}


def solve_ours(algo: str, env: str, seed: int, time_limit_s: float, overrides: list[str]) -> dict[str, Any]:
    """Runs scripts/train.py to the env's target and returns its summary."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_{algo}_{env}_{seed}_"))
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        f"algo={algo}",
        f"env={env}",
        f"seed={seed}",
        f"stop.time_s={time_limit_s}",
        "stop.env_steps=null",
        "telemetry.console=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["process_wall_s"] = wall
    summary["run_dir"] = str(run_dir)
    return summary


def solve_sb3(env: str, seed: int, time_limit_s: float) -> dict[str, Any]:
    """Trains SB3 DQN with rl-zoo settings until the 100-episode training mean hits the target."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    env_id, target = ENV_IDS[env]

    class StopAtTarget(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.monotonic()
            self.returns: list[float] = []
            self.hit: tuple[float, int] | None = None

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
            mean = float(np.mean(self.returns[-100:])) if len(self.returns) >= 100 else None
            if mean is not None and mean >= target:
                self.hit = (time.monotonic() - self.start, self.num_timesteps)
                return False
            return time.monotonic() - self.start < time_limit_s

    from stable_baselines3.common.monitor import Monitor

    callback = StopAtTarget()
    model = DQN("MlpPolicy", Monitor(gym.make(env_id)), seed=seed, verbose=0, device="cpu", **SB3_DQN[env])
    model.learn(total_timesteps=10**8, callback=callback)
    returns = callback.returns[-100:]
    return {
        "time_to_target_s": callback.hit[0] if callback.hit else None,
        "env_steps_to_target": callback.hit[1] if callback.hit else None,
        "env_steps": model.num_timesteps,
        "wall_s": time.monotonic() - callback.start,
        "return_mean": float(np.mean(returns)) if returns else None,
    }


def cmd_solve(args: argparse.Namespace) -> None:
    rows = []
    for seed in args.seeds:
        ours = solve_ours(args.algo, args.env, seed, args.time_limit, args.override)
        rows.append(("soulsai_ray", seed, ours))
        _print_row(*rows[-1])
        if args.baseline == "sb3":
            theirs = solve_sb3(args.env, seed, args.baseline_time_limit)
            rows.append(("sb3 rl-zoo", seed, theirs))
            _print_row(*rows[-1])
            if ours["time_to_target_s"] and theirs["time_to_target_s"]:
                ratio = theirs["time_to_target_s"] / ours["time_to_target_s"]
                print(f"  seed {seed}: soulsai_ray reached the target {ratio:.2f}x faster (wall time)")
    if args.json:
        Path(args.json).write_text(json.dumps([{"who": w, "seed": s, **r} for w, s, r in rows], indent=2))


def _print_row(who: str, seed: int, r: dict[str, Any]) -> None:
    t, n = r.get("time_to_target_s"), r.get("env_steps_to_target")
    reached = f"target after {t:.0f}s, {n:,} env steps" if t is not None else "target NOT reached"
    print(
        f"{who:12s} seed {seed}: {reached}; ran {r['wall_s']:.0f}s, {r['env_steps']:,} steps, "
        f"final return_mean {r['return_mean']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    solve = sub.add_parser("solve", help="wall time and env steps to the env's target return")
    solve.add_argument("--algo", default="dqn", choices=["dqn"])
    solve.add_argument("--env", default="lunarlander", choices=sorted(ENV_IDS))
    solve.add_argument("--seeds", type=int, nargs="+", default=[0])
    solve.add_argument("--time-limit", type=float, default=1800.0, help="seconds per run")
    solve.add_argument("--baseline", choices=["none", "sb3"], default="none")
    solve.add_argument("--baseline-time-limit", type=float, default=3600.0)
    solve.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for our runs")
    solve.add_argument("--json", help="write all results to this file")
    solve.set_defaults(func=cmd_solve)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args.func(args)


if __name__ == "__main__":
    main()
