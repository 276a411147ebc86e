"""Configs of the short runs tests build, in one place (imported by this name, which no other
test folder uses): what every test run shares (no console, no Prometheus, rollout actors that
reserve no CPU, no periodic checkpoints unless asked) and the envs tests train on."""

from __future__ import annotations

from typing import Any

from soulsai_ray.algo_config import AlgoConfig, DQNConfig, PPOConfig
from soulsai_ray.config import (
    CheckpointConfig,
    ClusterConfig,
    EnvConfig,
    EvalConfig,
    StopConfig,
    TelemetryConfig,
    TrainConfig,
)

FAKE_SOULS_ID = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"
SOULS_ANGLES = ["player_pose[3]", "boss_pose[3]"]


def fake_souls(**kwargs: Any) -> EnvConfig:
    """The FakeSouls fight (Iudex's observation space, 20 masked actions) with env ``kwargs``
    such as ``step_error_prob``, ``nan_reward_prob`` or ``phase``."""
    return EnvConfig(id=FAKE_SOULS_ID, kwargs=kwargs, angle_keys=SOULS_ANGLES)


SOULS_DQN = DQNConfig(
    hidden_sizes=[64], learning_starts=500, batch_size=32, replay_ratio=8, n_step=3
)


def image_dqn(torso: str = "minatar_cnn", **changes: Any) -> DQNConfig:
    """A small DQN on images: ``torso`` under one 32-unit layer, batches of 16 at 16 samples
    per stored transition, a 2,000 replay and learning from 100 transitions on; ``changes``
    replace any of these."""
    small = {"hidden_sizes": [32], "batch_size": 16, "replay_ratio": 16, "buffer_size": 2000}
    small |= {"learning_starts": 100, "target_update_every": 50, "eps_decay_steps": 300}
    return DQNConfig(torso=torso, **(small | changes))


SOULS_PPO = PPOConfig(hidden_sizes=[64], n_steps=128, epochs=2, minibatch_size=128)
SOULS_EVAL_EVERY = {"dqn": 200, "ppo": 20}
"""Updates between evaluations in a FakeSouls test run: a few per run (PPO counts gradient
steps)."""
FIGHT_TAGS = (
    "episode/win",
    "episode/win_rate",
    "episode/boss_hp_final",
    "episode/boss_hp_final_mean",
    "episode/player_hp_final_mean",
    "episode/length_mean",
    "eval/return_mean",
    "eval/win_rate",
    "eval/boss_hp_final_mean",
)
"""What a FakeSouls run with evaluations writes to TensorBoard about its fights."""


def scalar_tags(run_dir: Any) -> set[str]:
    """The scalar tags of a run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return set(events.Tags()["scalars"])


def run_config(
    algo: AlgoConfig,
    env: EnvConfig | str = "CartPole-v1",
    *,
    steps: int | None = None,
    time_s: float | None = None,
    return_mean: float | None = None,
    serial: bool = False,
    actors: int | str = 2,
    rollout_num_cpus: float = 0,
    checkpoint_every: int = 10**9,
    keep_last: int = 3,
    save_replay: bool = False,
    eval_every: int | None = None,
    eval_episodes: int = 2,
    log_every_s: float = 0.5,
    window: int = 100,
    prometheus: bool = False,
    seed: int = 0,
    resume: str | None = None,
    **cluster: Any,
) -> TrainConfig:
    """A test run's config: ``algo`` on ``env`` (an id or an `EnvConfig`) until ``steps``,
    ``time_s`` or ``return_mean``; ``serial`` runs it in one process; ``resume`` is
    `TrainConfig.resume`; ``cluster`` holds more `ClusterConfig` fields (``address``,
    ``actor_max_restarts``, ...)."""
    return TrainConfig(
        algo=algo,
        env=EnvConfig(id=env) if isinstance(env, str) else env,
        cluster=ClusterConfig(
            serial=serial,
            num_rollout_actors=actors,
            rollout_num_cpus=rollout_num_cpus,
            **cluster,
        ),
        stop=StopConfig(env_steps=steps, time_s=time_s, return_mean=return_mean),
        checkpoint=CheckpointConfig(
            every_updates=checkpoint_every, keep_last=keep_last, save_replay=save_replay
        ),
        eval=EvalConfig(every_updates=eval_every, episodes=eval_episodes),
        telemetry=TelemetryConfig(
            console=False, prometheus=prometheus, log_every_s=log_every_s, window=window
        ),
        seed=seed,
        resume=resume,
    )
