"""Replay and the PPO learner under fuzzed input: nothing malformed is stored or trained on."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import ray
from malformed import (
    CURRENT_VERSION,
    LIMITS,
    ROLLOUT_FAULTS,
    TRANSITION_FAULTS,
    good_rollout,
    good_transitions,
    random_faults,
    rollout_cases,
    transition_cases,
)

from soulsai_ray.actors.ppo import PPOLearnerActor
from soulsai_ray.actors.replay import ReplayActor
from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig, TrainConfig

pytestmark = pytest.mark.usefixtures("ray_local")

SEEDS = (0, 1, 2)


def test_replay_stores_no_malformed_batch_and_counts_each_by_reason_and_node():
    replay = ReplayActor.remote(DQNConfig(buffer_size=1000, learning_starts=1), LIMITS, 0)
    ray.get(replay.observe_version.remote(CURRENT_VERSION))
    cases = transition_cases()
    verdicts = ray.get(
        [replay.add.remote(batch, i, f"node-{i % 3}") for i, (_, batch, _) in enumerate(cases)]
    )
    assert verdicts == [False] * len(cases)
    stats = ray.get(replay.stats.remote())
    assert stats["size"] == stats["accepted"] == 0
    assert stats["rejected_by_reason"] == dict(Counter(reason for _, _, reason in cases))
    assert stats["rejected_by_node"] == dict(Counter(f"node-{i % 3}" for i in range(len(cases))))
    fuzzed = 0
    for seed in SEEDS:
        batches = [b for _, _, b in random_faults(TRANSITION_FAULTS, _good_transitions, seed, 50)]
        assert not any(ray.get([replay.add.remote(b, 7, "node-f") for b in batches])), seed
        fuzzed += len(batches)
    stats = ray.get(replay.stats.remote())
    assert stats["size"] == 0
    assert sum(stats["rejected_by_reason"].values()) == len(cases) + fuzzed
    # training goes on: good data is still taken and served
    assert ray.get(replay.add.remote(good_transitions(), 0, "node-0")) is True
    assert ray.get(replay.stats.remote())["size"] == len(good_transitions())
    assert len(ray.get(replay.sample.remote(2, 4, CURRENT_VERSION))) == 2
    ray.kill(replay)


def test_a_prioritized_replay_actor_samples_by_the_learners_priorities():
    cfg = DQNConfig(buffer_size=100, learning_starts=1, prioritized=True, per_alpha=1.0)
    replay = ReplayActor.remote(cfg, LIMITS, 0)
    ray.get(replay.observe_version.remote(CURRENT_VERSION))
    assert ray.get(replay.add.remote(good_transitions(), 0, "node-0")) is True
    size = len(good_transitions())
    [first] = ray.get(replay.sample.remote(1, size, CURRENT_VERSION, 1.0))
    assert sorted(first.indices) == list(range(size))  # equal priorities: one draw per slice
    td = np.ones(size)
    td[3] = 10.0  # alpha 1: slot 3 holds 10 / 17 of the priority mass
    ray.get(replay.update_priorities.remote(np.arange(size), td))
    for batch in ray.get(replay.sample.remote(4, size, CURRENT_VERSION, 1.0)):
        # stratified: 8 * 10 / 17 = 4.7 of the 8 draws fall on slot 3
        assert (batch.indices == 3).sum() in (4, 5)
        # full importance correction (beta 1): its weight is P(other) / P(3), the others' 1
        np.testing.assert_allclose(batch.weights[batch.indices == 3], 0.1, rtol=1e-5)
        np.testing.assert_allclose(batch.weights[batch.indices != 3], 1.0, rtol=1e-5)
    ray.kill(replay)


def test_ppo_learner_trains_only_on_sound_batches_and_counts_the_rest(tmp_path):
    cfg = TrainConfig(
        algo=PPOConfig(hidden_sizes=[8], n_steps=4, minibatch_size=8, epochs=1),
        env=EnvConfig(num_envs_per_actor=2),
    )
    learner = PPOLearnerActor.remote(cfg, LIMITS, str(tmp_path / "ckpt"))
    version, _ = ray.get(learner.republish.remote(CURRENT_VERSION - 1))
    assert version == CURRENT_VERSION
    for seed in SEEDS:  # the learner is at CURRENT_VERSION, as sound batches are
        fuzzed = [b for _, _, b in random_faults(ROLLOUT_FAULTS, _good_rollout, seed, 30)]
        senders = [(9, "node-f")] * len(fuzzed)
        bad = ray.get(learner.update.remote(0.0, senders, *fuzzed))
        assert bad.samples == 0 and sum(bad.rejected["by_reason"].values()) == len(fuzzed), seed
        assert bad.version == CURRENT_VERSION  # no update, no new version
    cases = rollout_cases()
    batches = [batch for _, batch, _ in cases] + [good_rollout()]
    senders = [(i, f"node-{i % 2}") for i in range(len(batches))]
    report = ray.get(learner.update.remote(0.0, senders, *batches))
    assert report.rejected["by_reason"] == dict(Counter(reason for _, _, reason in cases))
    assert sum(report.rejected["by_node"].values()) == len(cases)
    assert report.samples == len(good_rollout())  # the sound batch alone was trained on
    assert report.version == CURRENT_VERSION + 1
    assert all(v == v for v in report.metrics.values())  # finite metrics: nothing bad got in
    ray.kill(learner)


def _good_transitions(seed: int):
    return good_transitions(seed=seed)


def _good_rollout(seed: int):
    return good_rollout(seed=seed)
