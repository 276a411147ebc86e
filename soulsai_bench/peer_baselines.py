"""Peer baselines for ``python -m soulsai_bench solve``: Stable-Baselines3 with rl-zoo
hyperparameters (the ``bench`` extra: ``pip install -e .[bench]``) and RLlib (its own venv,
``make bench-rllib``: its gymnasium pin clashes with the library's). The library itself never
imports this.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from soulsai_bench import ROOT

RLLIB_PYTHON = ROOT / ".venv-rllib" / "bin" / "python"
RLLIB_BASELINE = Path(__file__).resolve().parent / "rllib_baseline.py"
"""Run by path in RLlib's venv, which has neither soulsai_ray nor soulsai_bench installed."""

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


# rl-zoo (hyperparams/ppo.yml) settings for LunarLander-v3 and CartPole-v1 (n_envs, then kwargs).
SB3_PPO = {
    "lunarlander": (
        16,
        dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01),
    ),
    "cartpole": (
        8,
        dict(
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
        ),
    ),
}


def solve_sb3(algo: str, env: str, seed: int, time_limit_s: float) -> dict[str, Any]:
    """Trains SB3 with rl-zoo settings until the 100-episode training mean hits the target."""
    import numpy as np
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(os.cpu_count() or 1)
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

    callback = StopAtTarget()
    if algo == "dqn":
        vec = make_vec_env(env_id, n_envs=1, seed=seed)
        model = DQN("MlpPolicy", vec, seed=seed, verbose=0, device="cpu", **SB3_DQN[env])
    else:
        n_envs, kwargs = SB3_PPO[env]
        vec = make_vec_env(env_id, n_envs=n_envs, seed=seed)
        model = PPO("MlpPolicy", vec, seed=seed, verbose=0, device="cpu", **kwargs)
    model.learn(total_timesteps=10**8, callback=callback)
    returns = callback.returns[-100:]
    return {
        "time_to_target_s": callback.hit[0] if callback.hit else None,
        "env_steps_to_target": callback.hit[1] if callback.hit else None,
        "env_steps": model.num_timesteps,
        "wall_s": time.monotonic() - callback.start,
        "return_mean": float(np.mean(returns)) if returns else None,
    }


def solve_rllib(algo: str, env: str, seed: int, time_limit_s: float) -> dict[str, Any]:
    """Runs ``rllib_baseline.py`` (as a file) in ``.venv-rllib`` and returns its JSON result."""
    if not RLLIB_PYTHON.exists():
        raise SystemExit(f"{RLLIB_PYTHON} is missing: run `make bench-rllib` first")
    cmd = [
        str(RLLIB_PYTHON),
        str(RLLIB_BASELINE),
        f"--algo={algo}",
        f"--env={env}",
        f"--seed={seed}",
        f"--time-limit={time_limit_s}",
    ]
    # RLlib starts its own local Ray; it must not join or write into the caller's cluster.
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env_vars)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"rllib baseline failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])
