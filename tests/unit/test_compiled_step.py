"""``algo.compile``: the DQN update as one compiled graph keeps step with the eager update through
everything a run does to a learner (target blends, resets, a NaN rollback, checkpoints loaded
either way), and a machine that cannot compile runs the eager step and says why."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_optim import ACTIONS, OBS, _batches, _max_difference

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.dqn import DQNLearner

EFFICIENT = dict(
    hidden_sizes=[32, 32], layer_norm=True, normalize_obs=True, lr=1e-3, grad_clip=0.5,
    target_update_every=25, target_tau=0.5, reset_every_updates=70,
)  # fmt: skip
"""dqn_efficient's switches, with a reset and a target blend within a short test (the network,
batch and clipping of tests/integration/test_dqn_actors.py's compiled learner: one graph)."""


def _state_difference(a: DQNLearner, b: DQNLearner) -> float:
    """Largest difference of weights, target weights and Adam's moments and step count."""
    nets = max(_max_difference(a.q_net, b.q_net), _max_difference(a.target_net, b.target_net))
    mine, theirs = a.optimizer.moments(), b.optimizer.moments()
    adam = max(float((x - y).abs().max()) for x, y in zip(mine, theirs, strict=True))
    return max(nets, adam)


def _assert_same_results(eager, compiled) -> None:
    assert compiled.rolled_back == eager.rolled_back
    if eager.rolled_back:
        return
    assert compiled.loss == pytest.approx(eager.loss, rel=1e-5, abs=1e-6)
    assert compiled.grad_norm == pytest.approx(eager.grad_norm, rel=1e-5, abs=1e-6)
    assert compiled.q_mean == pytest.approx(eager.q_mean, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(compiled.td_errors, eager.td_errors, rtol=1e-5, atol=1e-5)


@pytest.fixture
def one_thread():
    """One torch thread, as a learner actor has (``cluster.torch_threads``): inductor's code for a
    thread count is its own, so the integration test's compiled graph is then this one's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_each_compiled_update_is_the_eager_update_through_resets_blends_and_a_rollback():
    """180 updates with importance weights, masks, clipping, a target blend every 25 updates, a
    shrink-and-perturb reset every 70 and a NaN reward at update 100 (both roll back to the state
    marked good at update 60). Before each update the compiled learner loads the eager one's
    checkpoint, so each comparison is of one update from one state: results and the whole state
    after it (weights, target, Adam's moments and step) agree to float rounding. Two learners
    left to run on their own part at the first double-DQN argmax whose two best values differ by
    less than that rounding (the eager update against torch's per-tensor Adam too)."""
    eager = DQNLearner(DQNConfig(**EFFICIENT), OBS, ACTIONS, seed=5)
    compiled = DQNLearner(DQNConfig(**EFFICIENT, compile=True), OBS, ACTIONS, seed=5)
    batches = _batches(180, seed=1)
    batches[100].batch.rewards[7] = np.nan
    for i, sampled in enumerate(batches):
        if i == 60:
            assert eager.checkpoint_good_state() and compiled.checkpoint_good_state()
        compiled.load_state_dict(eager.state_dict())
        _assert_same_results(eager.update(sampled), compiled.update(sampled))
        assert compiled.updates == eager.updates
        assert _state_difference(eager, compiled) < 1e-5, i
    assert compiled.compiled_update is not None  # compiled, not fallen back to eager
    assert eager.nan_rollbacks == compiled.nan_rollbacks == 1
    assert eager.updates == 139  # 60 kept, 79 after the rollback
    assert eager.resets == compiled.resets == 1

    eager.load_state_dict(compiled.state_dict())  # the other way round: an eager learner resumes
    for sampled in batches[:5]:
        _assert_same_results(eager.update(sampled), compiled.update(sampled))
    assert _state_difference(eager, compiled) < 1e-5
    for learner in (eager, compiled):  # a changed learning rate reaches the compiled code
        learner.optimizer.param_groups[0]["lr"] = 0.0
    frozen = {name: p.clone() for name, p in compiled.q_net.named_parameters()}
    compiled.update(batches[5])
    assert all(torch.equal(p, frozen[name]) for name, p in compiled.q_net.named_parameters())
    untouched = DQNLearner(DQNConfig(**EFFICIENT), OBS, ACTIONS, seed=5)
    assert _max_difference(compiled.q_net, untouched.q_net) > 0.05  # the weights did move


def test_without_a_compiler_the_learner_says_why_and_runs_the_eager_step(monkeypatch, caplog):
    """No C++ compiler (and no cached code to fall back on): the first update logs the failure and
    every update runs eagerly, with the eager learner's numbers."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor, "force_disable_caches", True)
    cfg = dict(hidden_sizes=[16], lr=1e-3)
    eager = DQNLearner(DQNConfig(**cfg), OBS, ACTIONS, seed=2)
    fallen = DQNLearner(DQNConfig(**cfg, compile=True), OBS, ACTIONS, seed=2)
    with caplog.at_level(logging.WARNING, logger="soulsai_ray.algos.compiled_step"):
        for sampled in _batches(5, seed=4):
            _assert_same_results(eager.update(sampled), fallen.update(sampled))
    assert fallen.compiled_update is None
    warnings = [r.getMessage() for r in caplog.records if "compiling the DQN update" in r.message]
    assert len(warnings) == 1, warnings  # said once, not at every update
    assert "runs eager" in warnings[0]
    assert _max_difference(eager.q_net, fallen.q_net) == 0.0
    torch._dynamo.reset()
