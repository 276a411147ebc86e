"""Replay and the PPO learner under fuzzed input through Ray: nothing malformed is stored or
trained on. The replay's own checks run without Ray in ``tests/unit/test_replay_store.py``."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import ray
from malformed import (
    CURRENT_VERSION,
    LIMITS,
    ROLLOUT_FAULTS,
    good_rollout,
    good_transitions,
    random_faults,
    rollout_cases,
)

from soulsai_ray.actors.ppo import PPOLearnerActor
from soulsai_ray.actors.replay import ReplayActor
from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig, TrainConfig

pytestmark = pytest.mark.usefixtures("ray_local")

SEEDS = (0, 1, 2)


def test_the_replay_actor_is_the_store_behind_ray():
    """A batch the actor rejects is counted by reason and node, a good one is stored and
    served, and the learner's priorities reach it."""
    cfg = DQNConfig(buffer_size=100, learning_starts=1, prioritized=True, per_alpha=1.0)
    replay = ReplayActor.remote(cfg, LIMITS, 0)
    ray.get(replay.observe_version.remote(CURRENT_VERSION))
    too_long = good_transitions(LIMITS.max_rows + 1)
    assert ray.get(replay.add.remote(too_long, 3, "node-a")) is False
    assert ray.get(replay.add.remote(good_transitions(), 0, "node-b")) is True
    size = len(good_transitions())
    stats = ray.get(replay.stats.remote())
    assert stats["rejected_by_reason"] == {"rows": 1} and stats["rejected_by_node"] == {"node-a": 1}
    assert stats["invalid"] == len(too_long)
    assert stats["size"] == stats["accepted"] == size
    assert stats["accepted_by_node"] == {"node-b": size}
    td = np.ones(size)
    td[3] = 10.0  # alpha 1: slot 3 holds 10 / 17 of the priority mass, 4 of 8 strata at least
    ray.get(replay.update_priorities.remote(np.arange(size), td))
    [batch] = ray.get(replay.sample.remote(1, size, CURRENT_VERSION, 1.0))
    assert (batch.indices == 3).sum() >= 4
    np.testing.assert_allclose(batch.weights[batch.indices == 3], 0.1, rtol=1e-5)
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


def _good_rollout(seed: int):
    return good_rollout(seed=seed)
