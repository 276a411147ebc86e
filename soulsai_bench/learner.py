"""``python -m soulsai_bench learner``: how many updates per second this machine's DQN learner
makes with a shipped config, and the env step rate it can keep at that config's replay ratio.

The learner is the head node's bottleneck for DQN: at ``replay_ratio`` R and batch size B it
makes R / B updates per env step, so N game PCs at S steps/s need ``N * S * R / B`` updates per
second. The benchmark times the real update step (``DQNLearner.update``: forward passes,
targets, loss, backward, clipping, Adam, target copies and resets on schedule) on random batches
of the env's shape, in one process with the configured torch threads, and reports the median of
several timed windows. Nothing else runs, so in a training run on the same machine the learner
gets what the rollout actors, replay and driver leave of the CPU.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from soulsai_ray.compose import compose_config
from soulsai_ray.observations import ObsSpec


@dataclass
class LearnerSpeed:
    """One config's learner speed on this machine."""

    algo: str
    env: str
    device: str
    obs_dim: int
    """Values per observation (an image's pixels)."""
    num_actions: int
    batch_size: int
    replay_ratio: float
    ms_per_update: float
    """Median over the timed windows."""
    ms_per_update_range: tuple[float, float]
    compiled: bool = False
    """The update ran as one compiled graph (``algo.compile``, and compiling worked)."""

    @property
    def updates_per_s(self) -> float:
        return 1000.0 / self.ms_per_update

    @property
    def env_steps_per_s(self) -> float:
        """Env steps per second the learner keeps at the configured replay ratio."""
        return self.updates_per_s * self.batch_size / self.replay_ratio


def measure_learner(
    algo: str,
    env: str,
    overrides: list[str],
    seconds: float,
    windows: int = 5,
    spec: tuple[ObsSpec | int, int] | None = None,
    device: str = "cpu",
) -> LearnerSpeed:
    """Times ``DQNLearner.update`` for ``windows`` windows of about ``seconds / windows`` each.

    Args:
        spec: (observation spec or vector size, actions); read from the env when None
            (SoulsGym envs need the game, so give their sizes here).
        device: Where the learner runs: ``cpu`` or ``cuda`` (batches are copied there from
            numpy each update, as in a run).

    Raises:
        ValueError: ``device`` is ``cuda`` and torch sees no CUDA device.
    """
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: torch sees no CUDA device on this machine")

    from soulsai_ray.algos.dqn import DQNLearner
    from soulsai_ray.envs.factory import probe_env_spec
    from soulsai_ray.replay import SampledBatch
    from soulsai_ray.transitions import TransitionBatch

    cfg = compose_config(algo, env, overrides)
    if cfg.algo.name != "dqn":
        raise ValueError(f"algo={algo} is not a DQN config: only DQN has a replay learner")
    if spec is None:
        probed = probe_env_spec(cfg.env)
        spec = (probed.obs, probed.num_actions)
    obs, num_actions = ObsSpec.of(spec[0]), spec[1]
    torch.set_num_threads(cfg.cluster.torch_threads)
    learner = DQNLearner(cfg.algo, obs, num_actions, device=device, seed=cfg.seed)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rng = np.random.default_rng(cfg.seed)
    size = cfg.algo.batch_size

    def observations() -> np.ndarray:
        if obs.is_image:
            return rng.integers(0, int(obs.high) + 1, (size, *obs.shape), dtype=np.uint8)
        return rng.standard_normal((size, *obs.shape), dtype=np.float32)

    def batch() -> SampledBatch:
        transitions = TransitionBatch(
            obs=observations(),
            actions=rng.integers(0, num_actions, size),
            rewards=rng.standard_normal(size, dtype=np.float32),
            next_obs=observations(),
            discounts=np.full(size, cfg.algo.gamma**cfg.algo.n_step, np.float32),
            next_masks=np.ones((size, num_actions), bool),
            versions=np.zeros(size, np.int64),
        )
        return SampledBatch(transitions, np.arange(size), np.ones(size, np.float32))

    batches = [batch() for _ in range(32)]
    for sampled in batches:  # warm-up: allocations, Adam's state, compiling (algo.compile)
        learner.update(sampled)
    per_window = seconds / windows
    costs = []
    for _ in range(windows):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < per_window or done == 0:
            learner.update(batches[done % len(batches)])
            done += 1
            if done % 16 == 0:
                sync()
        sync()
        costs.append((time.perf_counter() - start) / done * 1000.0)
    return LearnerSpeed(
        algo=algo,
        env=env,
        device=device,
        obs_dim=obs.size,
        num_actions=num_actions,
        batch_size=size,
        replay_ratio=cfg.algo.replay_ratio,
        ms_per_update=statistics.median(costs),
        ms_per_update_range=(min(costs), max(costs)),
        compiled=learner.compiled_update is not None,
    )


def report(speed: LearnerSpeed, game_rate: float) -> str:
    """Lines for the console: the speed, and how many game PCs at ``game_rate`` it keeps."""
    low, high = speed.ms_per_update_range
    updates_per_step = speed.replay_ratio / speed.batch_size
    return "\n".join(
        [
            f"learner algo={speed.algo} env={speed.env} on {speed.device}, "
            f"{'compiled' if speed.compiled else 'eager'} update (obs {speed.obs_dim}, "
            f"{speed.num_actions} actions, batch {speed.batch_size}, "
            f"replay ratio {speed.replay_ratio:g} = {updates_per_step:g} "
            f"update{'' if updates_per_step == 1 else 's'} per env step)",
            f"  {speed.ms_per_update:.2f} ms per update ({low:.2f}-{high:.2f}), "
            f"{speed.updates_per_s:.0f} updates/s",
            f"  keeps the replay ratio up to {speed.env_steps_per_s:.0f} env steps/s: "
            f"{speed.env_steps_per_s / game_rate:.1f} game PCs at {game_rate:g} steps/s",
        ]
    )


def cmd_learner(args: Any) -> None:
    spec = (args.obs_dim, args.actions) if args.obs_dim and args.actions else None
    for device in args.device:
        for algo in args.algo:
            try:
                speed = measure_learner(
                    algo, args.env, args.override, args.seconds, spec=spec, device=device
                )
            except ValueError as err:
                raise SystemExit(f"learner: {err}") from None
            print(report(speed, args.game_rate), flush=True)
