"""The numpy networks rollout actors act with against the torch modules the learners train: same
state-dict layout, same outputs for every architecture switch, weights that do not fit are
refused, and PPO's sampling follows the masked policy."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.models import ActorCritic, q_network, state_dict_to_numpy
from soulsai_ray.policies import (
    NumpyActorCritic,
    NumpyQNetwork,
    actor_critic_layout,
    q_layout,
)

OBS_DIM, ACTIONS = 5, 3


def _randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` with random weights and, if it has one, a normalizer fed some statistics
    (LayerNorm gains and biases too: fresh ones are 1 and 0, which would hide a mix-up)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        if module.normalizer is not None:
            data = torch.randn(64, OBS_DIM, generator=generator) * 3.0 + 1.0
            module.normalizer.update(data)
    return module.requires_grad_(False)


def _observations(seed: int) -> np.ndarray:
    obs = np.random.default_rng(seed).normal(0.0, 4.0, size=(32, OBS_DIM)).astype(np.float32)
    obs[0] = 1e4  # far outside the statistics: the normalizer clips
    return obs


DQN_SWITCHES = list(itertools.product([True, False], [True, False], [True, False], [[16], [16, 8]]))


@pytest.mark.parametrize(("dueling", "layer_norm", "normalize_obs", "hidden"), DQN_SWITCHES)
def test_the_numpy_q_network_computes_the_torch_q_values(
    dueling, layer_norm, normalize_obs, hidden
):
    cfg = DQNConfig(
        hidden_sizes=hidden, dueling=dueling, layer_norm=layer_norm, normalize_obs=normalize_obs
    )
    net = _randomized(q_network(cfg, OBS_DIM, ACTIONS), seed=len(hidden))
    weights = state_dict_to_numpy(net)
    assert q_layout(cfg, OBS_DIM, ACTIONS) == {k: v.shape for k, v in weights.items()}
    policy = NumpyQNetwork(cfg, OBS_DIM, ACTIONS)
    policy.load(weights)
    obs = _observations(1)
    expected = net(torch.from_numpy(obs)).numpy()
    got = policy(obs)
    assert got.dtype == np.float32 and got.shape == (32, ACTIONS)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize(
    ("activation", "normalize_obs", "hidden"),
    list(itertools.product(["tanh", "relu"], [True, False], [[16], [16, 8]])),
)
def test_the_numpy_actor_critic_computes_the_torch_logits_and_values(
    activation, normalize_obs, hidden
):
    cfg = PPOConfig(hidden_sizes=hidden, activation=activation, normalize_obs=normalize_obs)
    model = ActorCritic(OBS_DIM, ACTIONS, hidden, activation, normalize_obs)
    model = _randomized(model, seed=3)
    weights = state_dict_to_numpy(model)
    assert actor_critic_layout(cfg, OBS_DIM, ACTIONS) == {k: v.shape for k, v in weights.items()}
    policy = NumpyActorCritic(cfg, OBS_DIM, ACTIONS)
    policy.load(weights)
    obs = _observations(2)
    logits, values = model(torch.from_numpy(obs))
    got_logits, got_values = policy(obs)
    np.testing.assert_allclose(got_logits, logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_values, values.numpy(), rtol=1e-4, atol=1e-4)
    assert policy.value(obs).dtype == np.float32


def test_weights_that_do_not_fit_are_refused_and_the_installed_ones_kept():
    cfg = DQNConfig(hidden_sizes=[16], layer_norm=True, normalize_obs=True)
    good = state_dict_to_numpy(_randomized(q_network(cfg, OBS_DIM, ACTIONS), seed=0))
    policy = NumpyQNetwork(cfg, OBS_DIM, ACTIONS)
    assert not policy.loaded
    with pytest.raises(RuntimeError, match="no weights"):
        policy(_observations(0))
    policy.load(good)
    before = policy(_observations(0))
    other_env = state_dict_to_numpy(q_network(cfg, OBS_DIM + 1, ACTIONS))
    no_layer_norm = state_dict_to_numpy(q_network(DQNConfig(hidden_sizes=[16]), OBS_DIM, ACTIONS))
    ppo = state_dict_to_numpy(ActorCritic(OBS_DIM, ACTIONS, [16]))
    extra = {**good, "body.9.weight": np.zeros((16, 16), np.float32)}
    missing = {k: v for k, v in good.items() if k != "value.bias"}
    for bad, named in [
        (other_env, "normalizer.mean"),
        (no_layer_norm, "normalizer"),
        (ppo, "actor.0.0.weight"),
        (extra, "body.9.weight"),
        (missing, "value.bias"),
    ]:
        with pytest.raises(RuntimeError, match=named.replace(".", r"\.")):
            policy.load(bad)
        np.testing.assert_array_equal(policy(_observations(0)), before)


def test_ppo_sampling_follows_the_masked_policy_and_its_log_probabilities():
    cfg = PPOConfig(hidden_sizes=[8], normalize_obs=False)
    model = _randomized(ActorCritic(OBS_DIM, ACTIONS, [8], normalize_obs=False), seed=5)
    policy = NumpyActorCritic(cfg, OBS_DIM, ACTIONS)
    policy.load(state_dict_to_numpy(model))
    obs = np.tile(_observations(3)[1], (20000, 1))
    mask = np.tile(np.array([True, False, True]), (20000, 1))
    actions, logprobs, _ = policy.act(obs, mask, np.random.default_rng(7))
    assert 1 not in set(actions)
    logits, _ = model(torch.from_numpy(obs[:1]))
    probs = torch.softmax(logits.masked_fill(~torch.from_numpy(mask[:1]), -math.inf), -1)[0]
    frequencies = np.bincount(actions, minlength=ACTIONS) / len(actions)
    np.testing.assert_allclose(frequencies, probs.numpy(), atol=0.015)
    np.testing.assert_allclose(logprobs, np.log(probs.numpy()[actions]), rtol=1e-4, atol=1e-5)
    again, _, _ = policy.act(obs, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(again, actions)  # a seed replays the same actions


def test_rollout_replay_and_weight_store_processes_never_import_torch():
    shells = "rollout, ppo_rollout, replay, weights"
    modules = ", ".join(f"soulsai_ray.actors.{name}" for name in shells.split(", "))
    code = f"import sys; import {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
