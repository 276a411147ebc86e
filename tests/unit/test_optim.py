"""FlatAdam against torch's own Adam and clip_grad_norm_ over the same network, one tensor per
parameter: the same weights after many updates, and old optimizer states load."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.dqn import DQNLearner, dqn_loss, td_targets
from soulsai_ray.algos.optim import FlatAdam
from soulsai_ray.replay import SampledBatch
from soulsai_ray.transitions import TransitionBatch

OBS, ACTIONS = 8, 4


def _batches(count: int, size: int = 64, seed: int = 0) -> list[SampledBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        masks = rng.random((size, ACTIONS)) < 0.8
        masks[np.arange(size), rng.integers(ACTIONS, size=size)] = True
        batch = TransitionBatch(
            obs=rng.normal(size=(size, OBS)).astype(np.float32) * 3,
            actions=rng.integers(ACTIONS, size=size).astype(np.int64),
            rewards=rng.normal(size=size).astype(np.float32) * 10,
            next_obs=rng.normal(size=(size, OBS)).astype(np.float32) * 3,
            discounts=np.where(rng.random(size) < 0.1, 0.0, 0.97).astype(np.float32),
            next_masks=masks,
            versions=np.zeros(size, dtype=np.int64),
        )
        weights = rng.uniform(0.3, 1.0, size).astype(np.float32)
        out.append(SampledBatch(batch, np.arange(size), weights))
    return out


class _PerTensorDQN:
    """DQN's update written the plain way: torch's Adam over each parameter tensor and
    ``clip_grad_norm_``; the same math as :class:`DQNLearner`'s."""

    def __init__(self, learner: DQNLearner) -> None:
        self.cfg = learner.cfg
        self.q_net = copy.deepcopy(learner.q_net)
        self.target_net = copy.deepcopy(learner.target_net)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=self.cfg.lr, fused=True)
        self.updates = 0

    def update(self, sampled: SampledBatch) -> float:
        b = sampled.batch
        obs, next_obs = torch.as_tensor(b.obs), torch.as_tensor(b.next_obs)
        if self.q_net.normalizer is not None:
            self.q_net.normalizer.update(obs)
        q_values = self.q_net(obs)
        with torch.no_grad():
            next_online, next_target = self.q_net(next_obs), self.target_net(next_obs)
        targets = td_targets(
            torch.as_tensor(b.rewards),
            torch.as_tensor(b.discounts),
            next_online,
            next_target,
            torch.as_tensor(b.next_masks),
            double=True,
        )
        loss, _, _ = dqn_loss(
            q_values,
            torch.as_tensor(b.actions),
            targets,
            torch.as_tensor(sampled.weights),
            self.cfg.huber_delta,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.q_net.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.cfg.target_update_every == 0:
            self.target_net.load_state_dict(self.q_net.state_dict())
        return float(norm)


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((x - y).abs().max()) for x, y in pairs)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["dqn", "layer_norm_and_normalizer"])
def test_dqn_learner_matches_per_tensor_adam_and_clipping_over_many_updates(layer_norm):
    """200 updates (target copies every 50, gradients clipped often at 0.5): the weights stay
    within float rounding of the plain per-tensor implementation. (Far longer runs part at the
    first double-DQN argmax whose two best Q-values differ by less than that rounding.)"""
    cfg = DQNConfig(
        hidden_sizes=[64, 64], dueling=True, lr=1e-3, grad_clip=0.5, target_update_every=50,
        layer_norm=layer_norm, normalize_obs=layer_norm,
    )  # fmt: skip
    learner = DQNLearner(cfg, OBS, ACTIONS, seed=3)
    reference = _PerTensorDQN(learner)
    clipped = 0
    for sampled in _batches(200):
        result = learner.update(sampled)
        norm = reference.update(sampled)
        assert result.grad_norm == pytest.approx(norm, rel=1e-4, abs=1e-6)
        clipped += norm > cfg.grad_clip
    assert clipped > 50  # the clipping path was exercised
    assert _max_difference(learner.q_net, reference.q_net) < 1e-4
    assert _max_difference(learner.target_net, reference.target_net) < 1e-4
    moved = _max_difference(learner.q_net, DQNLearner(cfg, OBS, ACTIONS, seed=3).q_net)
    assert moved > 0.05  # the weights did move: the comparison is not of two untouched nets


def test_the_direct_kernel_call_is_adams_own_step():
    """FlatAdam.step (the fused kernel called directly) and torch's Adam.step on the same flat
    tensor give bit-identical weights and moments."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    twin = copy.deepcopy(net)
    fast, plain = FlatAdam(net, 1e-2), FlatAdam(twin, 1e-2)
    for _ in range(20):
        x = torch.randn(32, 5)
        for model, opt in ((net, fast), (twin, plain)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
        fast.step()
        plain.optimizer.step()  # torch's own step over the flat parameter
    assert torch.equal(fast.flat, plain.flat)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fast.state[fast.flat][key], plain.state[plain.flat][key])


def test_an_adam_state_saved_per_tensor_loads_and_continues_identically():
    """A checkpoint's optimizer state from a per-tensor Adam (older checkpoints) loads into
    FlatAdam, and the next steps match the per-tensor Adam continuing on its own."""
    torch.manual_seed(1)
    old = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    old_adam = torch.optim.Adam(old.parameters(), lr=1e-2, fused=True)
    data = [torch.randn(16, 4) for _ in range(10)]
    for x in data[:5]:
        old_adam.zero_grad()
        old(x).pow(2).sum().backward()
        old_adam.step()
    new = copy.deepcopy(old)
    flat = FlatAdam(new, 1e-2)
    flat.load_state_dict(old_adam.state_dict())
    assert float(flat.state[flat.flat]["step"]) == 5.0
    for x in data[5:]:
        old_adam.zero_grad()
        old(x).pow(2).sum().backward()
        old_adam.step()
        flat.zero_grad()
        new(x).pow(2).sum().backward()
        flat.step()
    assert _max_difference(old, new) < 1e-6


def test_a_state_of_another_network_is_refused_naming_both_sizes():
    flat = FlatAdam(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), 1e-3)
    other = torch.optim.Adam(nn.Linear(4, 2).parameters(), lr=1e-3).state_dict()
    other["param_groups"][0]["params"] = [0, 1, 2]
    with pytest.raises(ValueError, match="holds 3 parameters, this network has 4"):
        flat.load_state_dict(other)


def test_clipping_matches_torch_and_inf_never_clips():
    torch.manual_seed(2)
    net = nn.Linear(6, 3)
    twin = copy.deepcopy(net)
    opt = FlatAdam(net, 1e-3)
    x = torch.randn(10, 6) * 50
    net(x).sum().backward()
    twin(x).sum().backward()
    before = opt.flat.grad.clone()
    assert torch.equal(opt.clip_grad_norm(float("inf")), torch.linalg.vector_norm(before))
    assert torch.equal(opt.flat.grad, before)
    norm = opt.clip_grad_norm(0.5)
    expected = nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
    torch.testing.assert_close(norm, expected)
    for mine, theirs in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad)
