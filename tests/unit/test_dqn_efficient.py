"""The switches of ``algo=dqn_efficient``: layer normalization, observation normalization inside
the Q-network, resets / shrink-and-perturb and the n-step schedule, each on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.dqn import DQNLearner
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import load_checkpoint
from soulsai_ray.config import parse_config
from soulsai_ray.inbound import Limits
from soulsai_ray.models import QNetwork, q_network, shrink_and_perturb
from soulsai_ray.policies import NumpyQNetwork
from soulsai_ray.replay import ReplayBuffer, SampledBatch
from soulsai_ray.transitions import EnvStep, NStepAccumulator, TransitionBatch
from soulsai_ray.typed_config import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def _batch(n: int, obs_dim: int = 3, seed: int = 0, scale: float = 1.0) -> SampledBatch:
    rng = np.random.default_rng(seed)
    batch = TransitionBatch(
        obs=(rng.normal(size=(n, obs_dim)) * scale + 5.0).astype(np.float32),
        actions=rng.integers(2, size=n).astype(np.int64),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=(rng.normal(size=(n, obs_dim)) * scale + 5.0).astype(np.float32),
        discounts=np.full(n, 0.9, dtype=np.float32),
        next_masks=np.ones((n, 2), dtype=bool),
        versions=np.zeros(n, dtype=np.int64),
    )
    return SampledBatch(batch, np.arange(n), np.ones(n, dtype=np.float32))


# --- layer normalization -------------------------------------------------------------------


def test_layer_norm_switch_normalizes_each_hidden_layer():
    plain = q_network(DQNConfig(hidden_sizes=[16, 8]), 3, 2)
    normed = q_network(DQNConfig(hidden_sizes=[16, 8], layer_norm=True), 3, 2)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.modules())
    norms = [m for m in normed.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert [n.normalized_shape for n in norms] == [(16,), (8,)]
    # before each activation, every sample's features have mean 0 and variance 1
    obs = torch.randn(32, 3) * 100.0
    first_linear, first_norm = normed.body[0], normed.body[1]
    with torch.no_grad():
        out = first_norm(first_linear(obs))
    torch.testing.assert_close(out.mean(-1), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(32), atol=1e-3, rtol=0)


def test_layer_norm_learner_fits_a_regression():
    learner = DQNLearner(DQNConfig(hidden_sizes=[32], lr=1e-2, layer_norm=True), 3, 2)
    sampled = _batch(16)
    sampled.batch.discounts[:] = 0.0
    first = learner.update(sampled).loss
    for _ in range(200):
        last = learner.update(sampled).loss
    assert last < first * 0.1


# --- observation normalization -------------------------------------------------------------


def test_normalizer_learns_the_training_batches_statistics():
    learner = DQNLearner(DQNConfig(hidden_sizes=[16], batch_size=8, normalize_obs=True), 3, 2)
    batches = [_batch(8, seed=s, scale=3.0) for s in range(5)]
    for b in batches:
        learner.update(b)
    seen = np.concatenate([b.batch.obs for b in batches]).astype(np.float64)
    norm = learner.q_net.normalizer
    assert norm is not None and norm.count.item() == 40
    np.testing.assert_allclose(norm.mean.numpy(), seen.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), seen.var(0), rtol=1e-6)
    # observations around 5 +- 3 reach the network as roughly standard normal values
    with torch.no_grad():
        inner = norm(torch.as_tensor(seen, dtype=torch.float32))
    assert inner.mean().abs() < 0.2 and 0.7 < inner.std() < 1.3


def test_normalizer_statistics_travel_with_published_weights():
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8, normalize_obs=True)
    learner = DQNLearner(cfg, 3, 2)
    for s in range(4):
        learner.update(_batch(8, seed=s, scale=4.0))
    weights = learner.policy_weights()
    assert {"normalizer.mean", "normalizer.var", "normalizer.count"} <= set(weights)
    actor_net = NumpyQNetwork(cfg, 3, 2)  # what a rollout actor and an evaluation build
    actor_net.load(weights)
    obs = torch.as_tensor(_batch(8, seed=9).batch.obs)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(actor_net(obs.numpy())), learner.q_net(obs))
    # without the statistics the same weights would act differently
    stripped = NumpyQNetwork(cfg, 3, 2)
    stripped.load({**weights, "normalizer.mean": np.zeros(3), "normalizer.var": np.ones(3)})
    with torch.no_grad():
        assert not torch.allclose(torch.from_numpy(stripped(obs.numpy())), learner.q_net(obs))


def test_normalizer_statistics_round_trip_through_a_checkpoint(tmp_path: Path):
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8, normalize_obs=True, target_update_every=3)
    learner = DQNLearner(cfg, 3, 2)
    for s in range(7):
        learner.update(_batch(8, seed=s, scale=2.0))
    path = CheckpointManager(tmp_path).save(
        "ckpt_1", {"learner": learner.state_dict()}, {"updates": 7}, "algo: {}\n"
    )
    payload, _ = load_checkpoint(path)
    restored = DQNLearner(cfg, 3, 2, seed=99)
    restored.load_state_dict(payload["learner"])
    for net in ("q_net", "target_net"):
        a, b = getattr(learner, net).normalizer, getattr(restored, net).normalizer
        for name in ("mean", "var", "count"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
    # training continues exactly: the same next update from both
    assert learner.update(_batch(8, seed=20)).loss == pytest.approx(
        restored.update(_batch(8, seed=20)).loss
    )


def test_target_network_takes_the_statistics_at_each_target_update():
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8, normalize_obs=True, target_update_every=4)
    learner = DQNLearner(cfg, 3, 2)
    for s in range(3):
        learner.update(_batch(8, seed=s))
    assert learner.target_net.normalizer.count.item() == 0  # not yet updated
    learner.update(_batch(8, seed=3))
    online, target = learner.q_net.normalizer, learner.target_net.normalizer
    assert target.count.item() == 32
    torch.testing.assert_close(target.mean, online.mean)
    obs = torch.as_tensor(_batch(8, seed=9).batch.obs)
    with torch.no_grad():
        torch.testing.assert_close(learner.target_net(obs), learner.q_net(obs))


# --- resets and shrink-and-perturb ---------------------------------------------------------


def test_shrink_and_perturb_hand_computed():
    net, fresh = QNetwork(2, 2, [3], dueling=True), QNetwork(2, 2, [3], dueling=True)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        for p in fresh.parameters():
            p.fill_(-1.0)
    shrink_and_perturb(net, fresh, keep=0.75)
    body = torch.cat([p.flatten() for p in net.body.parameters()])
    heads = torch.cat([p.flatten() for h in net.heads() for p in h.parameters()])
    torch.testing.assert_close(body, torch.full_like(body, 0.5))  # 0.75 * 1 + 0.25 * -1
    torch.testing.assert_close(heads, torch.full_like(heads, -1.0))  # always re-initialized


def test_reset_keeps_the_optimizer_consistent_and_the_target():
    cfg = DQNConfig(
        hidden_sizes=[16], batch_size=8, reset_every_updates=5, reset_keep=0.0,
        target_update_every=1000, normalize_obs=True,
    )  # fmt: skip
    learner = DQNLearner(cfg, 3, 2)
    for s in range(4):
        learner.update(_batch(8, seed=s))
    before = {k: v.clone() for k, v in learner.q_net.state_dict().items()}
    target = {k: v.clone() for k, v in learner.target_net.state_dict().items()}
    assert len(learner.optimizer.state) > 0
    learner.update(_batch(8, seed=4))  # update 5: the reset
    assert learner.resets == 1
    assert len(learner.optimizer.state) == 0  # Adam's moments of the old weights are gone
    flat = learner.optimizer.flat.untyped_storage().data_ptr()  # Adam still steps these weights
    assert all(p.untyped_storage().data_ptr() == flat for p in learner.q_net.parameters())
    after = learner.q_net.state_dict()
    for key in before:
        if not key.startswith("normalizer."):
            assert not torch.allclose(after[key], before[key]), key
    seen = np.concatenate([_batch(8, seed=s).batch.obs for s in range(5)]).astype(np.float64)
    assert after["normalizer.count"].item() == 40  # data statistics are kept
    np.testing.assert_allclose(after["normalizer.mean"].numpy(), seen.mean(0), rtol=1e-6)
    for key, value in learner.target_net.state_dict().items():
        torch.testing.assert_close(value, target[key])
    # training goes on from the fresh weights with fresh Adam moments
    result = learner.update(_batch(8, seed=5))
    assert not result.rolled_back and np.isfinite(result.loss)
    steps = {float(s["step"]) for s in learner.optimizer.state.values()}
    assert steps == {1.0}


def test_reset_leaves_the_replay_intact():
    buffer = ReplayBuffer(capacity=64, obs_spec=3, num_actions=2, seed=0)
    buffer.add(_batch(48, seed=1).batch)
    before = buffer.state_dict()
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8, reset_every_updates=3)
    learner = DQNLearner(cfg, 3, 2)
    for _ in range(7):
        learner.update(buffer.sample(8))
    assert learner.resets == 2
    after = buffer.state_dict()
    assert len(buffer) == 48
    for key in ("obs", "actions", "rewards", "next_obs", "discounts", "next_masks"):
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_reset_schedule_survives_a_checkpoint():
    """A learner restored between two resets resets at the same update with the same weights."""
    cfg = DQNConfig(hidden_sizes=[16], batch_size=8, reset_every_updates=5, reset_keep=0.5)
    a = DQNLearner(cfg, 3, 2, seed=3)
    for s in range(7):
        a.update(_batch(8, seed=s))
    b = DQNLearner(cfg, 3, 2, seed=3)
    b.load_state_dict(a.state_dict())
    for s in range(7, 12):
        a.update(_batch(8, seed=s))
        b.update(_batch(8, seed=s))
    assert a.resets == b.resets == 2
    for (key, va), vb in zip(a.policy_weights().items(), b.policy_weights().values(), strict=True):
        np.testing.assert_allclose(va, vb, err_msg=key)


def test_no_reset_without_the_switch():
    learner = DQNLearner(DQNConfig(hidden_sizes=[16], batch_size=8), 3, 2)
    for s in range(10):
        learner.update(_batch(8, seed=s))
    assert learner.resets == 0 and len(learner.optimizer.state) > 0


# --- n-step schedule -----------------------------------------------------------------------


def test_n_step_schedule_hand_computed():
    cfg = DQNConfig(n_step=3, n_step_start=9, n_step_anneal_steps=100)
    assert [cfg.n_step_at(t) for t in (0, 25, 50, 100, 10**6)] == [9, 8, 6, 3, 3]
    assert cfg.max_n_step == 9
    assert DQNConfig(n_step=3).n_step_at(0) == 3 and DQNConfig(n_step=3).max_n_step == 3


def test_inbound_limits_allow_the_longest_n():
    from soulsai_ray.config import TrainConfig

    cfg = TrainConfig(algo=DQNConfig(n_step=3, n_step_start=9, push_every=16))
    limits = Limits.for_run(cfg, 3, 2)
    assert limits.max_rows == 2 * (16 + 9)
    assert limits.max_abs_reward == cfg.env.max_abs_reward * 9


def _push(acc: NStepAccumulator, t: int, end: bool = False) -> None:
    obs = np.array([t, 0.0], np.float32)
    acc.push(
        EnvStep(obs, 0, 1.0, obs + 1, terminated=end, truncated=False, next_mask=None, version=0)
    )


def test_n_changes_between_episodes_only():
    acc = NStepAccumulator(n=4, gamma=0.5, num_actions=2)
    _push(acc, 0)
    acc.set_n(2)  # mid-episode: this episode keeps n=4
    assert acc.n == 4
    for t in range(1, 5):
        _push(acc, t)
    first = acc.pop()
    assert first is not None and len(first) == 2
    np.testing.assert_allclose(first.discounts, [0.5**4] * 2)
    np.testing.assert_allclose(first.rewards, [1 + 0.5 + 0.25 + 0.125] * 2)
    _push(acc, 5, end=True)
    assert acc.n == 2  # the next episode uses the new n
    acc.pop()
    for t in range(6, 9):
        _push(acc, t)
    second = acc.pop()
    assert second is not None
    np.testing.assert_allclose(second.discounts, [0.25, 0.25])
    np.testing.assert_allclose(second.rewards, [1.5, 1.5])


def test_n_applies_at_once_when_nothing_is_pending_and_after_a_crash_reset():
    acc = NStepAccumulator(n=5, gamma=0.9, num_actions=2)
    acc.set_n(2)
    assert acc.n == 2
    _push(acc, 0)
    acc.set_n(3)
    assert acc.n == 2
    acc.reset()  # an env crash drops the partial episode; the next one uses the new n
    assert acc.n == 3
    with pytest.raises(ValueError, match="n must be >= 1"):
        acc.set_n(0)


# --- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_step_start", 0, "must be > 0 or null"),
        ("reset_every_updates", 0, "must be > 0 or null"),
        ("reset_keep", 1.0, r"must be in \[0, 1\)"),
        ("reset_keep", -0.1, r"must be in \[0, 1\)"),
        ("n_step_anneal_steps", 0, "must be > 0"),
    ],
)
def test_invalid_switches_name_their_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"algo\.{key}: {message}"):
        parse_config({"algo": {"name": "dqn", key: value}})


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        choice = cfg.hydra.runtime.choices.algo
        raw = {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "hydra"}
        data = OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    return choice, parse_config(data).algo


def test_dqn_efficient_inherits_dqn_and_turns_every_switch_on():
    choice, algo = _compose("algo=dqn_efficient")
    _, dqn = _compose("algo=dqn")
    assert choice == "dqn_efficient" and algo.name == "dqn"
    assert algo.layer_norm and algo.normalize_obs
    assert algo.reset_every_updates and algo.n_step_start
    assert algo.replay_ratio / algo.batch_size > dqn.replay_ratio / dqn.batch_size
    # the fast default stays as it is
    assert not (dqn.layer_norm or dqn.normalize_obs or dqn.reset_every_updates or dqn.n_step_start)
    assert (dqn.hidden_sizes, dqn.lr, dqn.gamma) == (algo.hidden_sizes, algo.lr, algo.gamma)


@pytest.mark.parametrize("env", ["iudex", "iudex_demo"])
def test_soulsgym_envs_select_dqn_efficient_unless_told_otherwise(env):
    choice, algo = _compose(f"env={env}")
    assert choice == "dqn_efficient" and algo.layer_norm and algo.reset_every_updates
    choice, algo = _compose(f"env={env}", "algo=dqn")
    assert choice == "dqn" and not algo.layer_norm
    choice, algo = _compose(f"env={env}", "algo=ppo")
    assert choice == "ppo" and algo.name == "ppo"


def test_iudex_keeps_its_game_pc_settings_under_dqn_efficient():
    _, efficient = _compose("env=iudex")
    _, plain = _compose("env=iudex", "algo=dqn")
    assert efficient.ratio_slack_steps is None and plain.ratio_slack_steps is None
    assert efficient.lr == plain.lr and efficient.n_step == plain.n_step
    assert efficient.replay_ratio > plain.replay_ratio
