"""NStepAccumulator: n-step returns, episode ends, reset, versions and masks (hand-computed)."""

import numpy as np
import pytest

from soulsai_ray.inbound import Limits, check_transitions
from soulsai_ray.transitions import EnvStep, NStepAccumulator, TransitionBatch

NUM_ACTIONS = 3


def obs(t: int) -> np.ndarray:
    """Observation of time step t: a 2-vector that identifies t."""
    return np.array([t, -t], np.float32)


def push_steps(
    acc: NStepAccumulator,
    rewards: list[float],
    end: str | None = None,
    start: int = 0,
    versions: list[int] | None = None,
    masks: list[np.ndarray | None] | None = None,
) -> None:
    """Pushes steps start, start+1, ... with the given rewards; `end` marks the last step."""
    for i, reward in enumerate(rewards):
        last = i == len(rewards) - 1
        step = EnvStep(
            obs(start + i),
            action=(start + i) % NUM_ACTIONS,
            reward=reward,
            next_obs=obs(start + i + 1),
            terminated=last and end == "terminated",
            truncated=last and end == "truncated",
            next_mask=None if masks is None else masks[i],
            version=0 if versions is None else versions[i],
        )
        acc.push(step)


def pop(acc: NStepAccumulator) -> TransitionBatch:
    batch = acc.pop()
    assert batch is not None
    assert check_transitions(batch, Limits.of_shapes(2, NUM_ACTIONS), None) is None
    return batch


def test_mid_episode_emits_oldest_step_with_n_step_return() -> None:
    acc = NStepAccumulator(n=3, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0])
    assert acc.pop() is None
    assert acc.pending == 2

    push_steps(acc, [3.0, 4.0], start=2)
    batch = pop(acc)
    assert acc.pending == 2
    # Step 0: 1 + 0.5*2 + 0.25*3 = 2.75; step 1: 2 + 0.5*3 + 0.25*4 = 4.5.
    np.testing.assert_allclose(batch.rewards, [2.75, 4.5])
    np.testing.assert_allclose(batch.discounts, [0.125, 0.125])
    np.testing.assert_array_equal(batch.obs, [obs(0), obs(1)])
    np.testing.assert_array_equal(batch.next_obs, [obs(3), obs(4)])
    np.testing.assert_array_equal(batch.actions, [0, 1])
    assert acc.pop() is None


def test_termination_flushes_all_pending_without_bootstrap() -> None:
    acc = NStepAccumulator(n=3, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0, 3.0, 4.0], end="terminated")
    batch = pop(acc)
    assert acc.pending == 0
    # Step 0 left the window normally at step 2; steps 1..3 are flushed by the termination.
    np.testing.assert_allclose(batch.rewards, [2.75, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4])
    np.testing.assert_allclose(batch.discounts, [0.125, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(batch.next_obs, [obs(3), obs(4), obs(4), obs(4)])
    np.testing.assert_array_equal(batch.obs, [obs(0), obs(1), obs(2), obs(3)])


def test_termination_before_window_fills() -> None:
    acc = NStepAccumulator(n=3, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0], end="terminated")
    batch = pop(acc)
    np.testing.assert_allclose(batch.rewards, [1 + 0.5 * 2, 2])
    np.testing.assert_allclose(batch.discounts, [0.0, 0.0])
    np.testing.assert_array_equal(batch.next_obs, [obs(2), obs(2)])


def test_truncation_bootstraps_from_final_obs_with_gamma_power_k() -> None:
    acc = NStepAccumulator(n=3, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0], end="truncated")
    batch = pop(acc)
    assert acc.pending == 0
    np.testing.assert_allclose(batch.rewards, [2.0, 2.0])
    np.testing.assert_allclose(batch.discounts, [0.25, 0.5])
    np.testing.assert_array_equal(batch.next_obs, [obs(2), obs(2)])


def test_terminated_wins_over_truncated() -> None:
    acc = NStepAccumulator(n=2, gamma=0.5, num_actions=NUM_ACTIONS)
    acc.push(EnvStep(obs(0), 0, 1.0, obs(1), True, True, None, 0))
    np.testing.assert_allclose(pop(acc).discounts, [0.0])


def test_n_equal_one_emits_every_step() -> None:
    acc = NStepAccumulator(n=1, gamma=0.9, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0, 3.0], end="terminated")
    batch = pop(acc)
    np.testing.assert_allclose(batch.rewards, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(batch.discounts, [0.9, 0.9, 0.0])
    np.testing.assert_array_equal(batch.next_obs, [obs(1), obs(2), obs(3)])


def test_next_episode_starts_clean_after_termination() -> None:
    acc = NStepAccumulator(n=2, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0], end="terminated")
    push_steps(acc, [10.0, 20.0], start=5)
    batch = pop(acc)
    np.testing.assert_allclose(batch.rewards, [1.0, 10 + 0.5 * 20])
    np.testing.assert_array_equal(batch.obs, [obs(0), obs(5)])


def test_reset_drops_pending_but_keeps_completed() -> None:
    acc = NStepAccumulator(n=2, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0])  # step 0 completed, step 1 pending
    acc.reset()
    assert acc.pending == 0
    push_steps(acc, [10.0, 20.0], start=7)
    batch = pop(acc)
    # Step 1 (reward 2) is gone; the new window only sees rewards 10 and 20.
    np.testing.assert_allclose(batch.rewards, [1 + 0.5 * 2, 10 + 0.5 * 20])
    np.testing.assert_array_equal(batch.obs, [obs(0), obs(7)])
    np.testing.assert_array_equal(batch.next_obs, [obs(2), obs(9)])


def test_reset_with_nothing_completed_pops_none() -> None:
    acc = NStepAccumulator(n=3, gamma=0.5, num_actions=NUM_ACTIONS)
    push_steps(acc, [1.0, 2.0])
    acc.reset()
    assert acc.pop() is None


def test_versions_and_masks_carried_through() -> None:
    acc = NStepAccumulator(n=2, gamma=0.5, num_actions=NUM_ACTIONS)
    masks = [
        np.array([True, False, False]),
        np.array([False, True, False]),
        None,
        np.array([False, False, True]),
    ]
    push_steps(acc, [0.0] * 4, end="truncated", versions=[10, 11, 12, 13], masks=masks)
    batch = pop(acc)
    np.testing.assert_array_equal(batch.versions, [10, 11, 12, 13])
    # Step 0's next_obs is obs(2), reached by step 1, so it carries step 1's mask; step 1's is
    # obs(3) with no mask given (all valid); steps 2 and 3 end at the final obs(4).
    np.testing.assert_array_equal(
        batch.next_masks,
        [[False, True, False], [True, True, True], [False, False, True], [False, False, True]],
    )


def test_push_copies_inputs() -> None:
    acc = NStepAccumulator(n=1, gamma=0.5, num_actions=NUM_ACTIONS)
    o, mask = obs(1), np.array([True, True, False])
    acc.push(EnvStep(o, 0, 1.0, o, False, False, mask, 0))
    o[:] = 99.0
    mask[:] = False
    batch = pop(acc)
    np.testing.assert_array_equal(batch.obs, [obs(1)])
    np.testing.assert_array_equal(batch.next_masks, [[True, True, False]])


@pytest.mark.parametrize(("n", "gamma", "num_actions"), [(0, 0.5, 3), (2, 1.5, 3), (2, 0.5, 0)])
def test_rejects_bad_config(n: int, gamma: float, num_actions: int) -> None:
    with pytest.raises(ValueError):
        NStepAccumulator(n=n, gamma=gamma, num_actions=num_actions)


def test_rejects_mask_of_wrong_length_and_non_flat_obs() -> None:
    acc = NStepAccumulator(n=2, gamma=0.5, num_actions=NUM_ACTIONS)
    with pytest.raises(ValueError, match="next_mask"):
        acc.push(EnvStep(obs(0), 0, 1.0, obs(1), False, False, np.ones(2, bool), 0))
    with pytest.raises(ValueError, match="1-D"):
        acc.push(EnvStep(np.zeros((2, 2)), 0, 1.0, obs(1), False, False, None, 0))
    assert acc.pending == 0
