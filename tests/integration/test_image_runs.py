"""Image observations through Ray: MinAtar's uint8 frames sampled by rollout actors, pushed,
checked on arrival, stored and trained on by the DQN and PPO learners, with a rollout actor
killed mid-run (its successor acts on images from the republished weights). DQN stacks 2 frames
and stores each once (``algo.replay_layout=frames``): its actors push steps, not transitions,
and the killed actor's successor is a new stream."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest
import ray
from run_configs import image_dqn, run_config
from scenarios import run_beside

from soulsai_ray.algo_config import PPOConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.config import EnvConfig
from soulsai_ray.evaluation import load_trained_policy
from soulsai_ray.experiment import build_experiment

pytest.importorskip("soulsai_ray.envs.minatar")
pytestmark = pytest.mark.usefixtures("ray_local")

BREAKOUT = EnvConfig(id="soulsai_ray.envs.minatar:MinAtar/Breakout-v1", max_episode_steps=300)
ENVS = {"dqn": dataclasses.replace(BREAKOUT, frame_stack=2), "ppo": BREAKOUT}
ALGOS = {
    "dqn": dataclasses.replace(
        image_dqn(batch_size=32, buffer_size=5000, learning_starts=300, eps_decay_steps=1000),
        target_update_every=100,
        ratio_slack_steps=500,
        replay_layout="frames",
    ),
    "ppo": PPOConfig(
        torso="minatar_cnn",
        hidden_sizes=[32],
        activation="relu",
        normalize_obs=False,
        n_steps=64,
        epochs=1,
        minibatch_size=64,
    ),
}


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_image_batches_train_through_the_actors_and_survive_a_killed_rollout_actor(name, tmp_path):
    cfg = run_config(ALGOS[name], ENVS[name], steps=10**6, time_s=180)
    killed: dict[str, float] = {}
    with build_experiment(cfg, tmp_path) as experiment:
        loop = experiment.loop

        def kill_one_actor_until_it_is_back() -> None:
            while loop.counters.updates == 0:
                time.sleep(0.1)
            killed["pid"] = ray.get(loop.fleet.actors[0].pid.remote(), timeout=30)
            os.kill(killed["pid"], signal.SIGKILL)
            while loop.counters.actor_restarts == 0 or loop.fleet.num_alive < 2:
                time.sleep(0.1)
            steps, updates = loop.counters.env_steps, loop.counters.updates
            while loop.counters.env_steps < steps + 300 or loop.counters.updates <= updates:
                time.sleep(0.1)

        summary = run_beside(experiment, kill_one_actor_until_it_is_back, "recovered")
    counters = summary["counters"]
    assert summary["stop_reason"] == "recovered", summary  # not the 180 s limit
    assert summary["updates"] > 0 and summary["episodes"] > 0 and "pid" in killed
    assert counters["batches_rejected"] == {}, counters  # every uint8 batch passed its checks
    assert counters["actor_restarts"] >= 1, counters
    latest = CheckpointManager(tmp_path / "checkpoints").latest()
    trained, config = load_trained_policy(latest.path)  # the convolution's weights fit
    assert trained.algo.torso == config["algo"]["torso"] == "minatar_cnn"
    assert config["env"]["frame_stack"] == cfg.env.frame_stack
    if name == "dqn":  # the first convolution reads 2 stacked frames of MinAtar's 4 planes
        first = next(w for key, w in trained.weights.items() if w.ndim == 4)
        assert first.shape[1] == 8, {k: w.shape for k, w in trained.weights.items()}
        stored = sum(summary["samples_by_node"].values())  # steps replay accepted
        assert stored > ALGOS[name].learning_starts, summary["samples_by_node"]
