"""The inbound checks: every malformed batch is rejected with its reason, good data passes."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from malformed import (
    CURRENT_VERSION,
    LIMITS,
    ROLLOUT_FAULTS,
    TRANSITION_FAULTS,
    good_rollout,
    good_transitions,
    random_faults,
    rollout_cases,
    transition_cases,
)

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import EnvConfig, TrainConfig
from soulsai_ray.inbound import (
    REASONS,
    Limits,
    Rejection,
    check_rollout,
    check_transitions,
    env_output_problem,
)
from soulsai_ray.inbound_episodes import episode_metrics_problem, finite_episodes
from soulsai_ray.observations import ObsSpec
from soulsai_ray.rejections import Rejections


def test_good_batches_pass():
    assert check_transitions(good_transitions(), LIMITS, CURRENT_VERSION) is None
    assert check_transitions(good_transitions(0), LIMITS, CURRENT_VERSION) is None
    assert check_transitions(good_transitions(LIMITS.max_rows), LIMITS, CURRENT_VERSION) is None
    assert check_rollout(good_rollout(), LIMITS, CURRENT_VERSION) is None
    edge = good_transitions()
    edge.discounts[:2] = [0.0, 1.0]
    edge.versions[:] = [0, CURRENT_VERSION, *[3] * (len(edge) - 2)]
    edge.rewards[0], edge.obs[0, 0] = LIMITS.max_abs_reward, -LIMITS.max_abs_obs
    assert check_transitions(edge, LIMITS, CURRENT_VERSION) is None


@pytest.mark.parametrize(
    ("check", "name", "batch", "reason"),
    [
        *((check_transitions, *case) for case in transition_cases()),
        *((check_rollout, *case) for case in rollout_cases()),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)[:30]),
)
def test_every_malformed_batch_is_rejected_with_its_reason(check, name, batch, reason):
    rejection = check(batch, LIMITS, CURRENT_VERSION)
    assert rejection is not None, name
    assert rejection.reason == reason, rejection
    assert rejection.reason in REASONS and rejection.detail


@pytest.mark.parametrize("seed", range(5))
def test_random_combinations_of_faults_are_always_rejected(seed):
    for i, names, batch in random_faults(
        TRANSITION_FAULTS, lambda s: good_transitions(seed=s), seed, 200
    ):
        assert check_transitions(batch, LIMITS, CURRENT_VERSION) is not None, (seed, i, names)
    for i, names, batch in random_faults(ROLLOUT_FAULTS, lambda s: good_rollout(seed=s), seed, 200):
        assert check_rollout(batch, LIMITS, CURRENT_VERSION) is not None, (seed, i, names)


def test_a_checkpointed_buffer_is_checked_without_version_or_value_bounds():
    batch = good_transitions()
    batch.versions[0], batch.rewards[0] = 10**6, 1e30
    shapes = Limits.of_shapes(3, 4)
    assert check_transitions(batch, shapes, None) is None
    assert check_transitions(batch, Limits.of_shapes(3, 5), None).reason == "shape"


def test_limits_follow_the_env_and_the_algorithm():
    env = EnvConfig(max_abs_obs=10.0, max_abs_reward=2.0, num_envs_per_actor=3)
    dqn = Limits.for_run(TrainConfig(algo=DQNConfig(push_every=64, n_step=3), env=env), 5, 6)
    assert (dqn.obs, dqn.num_actions, dqn.max_abs_obs) == (ObsSpec.vector(5), 6, 10.0)
    assert dqn.max_abs_reward == 6.0  # an n-step sum of three rewards
    assert dqn.max_rows >= 64 + 3
    ppo = Limits.for_run(TrainConfig(algo=PPOConfig(n_steps=128), env=env), 5, 6)
    assert (ppo.max_rows, ppo.max_abs_reward) == (128 * 3, 2.0)


@pytest.mark.parametrize(
    ("obs", "reward", "expected"),
    [
        ([0.0, 1.0], 1.0, None),
        ([0.0, np.nan], 1.0, "non-finite"),
        ([0.0, 1.0], np.inf, "non-finite"),
        ([0.0, 1e7], 1.0, "max_abs_obs"),
        ([0.0, 1.0], -1e7, "max_abs_reward"),
        (np.ones((2, 3)), np.array([1.0, 2e7]), "max_abs_reward"),  # a vector env's step
    ],
)
def test_env_output_problem(obs, reward, expected):
    problem = env_output_problem(obs, reward, 1e6, 1e6)
    assert problem is None if expected is None else expected in problem


def test_only_finite_episodes_are_kept():
    returns = [1.0, math.inf, float("nan"), 2, "3", None, -5.0, True]
    lengths = [10, 10, 10, 4, 10, 10, 0, 3]
    kept, kept_lengths, kept_metrics, dropped = finite_episodes(returns, lengths)
    assert kept == [1.0, 2.0] and kept_lengths == [10, 4] and dropped == 6
    assert kept_metrics == [{}, {}]
    assert finite_episodes([1.0], [1, 2]) == ([], [], [], 2)
    assert finite_episodes([1.0], [1], [{}, {}]) == ([], [], [], 1)
    assert finite_episodes([1.0], [1], "not a list") == ([], [], [], 1)


GOOD_METRICS = {"win": 1.0, "boss_hp_final": 0.25, "flag": True, "n": np.int64(3)}
BAD_METRICS = [
    None,
    "win",
    [("win", 1.0)],
    {"win": float("nan")},
    {"win": float("inf")},
    {"win": 3.4e38},
    {"win": "1"},
    {"win": None},
    {"win": [1.0]},
    {"win": np.ones(2)},
    {1: 1.0},
    {"": 1.0},
    {"bad name": 1.0},
    {"9lives": 1.0},
    {"x" * 41: 1.0},
    {"a/b": 1.0},
    {"win\n": 1.0},
    {f"m{i}": 1.0 for i in range(17)},
]


@pytest.mark.parametrize("metrics", BAD_METRICS, ids=repr)
def test_malformed_episode_metrics_drop_their_episode_only(metrics):
    returns, lengths = [1.0, 2.0, 3.0], [5, 6, 7]
    kept, kept_lengths, kept_metrics, dropped = finite_episodes(
        returns, lengths, [GOOD_METRICS, metrics, {}]
    )
    assert episode_metrics_problem(metrics) is not None
    assert dropped == 1 and kept == [1.0, 3.0] and kept_lengths == [5, 7]
    assert kept_metrics == [{"win": 1.0, "boss_hp_final": 0.25, "flag": 1.0, "n": 3.0}, {}]
    assert all(type(v) is float for m in kept_metrics for v in m.values())


def test_seeded_random_episode_metrics_never_pass_a_bad_value():
    rng = np.random.default_rng(12)
    for _ in range(300):
        metrics = {f"m{i}": float(rng.choice([0.5, np.nan, np.inf, -1e12, 7.0])) for i in range(3)}
        *_, kept_metrics, dropped = finite_episodes([0.0], [1], [metrics])
        ok = all(abs(v) <= 1e9 for v in metrics.values())
        assert (dropped == 0) == ok
        assert kept_metrics == ([metrics] if ok else [])


def test_rejections_count_by_reason_and_node_and_log_each_actor_rarely(caplog):
    counts: dict[str, int] = {}
    rejections = Rejections(by_reason=counts, log_every_s=60.0)
    with caplog.at_level(logging.ERROR, logger="soulsai_ray.inbound"):
        for _ in range(100):
            rejections.record(Rejection("reward", "too big"), 8, 3, "node-abcdef1234567")
        rejections.record(Rejection("obs", "too big"), 8, 3, "node-abcdef1234567")
        rejections.record(Rejection("reward", "too big"), 8, 4, "")
    assert counts == {"reward": 101, "obs": 1}
    summary = rejections.as_dict()
    assert summary["rows"] == 102 * 8
    assert summary["by_node"] == {"node-abcdef1234567": 101, "unknown": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # one per (actor, reason), not one per batch
    assert "rollout actor 3" in lines[0] and "node-abcdef1" in lines[0] and "reward" in lines[0]
    rejections.merge({"reward": 2}, {"node-x": 2}, 16)
    assert counts["reward"] == 103 and rejections.as_dict()["rows"] == 102 * 8 + 16


def test_rejected_actor_is_logged_again_with_a_count_of_what_was_suppressed(caplog):
    rejections = Rejections(log_every_s=0.0)
    with caplog.at_level(logging.ERROR, logger="soulsai_ray.inbound"):
        rejections.record(Rejection("rows", "x"), 1, 0, "n")
        rejections.record(Rejection("rows", "x"), 1, 0, "n")
    assert len(caplog.records) == 2
    rejections = Rejections(log_every_s=3600.0)
    rejections._logged[(0, "rows")] = -math.inf  # as if the last log was long ago
    rejections._suppressed[(0, "rows")] = 41
    with caplog.at_level(logging.ERROR, logger="soulsai_ray.inbound"):
        rejections.record(Rejection("rows", "x"), 1, 0, "n")
    assert "41 more like it" in caplog.records[-1].getMessage()


def test_a_terminal_transition_may_have_no_valid_next_action():
    """Only a transition that bootstraps (discount > 0) needs a valid next action."""
    from malformed import LIMITS, good_transitions

    from soulsai_ray.inbound import check_transitions

    batch = good_transitions()
    batch.next_masks[2] = False
    batch.discounts[2] = 0.0
    assert check_transitions(batch, LIMITS, 5) is None


def test_episode_returns_are_bounded_by_the_reward_bound_and_the_episode_limit():
    from soulsai_ray.config import EnvConfig
    from soulsai_ray.inbound_episodes import MAX_EPISODE_STEPS

    env = EnvConfig(id="CartPole-v1", max_abs_reward=10.0, max_episode_steps=500)
    returns = [100.0, 1e300, -50.0, 5001.0, 20.0, 30.0]
    lengths = [10, 10, 5, 500, 501, 3]
    kept, kept_lengths, _, dropped = finite_episodes(returns, lengths, None, env)
    assert kept == [100.0, -50.0, 30.0] and kept_lengths == [10, 5, 3] and dropped == 3
    unlimited = EnvConfig(id="CartPole-v1", max_abs_reward=1.0, max_episode_steps=None)
    assert finite_episodes([5.0], [MAX_EPISODE_STEPS + 1], None, unlimited)[3] == 1
    assert finite_episodes([1e300], [10], None, None)[0] == [1e300]  # no env: no bounds
