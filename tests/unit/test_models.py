"""Observation normalizer and actor-critic network."""

import math

import numpy as np
import pytest
import torch

from soulsai_ray.models import (
    ActorCritic,
    ObservationNormalizer,
    state_dict_to_numpy,
)


def test_normalizer_statistics_match_numpy_over_both_batches():
    rng = np.random.default_rng(0)
    first = rng.normal(3.0, 2.0, size=(7, 3))
    second = rng.normal(-1.0, 0.5, size=(13, 3))
    norm = ObservationNormalizer(3)
    norm.update(torch.as_tensor(first, dtype=torch.float32))
    norm.update(torch.as_tensor(second, dtype=torch.float32))
    both = np.concatenate([first, second]).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), both.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), both.var(axis=0), rtol=1e-10)
    assert norm.count.item() == 20


def test_normalizer_forward_hand_computed_and_clipped():
    norm = ObservationNormalizer(2, clip=5.0, eps=0.0)
    norm.update(torch.tensor([[0.0, 10.0], [2.0, 10.02]]))  # mean [1, 10.01], std [1, 0.01]
    out = norm(torch.tensor([[3.0, 10.0], [1.0, 20.0]]))
    assert out[0].tolist() == pytest.approx([2.0, -1.0], abs=1e-3)
    assert out[1].tolist() == pytest.approx([0.0, 5.0])  # 999 standard deviations, clipped
    before = norm.mean.clone()
    norm(torch.ones(4, 2))
    assert torch.equal(norm.mean, before)  # forward never changes the statistics


def _load(module: torch.nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Loads numpy weights (read-only ones too) back into a torch module (rollout actors load
    them into `soulsai_ray.policies` instead; see test_policies.py)."""
    module.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in weights.items()})


def test_normalizer_round_trips_through_numpy_weights():
    norm = ObservationNormalizer(3)
    norm.update(torch.randn(50, 3) * 4 + 2)
    weights = state_dict_to_numpy(norm)
    assert set(weights) == {"mean", "var", "count"}
    for array in weights.values():
        array.setflags(write=False)  # like zero-copy arrays from the object store
    restored = ObservationNormalizer(3)
    _load(restored, weights)
    assert restored.count.item() == 50
    obs = torch.randn(6, 3)
    assert torch.equal(restored(obs), norm(obs))


def test_actor_critic_initialization_and_shapes():
    torch.manual_seed(0)
    model = ActorCritic(4, 3, [16, 8], activation="relu")
    policy_head, value_head = model.actor[-1], model.critic[-1]
    # orthogonal rows scaled by the gain: W W^T = gain^2 I
    eye = torch.eye(3)
    assert torch.allclose(policy_head.weight @ policy_head.weight.T, 0.01**2 * eye, atol=1e-7)
    assert value_head.weight.norm().item() == pytest.approx(1.0, abs=1e-5)
    hidden = model.actor[0][0].weight  # [16, 4]: orthonormal columns times sqrt(2)
    assert torch.allclose(hidden.T @ hidden, 2.0 * torch.eye(4), atol=1e-5)
    assert isinstance(model.actor[0][1], torch.nn.ReLU)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert not param.any(), name
    logits, values = model(torch.randn(5, 4))
    assert logits.shape == (5, 3) and values.shape == (5,)


def test_actor_critic_normalizes_with_current_statistics_only():
    torch.manual_seed(0)
    model = ActorCritic(2, 2, [8])
    plain = ActorCritic(2, 2, [8], normalize_obs=False)
    assert plain.normalizer is None
    plain.actor.load_state_dict(model.actor.state_dict())
    model.normalizer.update(torch.tensor([[1.0, 4.0], [3.0, 8.0]]))  # mean [2, 6], std [1, 2]
    obs = torch.tensor([[4.0, 10.0]])
    logits, _ = model(obs)
    expected, _ = plain(torch.tensor([[2.0, 2.0]]))
    assert torch.allclose(logits, expected, atol=1e-6)
    assert model.normalizer.count.item() == 2  # forward did not update


def test_actor_critic_weights_round_trip_includes_normalizer():
    model = ActorCritic(3, 2, [8])
    model.normalizer.update(torch.randn(10, 3) + 5)
    weights = state_dict_to_numpy(model)
    assert {"normalizer.mean", "normalizer.var", "normalizer.count"} <= set(weights)
    copy = ActorCritic(3, 2, [8])
    _load(copy, weights)
    obs = torch.randn(4, 3) + 5
    for a, b in zip(model(obs), copy(obs), strict=True):
        assert torch.equal(a, b)


def test_actor_critic_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        ActorCritic(2, 2, [4], activation="gelu")


def test_tanh_activation_by_default():
    model = ActorCritic(2, 2, [4])
    assert isinstance(model.critic[0][1], torch.nn.Tanh)
    assert math.isclose(model.normalizer.clip, 10.0)
