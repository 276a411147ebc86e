"""Epsilon schedules."""

import pytest

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.exploration import (
    actor_epsilon,
    apex_epsilon,
    elastic_apex_epsilon,
    linear_epsilon,
)


def test_linear_epsilon_decays_then_holds():
    assert linear_epsilon(0, 1.0, 0.1, 100) == 1.0
    assert linear_epsilon(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert linear_epsilon(100, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert linear_epsilon(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)


def test_apex_epsilons_match_formula():
    eps = [apex_epsilon(i, 8, 0.4, 7.0) for i in range(8)]
    assert eps[0] == pytest.approx(0.4)
    assert eps[-1] == pytest.approx(0.4**8)
    assert eps[3] == pytest.approx(0.4 ** (1 + 7 * 3 / 7))
    assert all(a > b for a, b in zip(eps, eps[1:], strict=False))
    assert apex_epsilon(0, 1) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        apex_epsilon(8, 8)


def test_an_actors_epsilon_follows_the_schedule_or_its_ape_x_rate():
    linear = DQNConfig(eps_start=1.0, eps_end=0.1, eps_decay_steps=1000)
    assert actor_epsilon(linear, 3, 4, 500) == pytest.approx(0.55)  # every actor, global steps
    assert actor_epsilon(linear, 0, None, 5000) == pytest.approx(0.1)
    apex = DQNConfig(per_actor_eps=True, apex_eps_base=0.4, apex_eps_alpha=7.0)
    assert actor_epsilon(apex, 3, 8, 0) == actor_epsilon(apex, 3, 8, 10**6) == apex_epsilon(3, 8)
    assert actor_epsilon(apex, 3, None, 0) == elastic_apex_epsilon(3)  # an elastic fleet
