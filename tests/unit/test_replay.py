"""TransitionBatch helpers, fresh_mask, SumTree, uniform and prioritized replay."""

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.priorities import SumTree
from soulsai_ray.replay import PrioritizedReplayBuffer, ReplayBuffer
from soulsai_ray.replay_factory import replay_buffer
from soulsai_ray.transitions import TransitionBatch, fresh_mask

OBS_DIM = 2
NUM_ACTIONS = 3


def make_batch(ids: Sequence[int] | np.ndarray) -> TransitionBatch:
    """A batch whose row for transition id k holds k in every field (action k % 3)."""
    ids = np.asarray(ids, np.int64)
    return TransitionBatch(
        obs=np.repeat(ids[:, None], OBS_DIM, axis=1).astype(np.float32),
        actions=ids % NUM_ACTIONS,
        rewards=ids.astype(np.float32),
        next_obs=np.repeat(ids[:, None] + 0.5, OBS_DIM, axis=1).astype(np.float32),
        discounts=np.full(len(ids), 0.9, np.float32),
        next_masks=np.ones((len(ids), NUM_ACTIONS), bool),
        versions=ids.copy(),
    )


def stored_ids(buffer: ReplayBuffer) -> np.ndarray:
    """Transition ids in storage-slot order, read from the public state_dict."""
    return buffer.state_dict()["versions"]


def draw_frequencies(buffer: ReplayBuffer, draws: int, batch_size: int = 100) -> np.ndarray:
    counts = np.zeros(len(buffer))
    for _ in range(draws // batch_size):
        counts += np.bincount(buffer.sample(batch_size).indices, minlength=len(buffer))
    return counts / counts.sum()


def chi_square(freqs: np.ndarray, probs: np.ndarray, draws: int) -> float:
    return float(draws * ((freqs - probs) ** 2 / probs).sum())


# --- TransitionBatch and fresh_mask -----------------------------------------------------------


def test_select_and_concat() -> None:
    batch = TransitionBatch.concat([make_batch([0, 1]), make_batch([2, 3, 4])])
    assert len(batch) == 5
    np.testing.assert_array_equal(batch.versions, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(batch.select(np.array([4, 0])).rewards, [4.0, 0.0])
    mask = np.array([False, True, False, True, False])
    np.testing.assert_array_equal(batch.select(mask).obs, [[1, 1], [3, 3]])
    with pytest.raises(ValueError):
        TransitionBatch.concat([])


def test_fresh_mask() -> None:
    versions = np.array([7, 5, 9, 6, 8])
    fresh = fresh_mask(versions, current_version=9, max_model_lag=2)
    np.testing.assert_array_equal(versions[fresh], [7, 9, 8])
    assert versions[fresh_mask(versions, current_version=9, max_model_lag=0)].tolist() == [9]
    assert fresh_mask(versions, current_version=3, max_model_lag=0).all()
    with pytest.raises(ValueError):
        fresh_mask(versions, current_version=9, max_model_lag=-1)


# --- SumTree ------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_width", [1, 2, 1024])
def test_sum_tree_retrieve_and_update(top_width: int) -> None:
    tree = SumTree(5, top_width=top_width)  # 8 leaves, 3 unused
    tree.update(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert tree.total == 15.0
    # Leaf i covers [cumsum before i, cumsum through i): [0,1) [1,3) [3,6) [6,10) [10,15).
    prefix = np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.5, 6.0, 9.99, 10.0, 14.99])
    np.testing.assert_array_equal(tree.retrieve(prefix), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    tree.update(np.array([1, 3, 1]), np.array([9.0, 0.0, 0.5]))  # repeated index: last wins
    assert tree.total == 1.0 + 0.5 + 3.0 + 0.0 + 5.0
    np.testing.assert_array_equal(tree.get(np.arange(5)), [1.0, 0.5, 3.0, 0.0, 5.0])
    # New intervals: [0,1) [1,1.5) [1.5,4.5) empty [4.5,9.5); leaf 3 can no longer be hit.
    prefix = np.array([0.5, 1.2, 4.49, 4.5, 9.4])
    np.testing.assert_array_equal(tree.retrieve(prefix), [0, 1, 2, 4, 4])


# --- ReplayBuffer -------------------------------------------------------------------------------


def test_ring_buffer_wraps_around() -> None:
    buffer = ReplayBuffer(capacity=5, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS)
    buffer.add(make_batch([0, 1, 2]))
    assert (len(buffer), buffer.total_added) == (3, 3)
    np.testing.assert_array_equal(stored_ids(buffer), [0, 1, 2])
    buffer.add(make_batch([3, 4, 5, 6]))
    assert (len(buffer), buffer.total_added, buffer.capacity) == (5, 7, 5)
    np.testing.assert_array_equal(stored_ids(buffer), [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.state_dict()["obs"][:, 0], [5, 6, 2, 3, 4])


def test_batch_larger_than_capacity_keeps_newest() -> None:
    buffer = ReplayBuffer(capacity=5, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS)
    buffer.add(make_batch(range(7)))
    np.testing.assert_array_equal(stored_ids(buffer), [5, 6, 2, 3, 4])
    buffer.add(make_batch(range(7, 15)))  # 8 more: ids 10..14 survive, id k in slot k % 5
    assert (len(buffer), buffer.total_added) == (5, 15)
    np.testing.assert_array_equal(stored_ids(buffer), [10, 11, 12, 13, 14])


def test_add_rejects_invalid_batch_and_sample_rejects_empty() -> None:
    buffer = ReplayBuffer(capacity=5, obs_spec=OBS_DIM + 1, num_actions=NUM_ACTIONS)
    with pytest.raises(ValueError, match="obs has shape"):
        buffer.add(make_batch([0]))
    assert buffer.total_added == 0
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)


def test_uniform_sampling_frequencies_and_contents() -> None:
    buffer = ReplayBuffer(capacity=10, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS, seed=3)
    buffer.add(make_batch([10, 11, 12, 13]))
    sample = buffer.sample(64)
    assert sample.indices.dtype == np.int64 and sample.weights.dtype == np.float32
    np.testing.assert_array_equal(sample.weights, np.ones(64))
    np.testing.assert_array_equal(sample.batch.versions, sample.indices + 10)
    freqs = draw_frequencies(buffer, draws=40_000)
    assert len(freqs) == 4  # never an unfilled slot
    # Std of each frequency is sqrt(0.25 * 0.75 / 40000) ~ 0.0022.
    np.testing.assert_allclose(freqs, 0.25, atol=0.01)


def test_uniform_update_priorities_changes_nothing() -> None:
    a = ReplayBuffer(capacity=8, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS, seed=1)
    b = ReplayBuffer(capacity=8, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS, seed=1)
    for buffer in (a, b):
        buffer.add(make_batch(range(8)))
    b.update_priorities(np.array([0, 1]), np.array([100.0, 0.0]))
    np.testing.assert_array_equal(a.sample(256).indices, b.sample(256).indices)


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_reproduces_samples(prioritized: bool) -> None:
    def make() -> ReplayBuffer:
        cls = PrioritizedReplayBuffer if prioritized else ReplayBuffer
        return cls(capacity=6, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS, seed=5)

    original = make()
    original.add(make_batch(range(8)))
    original.update_priorities(np.array([0, 2, 3]), np.array([5.0, 0.1, 2.0]))
    original.sample(3)  # advance the RNG
    state = original.state_dict()
    expected = [original.sample(4) for _ in range(5)]
    original.add(make_batch([100]))  # must not leak into the saved state

    restored = make()
    restored.load_state_dict(state)
    assert (len(restored), restored.total_added) == (6, 8)
    for want in expected:
        got = restored.sample(4)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.weights, want.weights)
        np.testing.assert_array_equal(got.batch.obs, want.batch.obs)
    restored.add(make_batch([8]))
    np.testing.assert_array_equal(stored_ids(restored), [6, 7, 8, 3, 4, 5])


def test_load_state_dict_rejects_other_shape() -> None:
    source = ReplayBuffer(capacity=6, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS)
    target = ReplayBuffer(capacity=7, obs_spec=OBS_DIM, num_actions=NUM_ACTIONS)
    with pytest.raises(ValueError, match="capacity"):
        target.load_state_dict(source.state_dict())


# --- PrioritizedReplayBuffer --------------------------------------------------------------------


def prioritized(capacity: int = 4, **kwargs: float) -> PrioritizedReplayBuffer:
    return PrioritizedReplayBuffer(capacity, OBS_DIM, NUM_ACTIONS, seed=7, **kwargs)


def test_prioritized_frequencies_follow_priority_to_the_alpha() -> None:
    buffer = prioritized(alpha=0.5)
    buffer.add(make_batch(range(4)))
    # |td| 1, 4, 9, 16 -> priorities ~1, 2, 3, 4 -> P = 0.1, 0.2, 0.3, 0.4.
    buffer.update_priorities(np.arange(4), np.array([1.0, -4.0, 9.0, 16.0]))
    draws = 40_000
    freqs = draw_frequencies(buffer, draws)
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(freqs, probs, atol=0.01)
    # Stratified draws vary less than multinomial ones, so the chi-square bound is loose.
    assert chi_square(freqs, probs, draws) < 16.3  # 99.9% quantile, 3 degrees of freedom


def test_stratified_sampling_covers_each_slice_once() -> None:
    buffer = prioritized(alpha=1.0)
    buffer.add(make_batch(range(4)))
    np.testing.assert_array_equal(buffer.sample(4).indices, [0, 1, 2, 3])
    buffer.update_priorities(np.arange(3), np.array([1.0, 1.0, 2.0]) - 1e-6)
    buffer.update_priorities(np.array([3]), np.array([0.0]))
    # Mass [1, 1, 2, ~0] sliced into 4 strata of width 1: [0,1) [1,2) [2,3) [3,4).
    np.testing.assert_array_equal(buffer.sample(4).indices, [0, 1, 2, 2])


def test_importance_weights_match_formula() -> None:
    buffer = prioritized(alpha=1.0, beta=0.5)
    buffer.add(make_batch(range(4)))
    buffer.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]) - 1e-6)
    # Mass [1, 2, 3, 4] in 10 strata of width 1 hits each slot once per unit of its priority.
    sample = buffer.sample(10)
    np.testing.assert_array_equal(sample.indices, [0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    # P = 0.1..0.4, N = 4: (N P)^-0.5 = 1.581, 1.118, 0.913, 0.791; divided by the max (slot 0).
    expected = np.array([1.0, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.5])
    np.testing.assert_allclose(sample.weights, expected[sample.indices], rtol=1e-5)


def test_importance_weights_normalized_by_batch_max() -> None:
    buffer = prioritized(alpha=1.0, beta=0.5)
    buffer.add(make_batch(range(4)))
    buffer.update_priorities(np.arange(4), np.array([0.0, 2.0, 3.0, 4.0]) - 1e-6)
    # Slot 0 (priority ~1e-6) is practically never drawn; slot 1 is the rarest slot in the
    # batch, so weights are sqrt(p_1 / p_i).
    sample = buffer.sample(9)
    assert 0 not in sample.indices and 1 in sample.indices
    expected = np.sqrt(2.0 / np.array([np.nan, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(sample.weights, expected[sample.indices], rtol=1e-5)
    buffer.beta = 0.0
    np.testing.assert_array_equal(buffer.sample(8).weights, np.ones(8))


def test_update_priorities_changes_distribution() -> None:
    buffer = prioritized(alpha=1.0)
    buffer.add(make_batch(range(4)))
    np.testing.assert_allclose(draw_frequencies(buffer, 20_000), 0.25, atol=0.01)
    buffer.update_priorities(np.arange(4), np.array([1.0, 1.0, 2.0, 0.0]))
    np.testing.assert_allclose(draw_frequencies(buffer, 20_000), [0.25, 0.25, 0.5, 0.0], atol=0.01)


def test_new_items_get_max_priority() -> None:
    buffer = prioritized(capacity=3, alpha=0.5, eps=0.5)
    buffer.add(make_batch([0, 1]))
    np.testing.assert_array_equal(buffer.state_dict()["priorities"], [1.0, 1.0])
    # (|td| + eps)**alpha: (15.5 + 0.5)**0.5 = 4, (0.5 + 0.5)**0.5 = 1.
    buffer.update_priorities(np.array([0, 1]), np.array([15.5, -0.5]))
    buffer.add(make_batch([2]))
    np.testing.assert_array_equal(buffer.state_dict()["priorities"], [4.0, 1.0, 4.0])
    buffer.update_priorities(np.array([0]), np.array([0.0]))  # max stays 4: it never decreases
    buffer.add(make_batch([3]))  # overwrites slot 0
    np.testing.assert_array_equal(buffer.state_dict()["priorities"], [4.0, 1.0, 4.0])
    np.testing.assert_array_equal(stored_ids(buffer), [3, 1, 2])


def test_update_priorities_rejects_bad_input() -> None:
    buffer = prioritized(capacity=8)
    buffer.add(make_batch(range(3)))
    with pytest.raises(ValueError, match="NaN"):
        buffer.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="filled"):
        buffer.update_priorities(np.array([3]), np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        buffer.update_priorities(np.array([0, 1]), np.array([1.0]))
    np.testing.assert_array_equal(buffer.state_dict()["priorities"], [1.0, 1.0, 1.0])


def test_prioritized_never_samples_unfilled_slots() -> None:
    buffer = prioritized(capacity=5000, alpha=1.0)  # sum tree with 3 levels below its top
    buffer.add(make_batch(range(3)))
    buffer.update_priorities(np.array([2]), np.array([1e9]))  # mass piles onto the last slot
    indices = np.concatenate([buffer.sample(256).indices for _ in range(20)])
    assert indices.max() == 2
    # Stratum offsets of exactly 1.0 put the last target on the total, past every filled slot.
    buffer._rng = SimpleNamespace(random=np.ones)
    np.testing.assert_array_equal(buffer.sample(2).indices, [2, 2])


def test_prioritized_load_rejects_other_alpha() -> None:
    source = prioritized(alpha=0.5)
    with pytest.raises(ValueError, match="alpha"):
        prioritized(alpha=0.6).load_state_dict(source.state_dict())


def test_replay_buffer_builds_what_the_config_describes() -> None:
    uniform = replay_buffer(DQNConfig(buffer_size=5), OBS_DIM, NUM_ACTIONS, seed=3)
    assert type(uniform) is ReplayBuffer and uniform.capacity == 5
    cfg = DQNConfig(
        buffer_size=6, prioritized=True, per_alpha=0.5, per_beta_start=0.3, per_eps=0.01
    )
    buffer = replay_buffer(cfg, OBS_DIM, NUM_ACTIONS, seed=3)
    assert isinstance(buffer, PrioritizedReplayBuffer) and buffer.capacity == 6
    assert (buffer.alpha, buffer.beta, buffer.eps) == (0.5, 0.3, 0.01)
    # the seed reaches the buffer: same seed, same draws
    again = replay_buffer(cfg, OBS_DIM, NUM_ACTIONS, seed=3)
    for built in (buffer, again):
        built.add(make_batch(range(6)))
    np.testing.assert_array_equal(buffer.sample(4).indices, again.sample(4).indices)
