"""DQN math on fixed batches with hand-computed answers."""

import numpy as np
import pytest
import torch

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.dqn import DQNLearner, dqn_loss, masked_argmax, td_targets
from soulsai_ray.models import QNetwork, dueling_combine
from soulsai_ray.replay import SampledBatch
from soulsai_ray.transitions import TransitionBatch


def test_masked_argmax_ignores_invalid_actions():
    q = torch.tensor([[1.0, 5.0, 3.0], [9.0, 2.0, 4.0]])
    mask = torch.tensor([[True, False, True], [False, True, True]])
    assert masked_argmax(q, mask).tolist() == [2, 2]
    assert masked_argmax(q, None).tolist() == [1, 0]


def test_double_dqn_target_hand_computed():
    rewards = torch.tensor([1.0, 0.5, -1.0])
    discounts = torch.tensor([0.9, 0.0, 0.81])
    online = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 5.0]])
    # double: online picks [1, 0, 1]; target rates them [20, 30, 5]
    double = td_targets(rewards, discounts, online, target, None, double=True)
    assert torch.allclose(double, torch.tensor([1 + 0.9 * 20, 0.5, -1 + 0.81 * 5]))
    # vanilla: the target net picks and rates: max = [20, 40, 50]
    vanilla = td_targets(rewards, discounts, online, target, None, double=False)
    assert torch.allclose(vanilla, torch.tensor([1 + 0.9 * 20, 0.5, -1 + 0.81 * 50]))


def test_double_dqn_target_respects_next_masks():
    online = torch.tensor([[5.0, 1.0, 2.0]])
    target = torch.tensor([[100.0, 7.0, 3.0]])
    mask = torch.tensor([[False, True, True]])
    out = td_targets(torch.tensor([0.0]), torch.tensor([1.0]), online, target, mask, double=True)
    assert out.item() == pytest.approx(3.0)  # online picks action 2 among valid {1, 2}


def test_dqn_loss_huber_and_importance_weights():
    q = torch.tensor([[0.0, 1.0], [2.0, 0.0]], requires_grad=True)
    actions = torch.tensor([1, 0])
    targets = torch.tensor([1.5, 5.0])  # errors 0.5 (quadratic) and 3.0 (linear, delta 1)
    weights = torch.tensor([1.0, 0.5])
    loss, td, q_mean = dqn_loss(q, actions, targets, weights, huber_delta=1.0)
    expected = (1.0 * 0.5 * 0.5**2 + 0.5 * (3.0 - 0.5)) / 2
    assert loss.item() == pytest.approx(expected)
    assert td.tolist() == pytest.approx([0.5, 3.0])
    assert q_mean.item() == pytest.approx(1.5)


def test_dueling_aggregation():
    value = torch.tensor([[2.0], [-1.0]])
    adv = torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.0, 3.0]])
    q = dueling_combine(value, adv)
    assert torch.allclose(q, torch.tensor([[0.0, 2.0, 4.0], [-2.0, -2.0, 1.0]]))
    net = QNetwork(4, 3, [8], dueling=True)
    obs = torch.randn(5, 4)
    with torch.no_grad():
        q, v = net(obs), net.value(net.body(obs))
    # the mean advantage is removed, so mean_a Q(s, a) equals V(s)
    assert torch.allclose(q.mean(dim=-1, keepdim=True), v, atol=1e-6)


def _batch(n: int, obs_dim: int = 3, num_actions: int = 2, seed: int = 0) -> SampledBatch:
    rng = np.random.default_rng(seed)
    batch = TransitionBatch(
        obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.integers(num_actions, size=n).astype(np.int64),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
        discounts=np.full(n, 0.9, dtype=np.float32),
        next_masks=np.ones((n, num_actions), dtype=bool),
        versions=np.zeros(n, dtype=np.int64),
    )
    return SampledBatch(batch, np.arange(n), np.ones(n, dtype=np.float32))


def test_learner_fits_fixed_targets_and_updates_target_net():
    cfg = DQNConfig(hidden_sizes=[32], lr=1e-2, target_update_every=10, batch_size=16)
    learner = DQNLearner(cfg, obs_spec=3, num_actions=2)
    sampled = _batch(16)
    sampled.batch.discounts[:] = 0.0  # targets are the rewards: a pure regression
    first = learner.update(sampled).loss
    for _ in range(200):
        last = learner.update(sampled)
    assert last.loss < first * 0.1
    assert learner.updates == 201
    online = dict(learner.q_net.named_parameters())
    # the target copied the online net at update 200 and the online net moved once since
    diffs = [(online[k] - v).abs().max().item() for k, v in learner.target_net.named_parameters()]
    assert 0 < max(diffs) < 0.2


def test_learner_state_round_trip():
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8)
    a = DQNLearner(cfg, 3, 2, seed=1)
    for _ in range(5):
        a.update(_batch(8))
    b = DQNLearner(cfg, 3, 2, seed=2)
    b.load_state_dict(a.state_dict())
    assert b.updates == 5
    ra, rb = a.update(_batch(8, seed=3)), b.update(_batch(8, seed=3))
    assert ra.loss == pytest.approx(rb.loss)
    for (k, va), vb in zip(a.policy_weights().items(), b.policy_weights().values(), strict=True):
        np.testing.assert_allclose(va, vb, err_msg=k)


def test_nan_loss_rolls_back_to_last_good_weights():
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8)
    learner = DQNLearner(cfg, 3, 2)
    for _ in range(3):
        learner.update(_batch(8))
    assert learner.checkpoint_good_state()
    good = learner.policy_weights()
    learner.update(_batch(8, seed=1))  # moves away from the good state
    poisoned = _batch(8, seed=2)
    poisoned.batch.rewards[0] = np.nan
    result = learner.update(poisoned)
    assert result.rolled_back and learner.nan_rollbacks == 1
    assert np.isnan(result.loss) and np.isnan(result.td_errors).all()
    assert learner.guard.take_rollbacks() == 1 and learner.guard.take_rollbacks() == 0
    assert learner.updates == 3
    for key, value in learner.policy_weights().items():
        np.testing.assert_array_equal(value, good[key])
    assert not learner.update(_batch(8, seed=3)).rolled_back  # training goes on


def test_non_finite_weights_are_never_kept():
    learner = DQNLearner(DQNConfig(hidden_sizes=[16], batch_size=8), 3, 2)
    good = learner.policy_weights()
    with torch.no_grad():
        next(learner.q_net.parameters()).fill_(float("inf"))
    assert not learner.checkpoint_good_state()
    for key, value in learner.policy_weights().items():
        np.testing.assert_array_equal(value, good[key])
