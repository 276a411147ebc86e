"""ReplayStore without Ray: no malformed batch is stored, each is counted by reason and node,
and prioritized sampling follows the learner's priorities.

``tests/integration/test_inbound_actors.py`` checks that the same store works as a Ray actor.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from malformed import (
    CURRENT_VERSION,
    LIMITS,
    TRANSITION_FAULTS,
    good_transitions,
    random_faults,
    transition_cases,
)

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.replay_store import ReplayStore

SEEDS = (0, 1, 2)


def _store(cfg: DQNConfig) -> ReplayStore:
    """A store that has seen the learner's version ``CURRENT_VERSION`` (sound batches' own)."""
    store = ReplayStore(cfg, LIMITS, 0)
    store.observe_version(CURRENT_VERSION)
    return store


def test_replay_stores_no_malformed_batch_and_counts_each_by_reason_and_node():
    store = _store(DQNConfig(buffer_size=1000, learning_starts=1))
    cases = transition_cases()
    verdicts = [store.add(batch, i, f"node-{i % 3}") for i, (_, batch, _) in enumerate(cases)]
    assert verdicts == [False] * len(cases)
    stats = store.stats()
    assert stats["size"] == stats["accepted"] == 0
    assert stats["rejected_by_reason"] == dict(Counter(reason for _, _, reason in cases))
    assert stats["rejected_by_node"] == dict(Counter(f"node-{i % 3}" for i in range(len(cases))))
    fuzzed = 0
    for seed in SEEDS:
        batches = [b for _, _, b in random_faults(TRANSITION_FAULTS, _good_transitions, seed, 50)]
        verdicts = [store.add(b, 7, "node-f") for b in batches]
        assert not any(verdicts), seed
        fuzzed += len(batches)
    stats = store.stats()
    assert stats["size"] == 0
    assert sum(stats["rejected_by_reason"].values()) == len(cases) + fuzzed
    # training goes on: good data is still taken and served
    assert store.add(good_transitions(), 0, "node-0") is True
    assert store.stats()["size"] == len(good_transitions())
    assert len(store.sample(2, 4, CURRENT_VERSION)) == 2


def test_a_prioritized_store_samples_by_the_learners_priorities():
    cfg = DQNConfig(buffer_size=100, learning_starts=1, prioritized=True, per_alpha=1.0)
    store = _store(cfg)
    assert store.add(good_transitions(), 0, "node-0") is True
    size = len(good_transitions())
    [first] = store.sample(1, size, CURRENT_VERSION, 1.0)
    assert sorted(first.indices) == list(range(size))  # equal priorities: one draw per slice
    td = np.ones(size)
    td[3] = 10.0  # alpha 1: slot 3 holds 10 / 17 of the priority mass
    store.update_priorities(np.arange(size), td)
    for batch in store.sample(4, size, CURRENT_VERSION, 1.0):
        # stratified: 8 * 10 / 17 = 4.7 of the 8 draws fall on slot 3
        assert (batch.indices == 3).sum() in (4, 5)
        # full importance correction (beta 1): its weight is P(other) / P(3), the others' 1
        np.testing.assert_allclose(batch.weights[batch.indices == 3], 0.1, rtol=1e-5)
        np.testing.assert_allclose(batch.weights[batch.indices != 3], 1.0, rtol=1e-5)


def _good_transitions(seed: int):
    return good_transitions(seed=seed)
