"""Neural networks: DQN's (dueling) Q-network and PPO's actor-critic, both with optional observation
normalization whose statistics travel with the weights."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from soulsai_ray.algo_config import DQNConfig


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    activation: type[nn.Module] = nn.ReLU,
    layer_norm: bool = False,
) -> nn.Sequential:
    """A stack of Linear (+ LayerNorm) + activation layers; its output width is ``hidden_sizes[-1]``."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation())
        in_dim = width
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """Maps observations to one Q-value per action, optionally with a dueling head.

    The dueling head computes ``Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)``.

    Args:
        obs_dim: Observation size D.
        num_actions: Number of discrete actions A.
        hidden_sizes: Widths of the hidden layers.
        dueling: Separate value and advantage streams.
        layer_norm: A LayerNorm after each hidden Linear layer.
        normalize_obs: Put an :class:`ObservationNormalizer` in front (its statistics are
            buffers: they are published and checkpointed with the weights).
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int],
        dueling: bool,
        layer_norm: bool = False,
        normalize_obs: bool = False,
    ) -> None:
        super().__init__()
        self.normalizer: ObservationNormalizer | None = (
            ObservationNormalizer(obs_dim) if normalize_obs else None
        )
        self.body = mlp(obs_dim, hidden_sizes, layer_norm=layer_norm)
        width = hidden_sizes[-1]
        self.dueling = dueling
        self.advantage = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        features = self.body(obs)
        advantage = self.advantage(features)
        if self.value is None:
            return advantage
        return dueling_combine(self.value(features), advantage)

    def heads(self) -> list[nn.Module]:
        """The output layers (the advantage head, and the value head if dueling)."""
        return [self.advantage] + ([self.value] if self.value is not None else [])


def q_network(cfg: DQNConfig, obs_dim: int, num_actions: int) -> QNetwork:
    """The Q-network ``cfg`` describes: learner, rollout actors and evaluation build it here."""
    return QNetwork(
        obs_dim, num_actions, cfg.hidden_sizes, cfg.dueling, cfg.layer_norm, cfg.normalize_obs
    )


@torch.no_grad()
def shrink_and_perturb(net: QNetwork, fresh: QNetwork, keep: float) -> None:
    """Resets ``net`` towards the freshly initialized ``fresh`` (same architecture).

    Body parameters become ``keep * theta + (1 - keep) * theta_fresh`` (``keep=0`` is a full
    reset); the output heads are always re-initialized. The observation normalizer's statistics
    describe the data, not the learning, and are kept.
    """
    heads = {id(p) for head in fresh.heads() for p in head.parameters()}
    for param, new in zip(net.parameters(), fresh.parameters(), strict=True):
        if id(new) in heads:
            param.copy_(new)
        else:
            param.mul_(keep).add_(new, alpha=1.0 - keep)


def dueling_combine(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Combines a state value [B, 1] and advantages [B, A] into Q-values [B, A]."""
    return value + advantage - advantage.mean(dim=-1, keepdim=True)


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class ObservationNormalizer(nn.Module):
    """Running mean/std observation normalization.

    The statistics are buffers, so they are part of the state dict and travel with published
    weights and checkpoints. They change only through :meth:`update`, never in :meth:`forward`.

    Args:
        obs_dim: Observation size D.
        clip: Normalized observations are clipped to ``[-clip, clip]``.
        eps: Added to the variance before the square root.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, obs_dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip = clip
        self.eps = eps
        # float64: the statistics accumulate over millions of observations.
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merges a batch of observations [..., D] into the statistics (Chan et al.'s parallel rule)."""
        batch = obs.detach().reshape(-1, self.mean.shape[0]).to(self.mean)
        n = batch.shape[0]
        if n == 0:
            return
        batch_var, batch_mean = torch.var_mean(batch, dim=0, correction=0)
        count = float(self.count)
        total = count + n
        delta = batch_mean - self.mean
        self.mean.add_(delta, alpha=n / total)
        # var = (M2_old + M2_batch + delta^2 * count * n / total) / total, in place
        self.var.mul_(count / total).add_(batch_var, alpha=n / total)
        self.var.add_(delta.square_(), alpha=count * n / total**2)
        self.count.fill_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` in ``obs``'s dtype."""
        mean = self.mean.to(obs.dtype)
        std = torch.sqrt(self.var + self.eps).to(obs.dtype)
        return torch.clamp((obs - mean) / std, -self.clip, self.clip)


class ActorCritic(nn.Module):
    """Separate policy and value MLPs over (optionally normalized) observations.

    Initialized like CleanRL's PPO: orthogonal weights (gain sqrt(2) in hidden layers, 0.01 for
    the policy head, 1 for the value head) and zero biases.

    Args:
        obs_dim: Observation size D.
        num_actions: Number of discrete actions A.
        hidden_sizes: Widths of the hidden layers of each network.
        activation: ``"tanh"`` or ``"relu"``.
        normalize_obs: Put an :class:`ObservationNormalizer` in front of both networks.
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        normalize_obs: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {list(ACTIVATIONS)}")
        act = ACTIVATIONS[activation]
        width = hidden_sizes[-1]
        self.normalizer: ObservationNormalizer | None = (
            ObservationNormalizer(obs_dim) if normalize_obs else None
        )
        self.actor = nn.Sequential(
            mlp(obs_dim, hidden_sizes, act), _orthogonal(nn.Linear(width, num_actions), 0.01)
        )
        self.critic = nn.Sequential(
            mlp(obs_dim, hidden_sizes, act), _orthogonal(nn.Linear(width, 1), 1.0)
        )
        for body in (self.actor[0], self.critic[0]):
            for layer in body:
                if isinstance(layer, nn.Linear):
                    _orthogonal(layer, math.sqrt(2.0))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits [B, A] and state values [B] of observations [B, D].

        Observations are normalized with the current statistics, which this does not update.
        """
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        return self.actor(obs), self.critic(obs).squeeze(-1)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def state_dict_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """A copy of ``module``'s parameters and buffers as numpy arrays (for the object store)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
