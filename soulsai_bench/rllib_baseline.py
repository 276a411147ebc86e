#!/usr/bin/env python
"""RLlib's DQN or PPO to an env's target return; prints one JSON line. Runs in its own venv.

    make bench-rllib        # creates .venv-rllib: ray[rllib] with its own gymnasium pin
    .venv-rllib/bin/python soulsai_bench/rllib_baseline.py --algo ppo --env lunarlander --seed 0

``ray[rllib]`` pins a gymnasium older than the library's, so it lives in ``.venv-rllib``;
``python -m soulsai_bench solve --baseline rllib`` runs this file there by its path: that venv
has neither soulsai_ray nor soulsai_bench installed, so this file imports nothing of theirs.
RLlib (new API stack) ships tuned CartPole settings, used here as they are; it ships none for
LunarLander, which gets the rl-zoo hyperparameters the SB3 baseline uses (``peer_baselines.py``),
written in RLlib's terms. The target is RLlib's ``episode_return_mean`` over the last 100
training episodes, as in the other contenders.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

ENVS = {"lunarlander": ("LunarLander-v3", 200.0), "cartpole": ("CartPole-v1", 475.0)}


def dqn_config(env: str) -> Any:
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    env_id, _ = ENVS[env]
    if env == "cartpole":  # rllib/tuned_examples/dqn/cartpole_dqn.py
        return (
            DQNConfig()
            .environment(env_id)
            .training(
                lr=0.0005,
                train_batch_size_per_learner=32,
                replay_buffer_config={
                    "type": "PrioritizedEpisodeReplayBuffer",
                    "capacity": 50000,
                    "alpha": 0.6,
                    "beta": 0.4,
                },
                n_step=(2, 5),
                double_q=True,
                dueling=True,
                epsilon=[(0, 1.0), (10000, 0.02)],
            )
            .rl_module(
                model_config=DefaultModelConfig(
                    fcnet_hiddens=[256],
                    fcnet_activation="tanh",
                    head_fcnet_hiddens=[256],
                )
            )
        )
    # rl-zoo DQN LunarLander: 1 update of 128 per env step (train_freq 4, gradient_steps -1;
    # sampled in fragments of 32 steps with 32 updates each, as RLlib pays ~0.1 s per iteration),
    # target copy every 250 steps, epsilon 1 -> 0.1 over 12% of 1M steps, [256, 256] ReLU.
    return (
        DQNConfig()
        .environment(env_id)
        .env_runners(num_env_runners=0, rollout_fragment_length=32)
        .training(
            lr=6.3e-4,
            gamma=0.99,
            train_batch_size_per_learner=128,
            training_intensity=128.0,
            replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": 50000},
            num_steps_sampled_before_learning_starts=1000,
            target_network_update_freq=250,
            n_step=1,
            double_q=False,
            dueling=False,
            epsilon=[(0, 1.0), (120_000, 0.1)],
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[256, 256], fcnet_activation="relu", head_fcnet_hiddens=[]
            )
        )
    )


def ppo_config(env: str) -> Any:
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    env_id, _ = ENVS[env]
    if env == "cartpole":  # rllib/tuned_examples/ppo/cartpole_ppo.py
        return (
            PPOConfig()
            .environment(env_id)
            .rl_module(
                model_config=DefaultModelConfig(
                    fcnet_hiddens=[32], fcnet_activation="linear", vf_share_layers=True
                )
            )
            .training(gamma=0.99, lr=0.0003, num_epochs=6, vf_loss_coeff=0.01, use_kl_loss=True)
        )
    # rl-zoo PPO LunarLander: 16 envs x 1024 steps per iteration, minibatch 64, 4 epochs,
    # gamma 0.999, GAE 0.98, entropy 0.01, separate [64, 64] tanh networks, no KL penalty and no
    # value-loss clipping (as in SB3).
    return (
        PPOConfig()
        .environment(env_id)
        .env_runners(num_env_runners=1, num_envs_per_env_runner=16, rollout_fragment_length=1024)
        .training(
            lr=3e-4,
            gamma=0.999,
            lambda_=0.98,
            train_batch_size_per_learner=16 * 1024,
            minibatch_size=64,
            num_epochs=4,
            entropy_coeff=0.01,
            clip_param=0.2,
            vf_clip_param=math.inf,
            use_kl_loss=False,
            grad_clip=0.5,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False
            )
        )
    )


def solve(algo: str, env: str, seed: int, time_limit_s: float) -> dict[str, Any]:
    import ray

    _, target = ENVS[env]
    config = (dqn_config if algo == "dqn" else ppo_config)(env).debugging(seed=seed)
    config = config.reporting(metrics_num_episodes_for_smoothing=100)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        trainer = config.build_algo()
        start = time.monotonic()
        hit, steps, mean = None, 0, None
        while time.monotonic() - start < time_limit_s:
            result = trainer.train()
            runners = result.get("env_runners", {})
            steps = int(runners.get("num_env_steps_sampled_lifetime", steps))
            episodes = int(runners.get("num_episodes_lifetime", 0))
            mean = runners.get("episode_return_mean")
            if mean is not None and episodes >= 100 and mean >= target:
                hit = (time.monotonic() - start, steps)
                break
        return {
            "time_to_target_s": hit[0] if hit else None,
            "env_steps_to_target": hit[1] if hit else None,
            "env_steps": steps,
            "wall_s": time.monotonic() - start,
            "return_mean": None if mean is None else float(mean),
        }
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algo", choices=["dqn", "ppo"], default="ppo")
    parser.add_argument("--env", choices=sorted(ENVS), default="lunarlander")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=3600.0)
    args = parser.parse_args()
    print(json.dumps(solve(args.algo, args.env, args.seed, args.time_limit)), flush=True)


if __name__ == "__main__":
    main()
