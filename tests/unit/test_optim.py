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


def _flat_twins(seed: int) -> tuple[nn.Module, FlatAdam, nn.Module, FlatAdam]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    twin = copy.deepcopy(net)
    return net, FlatAdam(net, 1e-2), twin, FlatAdam(twin, 1e-2)


def _backward(pairs, x: torch.Tensor) -> None:
    for model, opt in pairs:
        opt.zero_grad()
        model(x).pow(2).mean().backward()


@pytest.mark.parametrize("fused", [True, None], ids=["fused_kernel", "tensor_ops"])
def test_each_step_is_torchs_adam_and_the_state_dict_its_format(fused):
    """FlatAdam.step (the fused kernel called directly, or the same step in tensor operations
    where a device has no fused kernel) against torch's Adam stepping the twin's flat tensor:
    bit-identical weights and moments with the kernel, equal to float rounding without it; and
    the state dict a checkpoint saves is torch's, key for key."""
    net, mine, twin, holder = _flat_twins(0)
    mine.param_groups[0]["fused"] = fused
    torch_adam = torch.optim.Adam([holder.flat], lr=1e-2, fused=fused)
    for _ in range(20):
        _backward(((net, mine), (twin, holder)), torch.randn(32, 5))
        mine.step()
        torch_adam.step()
    exact = torch.equal if fused else lambda a, b: torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert exact(mine.flat, holder.flat)
    saved, theirs = mine.state_dict(), torch_adam.state_dict()
    assert saved["param_groups"] == theirs["param_groups"]
    assert saved["state"].keys() == theirs["state"].keys() == {0}
    for key, value in theirs["state"][0].items():
        assert saved["state"][0][key].dtype == value.dtype and exact(saved["state"][0][key], value)


def test_a_saved_state_continues_identically_and_its_learning_rate_comes_back():
    """What a checkpoint holds (this optimizer's state dict, or one torch's Adam saved over the
    flat tensor) loads into a new FlatAdam, whose next steps are the original's, bit for bit;
    the learning rate becomes the saved one, as for a torch optimizer."""
    net, first, twin, holder = _flat_twins(1)
    torch_adam = torch.optim.Adam([holder.flat], lr=1e-2, fused=True)
    data = [torch.randn(16, 5) for _ in range(10)]
    for x in data[:5]:
        _backward(((net, first), (twin, holder)), x)
        first.step()
        torch_adam.step()
    saved_net = copy.deepcopy(net)
    sources = (copy.deepcopy(first.state_dict()), copy.deepcopy(torch_adam.state_dict()))
    for x in data[5:]:
        _backward(((net, first),), x)
        first.step()
    for source in sources:
        resumed_net = copy.deepcopy(saved_net)
        resumed = FlatAdam(resumed_net, 0.5)
        resumed.load_state_dict(source)
        assert resumed.param_groups[0]["lr"] == 1e-2
        for x in data[5:]:
            _backward(((resumed_net, resumed),), x)
            resumed.step()
        assert torch.equal(resumed.flat, first.flat)
        assert float(resumed.state[resumed.flat]["step"]) == 10.0


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
    smaller = FlatAdam(nn.Linear(4, 2), 1e-3)  # 10 parameters in one flat tensor
    smaller.zero_grad()
    smaller.step()
    with pytest.raises(ValueError, match="exp_avg holds 10 numbers, this network has 58"):
        flat.load_state_dict(smaller.state_dict())


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


LEARNERS_WITHOUT_DYNAMO = """
import sys
sys.path.insert(0, "tests/unit")
from test_optim import ACTIONS, OBS, _batches
from test_ppo import _random_batch
from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.algos.dqn import DQNLearner
from soulsai_ray.algos.ppo import PPOLearner
dqn = DQNLearner(DQNConfig(hidden_sizes=[16]), OBS, ACTIONS)
for sampled in _batches(3):
    dqn.update(sampled)
dqn.load_state_dict(dqn.state_dict())
ppo = PPOLearner(PPOConfig(hidden_sizes=[8], epochs=1, minibatch_size=8), obs_spec=3, num_actions=2)
ppo.update([_random_batch()])
ppo.load_state_dict(ppo.state_dict())
print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
"""


def test_learners_that_do_not_compile_never_import_dynamo():
    """A learner process that does not compile its update (``algo.compile=false``, and every PPO
    learner) never imports ``torch._dynamo``: about 1 CPU-s and 70 MB at each learner start."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", LEARNERS_WITHOUT_DYNAMO],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout
