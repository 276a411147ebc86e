"""The learners' optimizer: Adam over a module's parameters held in one flat tensor.

An update of a small network is mostly per-call overhead: zeroing, clipping and stepping a dozen
parameter tensors one by one costs more than the arithmetic. Here the module's parameters are
views into one flat tensor and their gradients views into one flat gradient, so zeroing is one
operation, the gradient norm one reduction and the Adam step one fused kernel. The numbers are
Adam's and ``clip_grad_norm_``'s (the norm of one vector instead of the norm of per-tensor
norms: equal to float rounding).

It keeps Adam's state itself, in ``torch.optim.Adam``'s layout and ``state_dict`` format, without
making a ``torch.optim`` optimizer: the first one a process makes imports ``torch._dynamo``
(about 1 CPU-s and 70 MB), which a learner that does not compile never needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ADAM_KERNEL = getattr(torch, "_fused_adam_", None)
"""torch's fused Adam kernel (the one ``Adam(fused=True)`` runs), called directly: the optimizer's
own ``step`` spends about 0.1 ms per call in Python around a kernel of about 0.02 ms here."""

ADAM_DEFAULTS: dict[str, Any] = {
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "decoupled_weight_decay": False,
}
"""``torch.optim.Adam``'s parameter group besides ``lr`` and ``fused``, as its ``state_dict``
saves it."""

SAVED_HYPERPARAMETERS = ("lr", "betas", "eps")
"""What loading a state takes from it, as ``torch.optim.Adam.load_state_dict`` does; how the step
runs (fused or not) stays this machine's."""


def _fused_on(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel runs on ``device``."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return ADAM_KERNEL is not None and device.type in _get_fused_kernels_supported_devices()


class FlatAdam:
    """Adam (fused where torch has it) over ``module``'s parameters, with one-operation zeroing
    and gradient clipping.

    The parameters stay the module's own (``state_dict``, ``load_state_dict`` and in-place edits
    work as before); only rebinding a parameter's ``.data`` or setting its ``.grad`` to None would
    detach it from the flat tensors, and nothing here does either.

    Args:
        module: Its parameters, in ``module.parameters()`` order, are moved into the flat tensor
            (on their device and dtype, which must be one).
        lr: Learning rate (``param_groups[0]["lr"]`` changes it, as for a torch optimizer).
    """

    def __init__(self, module: nn.Module, lr: float) -> None:
        params = list(module.parameters())
        with torch.no_grad():
            self.flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        self.flat.grad = torch.zeros_like(self.flat)
        offset = 0
        for param in params:
            size = param.numel()
            param.data = self.flat.data[offset : offset + size].view_as(param)
            param.grad = self.flat.grad[offset : offset + size].view_as(param)
            offset += size
        fused = True if _fused_on(self.flat.device) else None
        self.param_groups: list[dict[str, Any]] = [
            {"params": [self.flat], "lr": lr, **ADAM_DEFAULTS, "fused": fused}
        ]
        """One group, as ``torch.optim.Adam`` keeps it (``param_groups[0]["lr"]`` is the rate)."""
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        """Adam's moments and step count under the flat parameter (empty before the first step
        and after :meth:`reset`), as ``torch.optim.Adam.state`` holds them."""
        self._sizes = [p.numel() for p in params]
        self._hyper_values: tuple[float, ...] = ()
        self._hyper = torch.empty(0)
        self._always = torch.ones((), dtype=torch.bool, device=self.flat.device)
        """``adam_update``'s mask where every step applies (made once, not at each step)."""

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scales the gradient to norm at most ``max_norm`` (``inf``: never) as
        ``torch.nn.utils.clip_grad_norm_`` does; returns the norm before clipping."""
        grad = self.flat.grad
        norm = torch.linalg.vector_norm(grad)
        grad.mul_(clip_coefficient(norm, max_norm))
        return norm

    def step(self) -> None:
        group = self.param_groups[0]
        if not group["fused"]:  # no fused kernel on this device: the same step, in tensor ops
            with torch.no_grad():
                adam_update(
                    self.flat, self.flat.grad, self.moments(), self.hyperparameters(), self._always
                )
            return
        step, exp_avg, exp_avg_sq = self.moments()
        step.add_(1)
        beta1, beta2 = group["betas"]
        ADAM_KERNEL(
            [self.flat.data],
            [self.flat.grad],
            [exp_avg],
            [exp_avg_sq],
            [],
            [step],
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Adam's step count, first and second moments (zeros until the first step), as the
        fused kernel keeps them: the tensors :meth:`state_dict` saves."""
        state = self.state.setdefault(self.flat, {})
        if not state:  # as Adam initializes it for the fused kernel
            state["step"] = torch.zeros((), dtype=torch.float32, device=self.flat.device)
            state["exp_avg"] = torch.zeros_like(self.flat, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(self.flat, memory_format=torch.preserve_format)
        return state["step"], state["exp_avg"], state["exp_avg_sq"]

    def hyperparameters(self) -> torch.Tensor:
        """``[lr, beta1, beta2, eps]`` as one float64 tensor for :func:`adam_update` (made again
        only when one of them changes: compiled code reads a changed ``lr``, never a stale one)."""
        group = self.param_groups[0]
        values = (group["lr"], *group["betas"], group["eps"])
        if values != self._hyper_values:
            self._hyper_values = values
            self._hyper = torch.tensor(values, dtype=torch.float64, device=self.flat.device)
        return self._hyper

    def reset(self) -> None:
        """Forgets Adam's moments (they belong to weights that were just re-initialized)."""
        self.state.clear()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam.state_dict``'s format: the state under parameter index 0 (its
        tensors, not copies) and the group with ``params: [0]``."""
        group = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        state = {0: dict(self.state[self.flat])} if self.state.get(self.flat) else {}
        return {"state": state, "param_groups": [{**group, "params": [0]}]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads :meth:`state_dict` output, or a torch Adam's over the same parameters: one flat
        tensor, or one tensor each (checkpoints written before the parameters were flat). The
        learning rate, betas and eps become the saved ones, as for a torch optimizer."""
        flat_state = self._flattened(state)
        (group,) = flat_state["param_groups"]
        saved = flat_state["state"].get(group["params"][0])
        moments: dict[str, torch.Tensor] = {}
        if saved:
            size = self.flat.numel()
            for key in ("exp_avg", "exp_avg_sq"):
                if saved[key].numel() != size:
                    raise ValueError(
                        f"the optimizer state's {key} holds {saved[key].numel()} numbers, this "
                        f"network has {size} parameters"
                    )
                moments[key] = saved[key].to(self.flat.device, self.flat.dtype).reshape(size)
            step = torch.as_tensor(saved["step"]).to(self.flat.device, torch.float32)
            moments["step"] = step.reshape(())
        self.param_groups[0].update({key: group[key] for key in SAVED_HYPERPARAMETERS})
        self.state.clear()
        if moments:
            self.state[self.flat] = {key: value.clone() for key, value in moments.items()}

    def _flattened(self, state: dict[str, Any]) -> dict[str, Any]:
        (group,) = state["param_groups"]
        ids = list(group["params"])
        if len(ids) == 1:
            return state
        if len(ids) != len(self._sizes):
            raise ValueError(
                f"the optimizer state holds {len(ids)} parameters, this network has "
                f"{len(self._sizes)}"
            )
        per_param = [state["state"].get(i) for i in ids]
        flat_state: dict[int, dict[str, Any]] = {}
        if any(s is not None for s in per_param):
            if any(s is None for s in per_param):
                raise ValueError("the optimizer state has moments for some parameters only")
            flat_state[0] = {
                "step": per_param[0]["step"].clone(),
                **{
                    key: torch.cat([s[key].reshape(-1) for s in per_param])
                    for key in ("exp_avg", "exp_avg_sq")
                },
            }
        return {"state": flat_state, "param_groups": [{**group, "params": [0]}]}


def clip_coefficient(norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """What ``clip_grad_norm_`` scales a gradient of ``norm`` by: at most 1 (``inf``: 1)."""
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)


def adam_update(
    flat: torch.Tensor,
    grad: torch.Tensor,
    moments: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    hyper: torch.Tensor,
    apply: torch.Tensor,
) -> None:
    """One Adam step of ``flat`` in plain tensor operations, as ``torch.optim.Adam`` computes it
    (no weight decay, no amsgrad), for code that ``torch.compile`` generates (the fused kernel
    :meth:`FlatAdam.step` calls cannot be traced). Parameters and :meth:`FlatAdam.moments` change
    in place, and only where the bool tensor ``apply`` holds.

    Args:
        hyper: :meth:`FlatAdam.hyperparameters`.
    """
    step, exp_avg, exp_avg_sq = moments
    lr, beta1, beta2, eps = hyper.unbind()
    new_step = step + 1
    new_avg = exp_avg + (grad - exp_avg) * (1 - beta1)
    new_avg_sq = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
    count = new_step.to(torch.float64)  # Adam's bias corrections are float64 numbers
    bias1, bias2 = 1 - beta1**count, 1 - beta2**count
    new_flat = flat - (lr / bias1) * new_avg / (new_avg_sq.sqrt() / bias2.sqrt() + eps)
    for old, new in ((flat, new_flat), (exp_avg, new_avg), (exp_avg_sq, new_avg_sq)):
        old.copy_(torch.where(apply, new, old))
    step.copy_(torch.where(apply, new_step, step))
