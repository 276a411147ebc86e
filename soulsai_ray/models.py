"""Neural networks: the (dueling) Q-network used by DQN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn


def mlp(
    in_dim: int, hidden_sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """A stack of Linear + activation layers; its output width is ``hidden_sizes[-1]``."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """Maps observations to one Q-value per action, optionally with a dueling head.

    The dueling head computes ``Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)``.
    """

    def __init__(
        self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int], dueling: bool
    ) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden_sizes)
        width = hidden_sizes[-1]
        self.dueling = dueling
        self.advantage = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.body(obs)
        advantage = self.advantage(features)
        if self.value is None:
            return advantage
        return dueling_combine(self.value(features), advantage)


def dueling_combine(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Combines a state value [B, 1] and advantages [B, A] into Q-values [B, A]."""
    return value + advantage - advantage.mean(dim=-1, keepdim=True)


def state_dict_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """A copy of ``module``'s parameters and buffers as numpy arrays (for the object store)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_numpy_state_dict(module: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Loads numpy arrays (possibly read-only, zero-copy from the object store) into ``module``."""
    module.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in weights.items()})
