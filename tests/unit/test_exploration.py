"""Epsilon schedules."""

import pytest

from soulsai_ray.algos.exploration import apex_epsilon, linear_epsilon


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
