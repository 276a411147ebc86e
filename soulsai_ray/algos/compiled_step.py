"""The DQN update as one compiled graph (``algo.compile``): forward passes, targets, loss,
gradient, clipping and Adam in one call of code that ``torch.compile`` generated.

An update of a small Q-network is mostly per-operator overhead in eager torch: about 60 operators
and the autograd engine for about 14 MFLOP. Here the loss is differentiated with ``torch.func``
over the learner's flat parameter tensor (:class:`~soulsai_ray.algos.optim.FlatAdam`), and the
whole step is compiled; on the CPU the generated code is called from C++ (inductor's
``cpp_wrapper``), so one update is one call. The numbers are the eager step's (Adam's and
``clip_grad_norm_``'s formulas, to float rounding), and an update whose loss or gradient is not
finite changes nothing: the caller then rolls back as it does for the eager step.

Compiling takes 5-15 s at the first update (inductor caches the generated code on disk, so a
learner restarted with the same shapes takes a few seconds). Where compiling fails (no C++
compiler on the CPU, an unsupported device) the learner logs why and runs the eager step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch._dynamo.exc import TorchDynamoException
from torch.func import functional_call, grad_and_value

from soulsai_ray.algos.optim import FlatAdam

logger = logging.getLogger(__name__)


class BatchTensors(NamedTuple):
    """One sampled batch on the learner's device."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    discounts: torch.Tensor
    weights: torch.Tensor
    """Importance-sampling weights (ones without prioritized replay)."""
    next_masks: torch.Tensor


class StepOutcome(NamedTuple):
    """What one update produced (tensors; nothing was read back to the host yet)."""

    loss: torch.Tensor
    grad_norm: torch.Tensor
    td_errors: torch.Tensor
    q_mean: torch.Tensor


Bootstrap = Callable[[torch.Tensor | None, torch.Tensor, BatchTensors], torch.Tensor]
"""``(online Q at next_obs or None, target Q at next_obs, batch) -> TD targets [B]``."""
Loss = Callable[
    [torch.Tensor, torch.Tensor, BatchTensors],
    tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]],
]
"""``(Q-values at obs, TD targets, batch) -> (loss, (TD errors, mean taken Q))``."""


class CompiledUpdate:
    """The DQN update step over ``q_net``'s flat parameters, compiled on first use.

    Args:
        q_net: The online network; its parameters are views into ``optimizer.flat``.
        target_net: The target network (read only here).
        optimizer: The learner's :class:`FlatAdam`; its parameters, moments and step count are
            updated in place, so checkpoints hold what an eager step would leave.
        bootstrap: The learner's TD targets (no gradient flows through them).
        loss: The learner's loss on the online Q-values.
        double: Double DQN: the online network's Q-values at ``next_obs`` go to ``bootstrap``.
        max_norm: Gradient clipping threshold (0 or less: never).
    """

    def __init__(
        self,
        q_net: nn.Module,
        target_net: nn.Module,
        optimizer: FlatAdam,
        bootstrap: Bootstrap,
        loss: Loss,
        double: bool,
        max_norm: float,
    ) -> None:
        self.q_net, self.target_net, self.optimizer = q_net, target_net, optimizer
        self._bootstrap, self._loss, self._double = bootstrap, loss, double
        self._max_norm = max_norm if max_norm > 0 else math.inf
        named = list(q_net.named_parameters())
        self._names = [name for name, _ in named]
        self._shapes = [param.shape for _, param in named]
        self._sizes = [param.numel() for _, param in named]
        self._device = device = optimizer.flat.device
        self._hyper: tuple[float, ...] = ()
        self._hyper_tensor = torch.empty(0)
        options = {"guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe}
        if device.type == "cpu":
            options["cpp_wrapper"] = True
        self._compiled = torch.compile(self._step, dynamic=False, options=options)
        self._gradient = grad_and_value(self._loss_of_params, has_aux=True)

    def __call__(self, batch: BatchTensors) -> StepOutcome | None:
        """One update; None if compiling it failed (logged; nothing was changed), and the
        caller runs its eager step instead."""
        group = self.optimizer.param_groups[0]
        hyper = (group["lr"], *group["betas"], group["eps"])
        if (
            hyper != self._hyper
        ):  # a tensor: the compiled code reads a changed lr, never a stale one
            self._hyper = hyper
            self._hyper_tensor = torch.tensor(hyper, dtype=torch.float64, device=self._device)
        moments = self.optimizer.moments()
        try:
            return self._compiled(self.optimizer.flat.data, *moments, batch, self._hyper_tensor)
        except TorchDynamoException as err:  # the compiler's (tracing or code generation): the
            # step has not run, so nothing changed
            logger.warning("compiling the DQN update failed, it runs eager: %s", _first(err))
            return None

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(flat, self._sizes)
        return {n: p.view(s) for n, p, s in zip(self._names, pieces, self._shapes, strict=True)}

    def _loss_of_params(
        self, flat: torch.Tensor, targets: torch.Tensor, batch: BatchTensors
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q_values = functional_call(self.q_net, self._params(flat), (batch.obs,))
        return self._loss(q_values, targets, batch)

    def _step(
        self,
        flat: torch.Tensor,
        step: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        batch: BatchTensors,
        hyper: torch.Tensor,
    ) -> StepOutcome:
        lr, beta1, beta2, eps = hyper.unbind()
        with torch.no_grad():
            next_target = self.target_net(batch.next_obs)
            next_online = None
            if self._double:
                next_online = functional_call(self.q_net, self._params(flat), (batch.next_obs,))
            targets = self._bootstrap(next_online, next_target, batch)
        grad, (loss, (td_errors, q_mean)) = self._gradient(flat, targets, batch)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(grad)
            grad = grad * torch.clamp(self._max_norm / (norm + 1e-6), max=1.0)
            finite = torch.isfinite(loss) & torch.isfinite(norm)
            # Adam as torch.optim.Adam computes it (no weight decay, no amsgrad)
            new_step = step + 1
            new_avg = exp_avg + (grad - exp_avg) * (1 - beta1)
            new_avg_sq = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
            count = new_step.to(torch.float64)  # Adam's bias corrections are float64 numbers
            bias1 = 1 - beta1**count
            bias2 = 1 - beta2**count
            denom = new_avg_sq.sqrt() / bias2.sqrt() + eps
            new_flat = flat - (lr / bias1) * new_avg / denom
            for old, new in ((flat, new_flat), (exp_avg, new_avg), (exp_avg_sq, new_avg_sq)):
                old.copy_(torch.where(finite, new, old))
            step.copy_(torch.where(finite, new_step, step))
        return StepOutcome(loss.detach(), norm, td_errors, q_mean)


def _first(err: BaseException) -> str:
    """The first line of an error (a compiler's can run to pages)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
