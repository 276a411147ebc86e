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
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from soulsai_ray.algos.optim import FlatAdam, adam_update, clip_coefficient

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
        max_norm: Gradient clipping threshold (``inf``: never).
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
        self._max_norm = max_norm
        named = list(q_net.named_parameters())
        self._names = [name for name, _ in named]
        self._shapes = [param.shape for _, param in named]
        self._sizes = [param.numel() for _, param in named]
        options = {"guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe}
        if optimizer.flat.device.type == "cpu":
            options["cpp_wrapper"] = True
            # no precompiled header: building one (141 MB) cost 5 CPU-s of a cold compile here
            # and made no compile of this step faster
            options["cpp_cache_precompile_headers"] = False
        self._compiled = torch.compile(self._step, dynamic=False, options=options)
        # imported by torch.compile anyway; here, not with this module, which every DQN learner
        # imports, compiling or not
        from torch._dynamo.exc import TorchDynamoException

        self._compiler_error = TorchDynamoException
        self._gradient = grad_and_value(self._loss_of_params, has_aux=True)

    def __call__(self, batch: BatchTensors) -> StepOutcome | None:
        """One update; None if compiling it failed (logged; nothing was changed), and the
        caller runs its eager step instead."""
        opt = self.optimizer
        try:
            return self._compiled(opt.flat.data, opt.moments(), opt.hyperparameters(), batch)
        except self._compiler_error as err:  # the compiler's (tracing or code generation): the
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
        moments: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        hyper: torch.Tensor,
        batch: BatchTensors,
    ) -> StepOutcome:
        with torch.no_grad():
            next_target = self.target_net(batch.next_obs)
            next_online = None
            if self._double:
                next_online = functional_call(self.q_net, self._params(flat), (batch.next_obs,))
            targets = self._bootstrap(next_online, next_target, batch)
        grad, (loss, (td_errors, q_mean)) = self._gradient(flat, targets, batch)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(grad)
            grad = grad * clip_coefficient(norm, self._max_norm)
            adam_update(flat, grad, moments, hyper, torch.isfinite(loss) & torch.isfinite(norm))
        return StepOutcome(loss.detach(), norm, td_errors, q_mean)


def _first(err: BaseException) -> str:
    """The first line of an error (a compiler's can run to pages)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
