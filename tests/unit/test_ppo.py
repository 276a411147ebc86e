"""PPO math on fixed batches with hand-computed answers, and the learner's update (GAE: test_gae.py)."""

import math

import numpy as np
import pytest
import torch

from soulsai_ray.algo_config import PPOConfig
from soulsai_ray.algos.ppo import PPOLearner
from soulsai_ray.algos.ppo_losses import explained_variance, masked_logits, ppo_loss
from soulsai_ray.models import ActorCritic, state_dict_to_numpy
from soulsai_ray.policies import NumpyActorCritic
from soulsai_ray.transitions import RolloutBatch


def _acting(model: ActorCritic, cfg: PPOConfig) -> NumpyActorCritic:
    """What a rollout actor acts with, holding ``model``'s weights as published."""
    obs_dim, num_actions = model.actor[0][0].in_features, model.actor[-1].out_features
    policy = NumpyActorCritic(cfg, obs_dim, num_actions)
    policy.load(state_dict_to_numpy(model))
    return policy


# ---------------------------------------------------------------------------------------------
# ppo_loss


def _loss(logits, actions, old_logprobs, advantages, **overrides):
    b = len(actions)
    kwargs = dict(
        values=torch.zeros(b),
        returns=torch.zeros(b),
        old_values=torch.zeros(b),
        masks=None,
        clip_coef=0.2,
        clip_value_loss=False,
        ent_coef=0.0,
        vf_coef=0.5,
    )
    kwargs.update(overrides)
    return ppo_loss(
        logits,
        actions=torch.as_tensor(actions),
        old_logprobs=torch.as_tensor(old_logprobs, dtype=torch.float32),
        advantages=torch.as_tensor(advantages, dtype=torch.float32),
        **kwargs,
    )


def test_ppo_loss_ratio_one():
    logits = torch.tensor([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0], [0.0, 0.5, 0.2], [2.0, 0.0, 0.0]])
    actions = torch.tensor([2, 0, 1, 1])
    old = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    loss, m = _loss(logits, actions, old, [1.0, -2.0, 3.0, 0.5])
    assert m["policy_loss"] == pytest.approx(-(1.0 - 2.0 + 3.0 + 0.5) / 4)
    assert m["approx_kl"] == pytest.approx(0.0, abs=1e-7)
    assert m["clip_fraction"] == 0.0
    assert loss.item() == pytest.approx(-0.625)  # zero values and returns: no value loss


def test_ppo_loss_clipped_surrogate_by_hand():
    # uniform 2-way policy: new log-prob log 0.5. Old probs 1/3 -> ratio 1.5, 1 -> ratio 0.5,
    # 0.5 -> ratio 1.
    logits = torch.zeros(5, 2, requires_grad=True)
    old = [math.log(1 / 3), math.log(1 / 3), 0.0, 0.0, math.log(0.5)]
    adv = [2.0, -1.0, 1.0, -2.0, 3.0]
    # per-sample max(-A r, -A clip(r, 0.8, 1.2)):
    #   r=1.5, A=+2: max(-3.0, -2.4) = -2.4 (clipped)   r=1.5, A=-1: max(1.5, 1.2) = 1.5
    #   r=0.5, A=+1: max(-0.5, -0.8) = -0.5             r=0.5, A=-2: max(1.0, 1.6) = 1.6 (clipped)
    #   r=1.0, A=+3: -3.0
    expected = (-2.4 + 1.5 - 0.5 + 1.6 - 3.0) / 5
    kl = lambda r: (r - 1) - math.log(r)  # noqa: E731
    loss, m = _loss(logits, [0, 1, 0, 1, 0], old, adv)
    assert m["policy_loss"] == pytest.approx(expected, rel=1e-5)
    assert m["clip_fraction"] == pytest.approx(4 / 5)
    assert m["approx_kl"] == pytest.approx((2 * kl(1.5) + 2 * kl(0.5)) / 5, rel=1e-5)
    # clipped samples (0 and 3) carry no policy gradient
    loss.backward()
    assert torch.equal(logits.grad[[0, 3]], torch.zeros(2, 2))
    assert logits.grad[[1, 2, 4]].abs().sum() > 0


def test_value_loss_unclipped_and_clipped_by_hand():
    values = torch.tensor([1.0, 2.0])
    returns = torch.tensor([2.0, 0.0])
    old_values = torch.tensor([0.0, 2.5])
    logits, actions, old = torch.zeros(2, 2), [0, 1], [math.log(0.5)] * 2
    common = dict(values=values, returns=returns, old_values=old_values, vf_coef=2.0)
    loss, m = _loss(logits, actions, old, [0.0, 0.0], **common)
    # unclipped: 0.5 * mean((1-2)^2, (2-0)^2) = 0.5 * 2.5
    assert m["value_loss"] == pytest.approx(1.25)
    assert loss.item() == pytest.approx(2.0 * 1.25)
    # clipped to +-0.2 around old values: 0.2 and 2.3 -> errors 3.24 and 5.29 beat 1 and 4
    _, m = _loss(logits, actions, old, [0.0, 0.0], clip_value_loss=True, **common)
    assert m["value_loss"] == pytest.approx(0.5 * (3.24 + 5.29) / 2)


def test_entropy_of_uniform_policy_and_entropy_bonus():
    logits = torch.zeros(3, 4)
    loss, m = _loss(logits, [0, 1, 2], [math.log(0.25)] * 3, [0.0] * 3, ent_coef=0.1)
    assert m["entropy"] == pytest.approx(math.log(4))
    assert loss.item() == pytest.approx(-0.1 * math.log(4))
    mask = torch.tensor([[True, False, True, False]] * 3)
    _, m = _loss(logits, [0, 2, 0], [math.log(0.5)] * 3, [0.0] * 3, masks=mask)
    assert m["entropy"] == pytest.approx(math.log(2))
    assert m["approx_kl"] == pytest.approx(0.0, abs=1e-7)  # renormalized over valid actions


# ---------------------------------------------------------------------------------------------
# masks


def test_masked_actions_have_probability_zero_and_finite_entropy():
    logits = torch.tensor([[5.0, 0.0, 1.0], [0.0, 9.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[False, True, True], [True, False, False]])
    probs = torch.softmax(masked_logits(logits, mask), -1)
    assert probs[0, 0].item() == 0.0 and probs[1, 1].item() == 0.0 and probs[1, 2].item() == 0.0
    assert probs[1, 0].item() == 1.0
    loss, m = _loss(logits, [1, 0], [0.0, 0.0], [1.0, 1.0], masks=mask, ent_coef=0.5)
    assert math.isfinite(m["entropy"]) and math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.equal(masked_logits(logits, torch.ones(2, 3, dtype=torch.bool)), logits)
    assert masked_logits(logits, None) is logits


def test_act_never_samples_masked_actions():
    model = ActorCritic(2, 4, [8], normalize_obs=False)
    with torch.no_grad():
        model.actor[-1].bias.copy_(torch.tensor([30.0, 0.0, 0.0, 30.0]))  # favour masked ones
    policy = _acting(model, PPOConfig(hidden_sizes=[8], normalize_obs=False))
    obs = np.zeros((5000, 2), dtype=np.float32)
    mask = np.tile(np.array([False, True, True, False]), (5000, 1))
    actions, logprobs, values = policy.act(obs, mask, np.random.default_rng(0))
    assert actions.dtype == np.int64 and logprobs.dtype == values.dtype == np.float32
    assert set(np.unique(actions)) == {1, 2}
    np.testing.assert_allclose(logprobs, math.log(0.5), rtol=1e-5)
    unmasked, _, _ = policy.act(obs, None, np.random.default_rng(0))
    assert set(np.unique(unmasked)) == {0, 3}
    np.testing.assert_array_equal(policy.value(obs), values)


# ---------------------------------------------------------------------------------------------
# batches and explained variance


def _random_batch(steps=8, envs=2, obs_dim=3, num_actions=2, seed=0, version=0) -> RolloutBatch:
    rng = np.random.default_rng(seed)
    shape = (steps, envs)
    return RolloutBatch(
        obs=rng.normal(2.0, 3.0, size=(*shape, obs_dim)).astype(np.float32),
        actions=rng.integers(num_actions, size=shape),
        logprobs=np.full(shape, math.log(1 / num_actions), np.float32),
        values=rng.normal(size=shape).astype(np.float32),
        rewards=rng.normal(size=shape).astype(np.float32),
        terminated=rng.random(shape) < 0.1,
        truncated=np.zeros(shape, bool),
        final_values=np.zeros(shape, np.float32),
        last_values=rng.normal(size=envs).astype(np.float32),
        masks=np.ones((*shape, num_actions), bool),
        version=version,
    )


def test_explained_variance():
    returns = np.array([1.0, 2.0, 3.0, 6.0])
    assert explained_variance(returns, returns) == pytest.approx(1.0)
    assert explained_variance(np.zeros(4), returns) == pytest.approx(0.0)
    # residuals [0, 0, 0, 2]: var 0.75; var(returns) = 3.5
    assert explained_variance(np.array([1.0, 2.0, 3.0, 4.0]), returns) == pytest.approx(
        1 - 0.75 / 3.5
    )
    assert math.isnan(explained_variance(np.zeros(3), np.ones(3)))


# ---------------------------------------------------------------------------------------------
# learner


def _on_policy_bandit_batch(learner: PPOLearner, rng: np.random.Generator, steps=16, envs=4):
    """One-step episodes in a single state; action 1 pays 1, action 0 pays 0."""
    obs = np.ones((steps, envs, 1), dtype=np.float32)
    policy = _acting(learner.model, learner.cfg)
    actions, logprobs, values = policy.act(obs.reshape(-1, 1), None, rng)
    shape = (steps, envs)
    return RolloutBatch(
        obs=obs,
        actions=actions.reshape(shape),
        logprobs=logprobs.reshape(shape),
        values=values.reshape(shape),
        rewards=(actions == 1).astype(np.float32).reshape(shape),
        terminated=np.ones(shape, bool),
        truncated=np.zeros(shape, bool),
        final_values=np.zeros(shape, np.float32),
        last_values=np.zeros(envs, np.float32),
        masks=np.ones((*shape, 2), bool),
        version=learner.updates,
    )


def _prob_action_1(learner: PPOLearner) -> float:
    with torch.no_grad():
        logits, _ = learner.model(torch.ones(1, 1))
    return torch.softmax(logits, -1)[0, 1].item()


def test_learner_prefers_rewarded_action():
    cfg = PPOConfig(hidden_sizes=[16], epochs=4, minibatch_size=16, lr=1e-2)
    learner = PPOLearner(cfg, obs_spec=1, num_actions=2, seed=0)
    rng = np.random.default_rng(0)
    before = _prob_action_1(learner)
    for _ in range(5):
        metrics = learner.update([_on_policy_bandit_batch(learner, rng)])
    assert learner.updates == 5
    assert metrics["samples"] == 64 and metrics["epochs_done"] == 4
    assert before == pytest.approx(0.5, abs=0.05)
    assert _prob_action_1(learner) > 0.8


def test_learner_first_step_is_on_policy_and_normalizer_updates_after_epochs():
    cfg = PPOConfig(hidden_sizes=[16], epochs=1, minibatch_size=32)
    learner = PPOLearner(cfg, obs_spec=3, num_actions=2)
    with torch.no_grad():  # a policy head sensitive enough for input changes to show in the KL
        learner.model.actor[-1].weight.normal_(0.0, 1.0)
    batch = _random_batch(steps=16, envs=2)
    flat = batch.obs.reshape(-1, 3)
    # acted in numpy, as on a rollout actor: the learner's torch log-probabilities agree
    batch.actions, logprobs, values = _acting(learner.model, cfg).act(
        flat, None, np.random.default_rng(0)
    )
    batch.actions, batch.logprobs = batch.actions.reshape(16, 2), logprobs.reshape(16, 2)
    batch.values = values.reshape(16, 2)
    metrics = learner.update([batch])  # a single minibatch step, taken under the old statistics
    # float32 rounding between numpy and torch only; the same policy under the updated
    # statistics is 0.3 away (mean KL)
    assert metrics["approx_kl"] < 1e-7 and metrics["clip_fraction"] == 0.0
    norm = learner.model.normalizer
    np.testing.assert_allclose(norm.mean.numpy(), flat.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), flat.astype(np.float64).var(0), rtol=1e-6)
    assert learner.policy_weights()["normalizer.count"] == 32


def test_learner_keeps_partial_minibatch_and_survives_size_one():
    cfg = PPOConfig(hidden_sizes=[8], epochs=2, minibatch_size=4)
    learner = PPOLearner(cfg, obs_spec=3, num_actions=2)
    metrics = learner.update([_random_batch(steps=3, envs=3)])  # 9 = 4 + 4 + 1 per epoch
    steps = {float(s["step"]) for s in learner.optimizer.state.values()}
    assert steps == {6.0}
    assert metrics["samples"] == 9
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())
    assert all(math.isfinite(metrics[k]) for k in ("policy_loss", "value_loss", "approx_kl"))


def test_learner_state_dict_round_trip_gives_identical_updates():
    cfg = PPOConfig(hidden_sizes=[16], epochs=3, minibatch_size=8)
    learner = PPOLearner(cfg, obs_spec=3, num_actions=2, seed=0)
    learner.update([_random_batch(seed=1)])
    state = learner.state_dict()
    live = next(iter(learner.model.parameters()))
    assert state["model"]["actor.0.0.weight"].data_ptr() != live.data_ptr()
    expected = learner.update([_random_batch(seed=2)])

    other = PPOLearner(cfg, obs_spec=3, num_actions=2, seed=5)
    other.load_state_dict(state)
    assert other.updates == 1
    got = other.update([_random_batch(seed=2)])
    assert got == expected
    theirs = other.model.state_dict()
    for name, tensor in learner.model.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    # without the saved shuffling state the same weights take different steps
    other.load_state_dict(state)
    other.rng = np.random.default_rng(123)
    assert other.update([_random_batch(seed=2)])["policy_loss"] != expected["policy_loss"]


def test_target_kl_stops_epochs_early():
    batches = [_random_batch(steps=32, envs=2, seed=3)]
    base = dict(hidden_sizes=[16], epochs=10, minibatch_size=8, lr=0.05)
    free = PPOLearner(PPOConfig(**base), obs_spec=3, num_actions=2)
    assert free.update(batches)["epochs_done"] == 10
    stopped = PPOLearner(PPOConfig(**base, target_kl=1e-3), obs_spec=3, num_actions=2)
    assert 1 <= stopped.update(batches)["epochs_done"] < 10


def test_anneal_lr_lowers_learning_rate():
    batches = [_random_batch()]
    annealed = PPOLearner(PPOConfig(hidden_sizes=[8], lr=1e-3, anneal_lr=True), 3, 2)
    assert annealed.update(batches, progress=0.25)["lr"] == pytest.approx(7.5e-4)
    assert annealed.optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-4)
    assert annealed.update(batches, progress=1.0)["lr"] == 0.0
    constant = PPOLearner(PPOConfig(hidden_sizes=[8], lr=1e-3), 3, 2)
    assert constant.update(batches, progress=0.5)["lr"] == pytest.approx(1e-3)


def test_learner_needs_a_batch():
    """What a batch holds is checked where it arrives (`inbound.check_rollout`, test_inbound)."""
    learner = PPOLearner(PPOConfig(hidden_sizes=[8]), obs_spec=3, num_actions=2)
    with pytest.raises(ValueError, match="at least one"):
        learner.update([])


def test_nan_loss_rolls_back_the_whole_iteration():
    from soulsai_ray.algo_config import PPOConfig as _PPOConfig

    learner = PPOLearner(_PPOConfig(hidden_sizes=[8], epochs=2, minibatch_size=4), 3, 2)
    before = {k: v.copy() for k, v in learner.policy_weights().items()}
    batch = _random_batch(seed=1)
    batch.rewards[0, 0] = 1e38  # finite input whose squared value error overflows
    batch.rewards[1, 0] = -1e38
    metrics = learner.update([batch])
    assert metrics["rolled_back"] == 1.0 and learner.nan_rollbacks == 1
    assert learner.guard.take_rollbacks() == 1 and learner.guard.take_rollbacks() == 0
    for key, weights in learner.policy_weights().items():
        np.testing.assert_array_equal(weights, before[key])
    assert learner.update([_random_batch(seed=2)])["rolled_back"] == 0.0
