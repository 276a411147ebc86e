"""The learners' one guard against NaN and inf (soulsai_ray.algos.guard)."""

import math

import pytest
import torch

from soulsai_ray.algos.guard import NonFiniteGuard, NonFiniteLossError, raise_if_not_finite


@pytest.mark.parametrize(
    ("loss", "grad_norm"),
    [(math.nan, 1.0), (math.inf, None), (1.0, math.nan), (torch.tensor(-math.inf), 1.0)],
)
def test_a_non_finite_loss_or_gradient_norm_raises(loss, grad_norm):
    with pytest.raises(NonFiniteLossError):
        raise_if_not_finite(loss, grad_norm)


def test_finite_numbers_pass():
    raise_if_not_finite(torch.tensor(2.0), torch.tensor(0.5))
    raise_if_not_finite(2.0, None)


class _Learner:
    def __init__(self) -> None:
        self.weight = torch.zeros(2)

    def state_dict(self) -> dict:
        return {"weight": self.weight.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.weight = state["weight"].clone()


def test_run_rolls_back_to_the_last_good_state_and_counts():
    learner = _Learner()
    guard = NonFiniteGuard(learner.state_dict, learner.load_state_dict)
    learner.weight += 1.0
    assert guard.mark_good([learner.weight])

    def poisoned_update() -> str:
        learner.weight += 5.0
        raise_if_not_finite(math.nan, None)
        return "done"

    assert guard.run(poisoned_update) is None
    assert learner.weight.tolist() == [1.0, 1.0] and guard.rollbacks == 1
    assert guard.run(lambda: "done") == "done" and guard.rollbacks == 1


def test_non_finite_weights_never_become_the_rollback_point():
    learner = _Learner()
    guard = NonFiniteGuard(learner.state_dict, learner.load_state_dict)
    learner.weight[0] = math.inf
    assert not guard.mark_good([learner.weight])
    assert learner.weight.tolist() == [0.0, 0.0]


def test_take_rollbacks_reports_each_rollback_once():
    learner = _Learner()
    guard = NonFiniteGuard(learner.state_dict, learner.load_state_dict)
    guard.roll_back("test")
    guard.roll_back("test")
    assert guard.take_rollbacks() == 2
    assert guard.take_rollbacks() == 0
    guard.roll_back("test")
    assert guard.take_rollbacks() == 1 and guard.rollbacks == 3
