"""``python -m soulsai_bench solve``: env steps and wall time to an env's target return, over
seeds, with a peer run side by side in the same command.

Each seed trains with the shipped config (``scripts/train.py algo=... env=...``) until the mean
return of the last 100 training episodes reaches the env's target, or the time limit. The table
gives, per seed and as median (min-max) over the seeds that solved: env steps and wall seconds to
the target. With ``--step-latency S --actors N`` every env step costs S seconds of wall time on
each of N rollout actors, as on game PCs: wall time is then game time, and for DQN the table also
shows the replay ratio the learner kept (updates x batch / env steps) against the configured one.
Peers step their envs at full speed; at a game rate their game time is projected from their env
steps (env steps x S / N).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from soulsai_bench import ROOT, TRAIN_SCRIPT
from soulsai_bench.peer_baselines import solve_rllib, solve_sb3

PEERS = {"sb3": ("sb3 rl-zoo", solve_sb3), "rllib": ("rllib", solve_rllib)}


@dataclass
class SolveRun:
    """One seed of one contender."""

    who: str
    seed: int
    solved: bool
    env_steps_to_target: int | None
    time_to_target_s: float | None
    """Wall seconds from the start of training (game seconds with a step latency)."""
    env_steps: int
    wall_s: float
    return_mean: float | None
    replay_ratio: float | None = None
    """DQN: sampled transitions per env step the run kept (updates x batch / env steps)."""
    replay_ratio_configured: float | None = None
    stale_fraction: float | None = None
    """DQN: share of the env steps dropped at replay for coming from too old a policy."""
    projected: bool = False
    """time_to_target_s is env steps x step latency / actors, not measured."""


def solve_ours(algo: str, env: str, seed: int, args: Any) -> SolveRun:
    """Runs scripts/train.py to the env's target and reads its summary; the run's folder is
    temporary unless ``--runs-dir`` keeps it."""
    if args.runs_dir:  # kept: TensorBoard, checkpoints and the summary of every seed
        return _solve_in(_kept_run_dir(args.runs_dir, algo, env, seed), algo, env, seed, args)
    with tempfile.TemporaryDirectory(prefix=f"bench_{algo}_{env}_{seed}_") as tmp:
        return _solve_in(Path(tmp) / "run", algo, env, seed, args)


def _kept_run_dir(runs_dir: str, algo: str, env: str, seed: int) -> Path:
    return Path(runs_dir) / f"{algo}_{env}_{seed}"


def _solve_in(run_dir: Path, algo: str, env: str, seed: int, args: Any) -> SolveRun:
    cmd = [
        sys.executable,
        str(TRAIN_SCRIPT),
        f"algo={algo}",
        f"env={env}",
        f"seed={seed}",
        f"stop.time_s={args.time_limit}",
        "stop.env_steps=null",
        "telemetry.console=false",
        "cluster.include_dashboard=false",
        f"hydra.run.dir={run_dir}",
    ]
    if args.step_latency:
        cmd.append(f"env.step_latency_s={args.step_latency}")
    if args.actors:
        cmd.append(f"cluster.num_rollout_actors={args.actors}")
    cmd += args.override
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    ratio = configured = stale = None
    if summary["algo"] == "dqn":
        stale = summary["counters"]["samples_stale"] / max(summary["env_steps"], 1)
        from omegaconf import OmegaConf

        algo_cfg = OmegaConf.load(run_dir / "config.yaml").algo
        configured = float(algo_cfg.replay_ratio)
        steps = summary["env_steps"] - int(algo_cfg.learning_starts)
        ratio = summary["updates"] * int(algo_cfg.batch_size) / steps if steps > 0 else None
    return SolveRun(
        who="soulsai_ray",
        seed=seed,
        solved=summary["time_to_target_s"] is not None,
        env_steps_to_target=summary["env_steps_to_target"],
        time_to_target_s=summary["time_to_target_s"],
        env_steps=summary["env_steps"],
        wall_s=time.monotonic() - start,
        return_mean=summary["return_mean"],
        replay_ratio=ratio,
        replay_ratio_configured=configured,
        stale_fraction=stale,
    )


def solve_peer(peer: str, algo: str, env: str, seed: int, args: Any) -> SolveRun:
    """Runs a peer library at full speed; at a game rate its game time is projected."""
    who, solve = PEERS[peer]
    peer_algo = "dqn" if algo.startswith("dqn") else "ppo"
    r = solve(peer_algo, env, seed, args.baseline_time_limit)
    run = SolveRun(
        who=who,
        seed=seed,
        solved=r["time_to_target_s"] is not None,
        env_steps_to_target=r["env_steps_to_target"],
        time_to_target_s=r["time_to_target_s"],
        env_steps=r["env_steps"],
        wall_s=r["wall_s"],
        return_mean=r["return_mean"],
    )
    if args.step_latency and run.env_steps_to_target is not None:
        run.time_to_target_s = run.env_steps_to_target * args.step_latency / (args.actors or 1)
        run.projected = True
    return run


def cmd_solve(args: Any) -> None:
    runs: list[SolveRun] = []
    rate = (
        f"; every step costs {args.step_latency:g} s on each of {args.actors or 'the default'} "
        "rollout actors (wall time = game time)"
        if args.step_latency
        else ""
    )
    print(f"solve: algo={args.algo} env={args.env}, seeds {args.seeds}{rate}", flush=True)
    if args.runs_dir:  # a run folder is never shared with an earlier run
        taken = [
            str(run_dir)
            for seed in args.seeds
            if (run_dir := _kept_run_dir(args.runs_dir, args.algo, args.env, seed)).exists()
        ]
        if taken:
            raise SystemExit(f"solve: --runs-dir: {', '.join(taken)} exist; name a new folder")
    for seed in args.seeds:
        runs.append(solve_ours(args.algo, args.env, seed, args))
        print_run(runs[-1])
        if args.baseline != "none":
            runs.append(solve_peer(args.baseline, args.algo, args.env, seed, args))
            print_run(runs[-1])
    print()
    print(summary_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=2))


def print_run(r: SolveRun) -> None:
    if r.solved:
        kind = "projected game time" if r.projected else "wall"
        reached = (
            f"target after {r.env_steps_to_target:,} env steps, {r.time_to_target_s:.0f} s {kind}"
        )
    else:
        reached = "target NOT reached"
    ratio = (
        f"; replay ratio kept {r.replay_ratio:.0f} of {r.replay_ratio_configured:.0f}"
        if r.replay_ratio is not None
        else ""
    )
    if r.stale_fraction is not None:
        ratio += f"; {r.stale_fraction:.0%} of the env steps dropped as stale"
    print(
        f"{r.who:12s} seed {r.seed}: {reached}; ran {r.wall_s:.0f} s, {r.env_steps:,} steps, "
        f"final return_mean {r.return_mean}{ratio}",
        flush=True,
    )


def median_range(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, or ``-`` for none."""
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def summary_table(runs: list[SolveRun]) -> str:
    """A Markdown table: per contender, seeds solved and median (range) over the solved seeds,
    then the peers' medians as multiples of ours."""
    lines = [
        "| run | solved | env steps to target, median (range) | seconds to target, median (range) |",
        "|---|---|---|---|",
    ]
    medians: dict[str, tuple[float, float]] = {}
    for who in dict.fromkeys(r.who for r in runs):
        mine = [r for r in runs if r.who == who]
        solved = [r for r in mine if r.solved]
        steps = [float(r.env_steps_to_target) for r in solved]
        seconds = [float(r.time_to_target_s) for r in solved]
        projected = " (projected)" if any(r.projected for r in solved) else ""
        lines.append(
            f"| {who} | {len(solved)}/{len(mine)} | {median_range(steps, '{:,.0f}')} | "
            f"{median_range(seconds, '{:.0f}')}{projected} |"
        )
        if solved:
            medians[who] = (statistics.median(steps), statistics.median(seconds))
    ours = medians.get("soulsai_ray")
    for who, (steps, seconds) in medians.items():
        if who != "soulsai_ray" and ours:
            lines.append(
                f"\n{who} needs {steps / ours[0]:.1f}x the env steps and {seconds / ours[1]:.1f}x "
                "the time of soulsai_ray (medians)"
            )
    return "\n".join(lines)
