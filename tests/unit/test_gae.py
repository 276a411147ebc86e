"""Generalized advantage estimation on fixed batches with hand-computed answers: bootstrapping
on truncation, none on termination, and the two limits of lambda."""

import numpy as np
import pytest

from soulsai_ray.algos.ppo_losses import compute_gae

GAMMA, LAM = 0.9, 0.8


def _gae_1env(terminated=(0, 0, 0), truncated=(0, 0, 0), final_values=(0, 0, 0), lam=LAM):
    """rewards [1, 2, 3], values [0.5, 1.0, 1.5], last value 2.0, one env."""
    col = lambda x, dtype=np.float32: np.array(x, dtype=dtype)[:, None]  # noqa: E731
    adv, ret = compute_gae(
        col([1.0, 2.0, 3.0]),
        col([0.5, 1.0, 1.5]),
        col(terminated, bool),
        col(truncated, bool),
        col(final_values),
        np.array([2.0], dtype=np.float32),
        GAMMA,
        lam,
    )
    assert adv.shape == ret.shape == (3, 1)
    assert adv.dtype == ret.dtype == np.float32
    return adv[:, 0], ret[:, 0]


def test_gae_three_steps_by_hand():
    # deltas: 1 + 0.9*1.0 - 0.5 = 1.4; 2 + 0.9*1.5 - 1.0 = 2.35; 3 + 0.9*2.0 - 1.5 = 3.3
    # gamma * lam = 0.72
    a2 = 3.3
    a1 = 2.35 + 0.72 * a2  # 4.726
    a0 = 1.4 + 0.72 * a1  # 4.80272
    adv, ret = _gae_1env()
    assert adv.tolist() == pytest.approx([a0, a1, a2], rel=1e-6)
    assert ret.tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5], rel=1e-6)


def test_gae_termination_mid_batch_neither_bootstraps_nor_propagates():
    # step 1 terminates: delta_1 = 2 + 0 - 1.0 = 1.0 and A_1 ignores A_2
    adv, _ = _gae_1env(terminated=(0, 1, 0), final_values=(0, 99.0, 0))
    assert adv.tolist() == pytest.approx([1.4 + 0.72 * 1.0, 1.0, 3.3], rel=1e-6)


def test_gae_truncation_mid_batch_bootstraps_from_final_value_only():
    # step 1 truncated with final value 4: delta_1 = 2 + 0.9*4 - 1.0 = 4.6, A_1 ignores A_2
    adv, _ = _gae_1env(truncated=(0, 1, 0), final_values=(0, 4.0, 0))
    assert adv.tolist() == pytest.approx([1.4 + 0.72 * 4.6, 4.6, 3.3], rel=1e-6)


def test_gae_terminated_wins_over_truncated():
    adv, _ = _gae_1env(terminated=(0, 1, 0), truncated=(0, 1, 0), final_values=(0, 4.0, 0))
    assert adv[1] == pytest.approx(1.0)


def test_gae_two_envs_with_different_done_patterns():
    rewards = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    values = np.array([[0.5, 1.0], [1.0, 1.0], [1.5, 1.0]], dtype=np.float32)
    terminated = np.array([[0, 1], [0, 0], [0, 0]], dtype=bool)
    truncated = np.zeros((3, 2), dtype=bool)
    last_values = np.array([2.0, 5.0], dtype=np.float32)
    adv, _ = compute_gae(
        rewards, values, terminated, truncated, np.zeros((3, 2), np.float32), last_values, 0.9, 0.8
    )
    # env 0 is the three-step case above
    assert adv[:, 0].tolist() == pytest.approx([4.80272, 4.726, 3.3], rel=1e-6)
    # env 1 deltas: 0 - 1 = -1 (terminated); 1 + 0.9*1 - 1 = 0.9; 0 + 0.9*5 - 1 = 3.5
    assert adv[:, 1].tolist() == pytest.approx([-1.0, 0.9 + 0.72 * 3.5, 3.5], rel=1e-6)


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    # episode ends at the last step: G_2 = 3, G_1 = 2 + 0.9*3 = 4.7, G_0 = 1 + 0.9*4.7 = 5.23
    adv, ret = _gae_1env(terminated=(0, 0, 1), lam=1.0)
    assert ret.tolist() == pytest.approx([5.23, 4.7, 3.0], rel=1e-6)
    assert adv.tolist() == pytest.approx([5.23 - 0.5, 4.7 - 1.0, 3.0 - 1.5], rel=1e-6)


def test_gae_lambda_zero_is_one_step_td_error():
    rng = np.random.default_rng(1)
    shape = (6, 3)
    rewards = rng.normal(size=shape).astype(np.float32)
    values = rng.normal(size=shape).astype(np.float32)
    terminated = rng.random(shape) < 0.3
    truncated = ~terminated & (rng.random(shape) < 0.3)
    final_values = np.where(truncated, rng.normal(size=shape), 0).astype(np.float32)
    last_values = rng.normal(size=3).astype(np.float32)
    adv, _ = compute_gae(
        rewards, values, terminated, truncated, final_values, last_values, GAMMA, 0.0
    )
    for t in range(6):
        following = values[t + 1] if t < 5 else last_values
        next_value = np.where(
            terminated[t], 0.0, np.where(truncated[t], final_values[t], following)
        )
        np.testing.assert_allclose(adv[t], rewards[t] + GAMMA * next_value - values[t], rtol=1e-5)
