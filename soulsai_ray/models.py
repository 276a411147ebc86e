"""Neural networks: DQN's (dueling) Q-network and PPO's actor-critic, both with optional observation
normalization whose statistics travel with the weights.

Image observations (uint8 [B, H, W, C]) arrive as they are stored; the networks turn them into
floats scaled by ``1 / high`` on their own device and read them with the torso ``algo.torso``
names (:mod:`soulsai_ray.torsos`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from soulsai_ray.algo_config import DQNConfig, PPOConfig, torso_problem
from soulsai_ray.observations import ObsSpec
from soulsai_ray.torsos import conv_torso


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


def observation_features(
    obs: torch.Tensor,
    spec: ObsSpec,
    normalizer: ObservationNormalizer | None,
    conv: nn.Module | None,
) -> torch.Tensor:
    """What a network's hidden layers read: vectors through the optional normalizer, images
    converted to float32, scaled by ``1 / high`` and read by the torso's convolutions (or
    flattened, for ``mlp``)."""
    if not spec.is_image:
        return obs if normalizer is None else normalizer(obs)
    images = obs.to(torch.float32) * (1.0 / spec.high)
    return images.flatten(1) if conv is None else conv(images)


IMAGES_ARE_NOT_NORMALIZED = (
    "normalize_obs works on vector observations; images are scaled by 1/high instead"
)


def _normalizer_for(obs: ObsSpec, normalize_obs: bool) -> ObservationNormalizer | None:
    if not normalize_obs:
        return None
    if obs.is_image:
        raise ValueError(IMAGES_ARE_NOT_NORMALIZED)
    return ObservationNormalizer(obs.size)


class QNetwork(nn.Module):
    """Maps observations to one Q-value per action, optionally with a dueling head.

    The dueling head computes ``Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)``.

    Args:
        obs_spec: What an observation is (an int: a float32 vector of that size).
        num_actions: Number of discrete actions A.
        hidden_sizes: Widths of the hidden layers (after the torso's convolutions, if any).
        dueling: Separate value and advantage streams.
        layer_norm: A LayerNorm after each hidden Linear layer.
        normalize_obs: Put an :class:`ObservationNormalizer` in front (its statistics are
            buffers: they are published and checkpointed with the weights); vectors only.
        torso: ``mlp`` or a CNN of :mod:`soulsai_ray.torsos` (``nature_cnn``, ...).

    Raises:
        ValueError: the torso or the normalizer cannot read these observations.
    """

    def __init__(
        self,
        obs_spec: ObsSpec | int,
        num_actions: int,
        hidden_sizes: Sequence[int],
        dueling: bool,
        layer_norm: bool = False,
        normalize_obs: bool = False,
        torso: str = "mlp",
    ) -> None:
        super().__init__()
        self.obs_spec = obs = ObsSpec.of(obs_spec)
        self.normalizer = _normalizer_for(obs, normalize_obs)
        self.conv, features = conv_torso(torso, obs)
        self.body = mlp(features, hidden_sizes, layer_norm=layer_norm)
        width = hidden_sizes[-1]
        self.dueling = dueling
        self.advantage = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.body(observation_features(obs, self.obs_spec, self.normalizer, self.conv))
        advantage = self.advantage(features)
        if self.value is None:
            return advantage
        return dueling_combine(self.value(features), advantage)

    def heads(self) -> list[nn.Module]:
        """The output layers (the advantage head, and the value head if dueling)."""
        return [self.advantage] + ([self.value] if self.value is not None else [])


def q_network(cfg: DQNConfig, obs_spec: ObsSpec | int, num_actions: int) -> QNetwork:
    """The Q-network ``cfg`` describes: learner, rollout actors and evaluation build it here."""
    return QNetwork(
        obs_spec,
        num_actions,
        cfg.hidden_sizes,
        cfg.dueling,
        cfg.layer_norm,
        cfg.normalize_obs,
        cfg.torso,
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
        obs_dim: Observation size D (vectors; images get an :class:`ImageActorCritic`).
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


class ImageActorCritic(nn.Module):
    """Policy and value heads on one shared torso over images: the torso's convolutions, then
    hidden layers, then a linear head each (as CleanRL's Atari PPO).

    Initialized like :class:`ActorCritic`: orthogonal weights (gain sqrt(2) in the torso and
    hidden layers, 0.01 for the policy head, 1 for the value head), zero biases.

    Args:
        obs_spec: A uint8 image spec.
        num_actions: Number of discrete actions A.
        hidden_sizes: Widths of the shared hidden layers.
        activation: ``"tanh"`` or ``"relu"`` (of the hidden layers; the convolutions use ReLU).
        torso: ``mlp`` (flattened pixels) or a CNN of :mod:`soulsai_ray.torsos`.
    """

    normalizer = None
    """Images are scaled by ``1 / high``, never normalized by running statistics."""

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        hidden_sizes: Sequence[int],
        activation: str = "relu",
        torso: str = "nature_cnn",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {list(ACTIVATIONS)}")
        if not obs_spec.is_image:
            raise ValueError(f"ImageActorCritic needs images, got {obs_spec.describe()}")
        self.obs_spec = obs_spec
        self.conv, features = conv_torso(torso, obs_spec)
        self.body = mlp(features, hidden_sizes, ACTIVATIONS[activation])
        width = hidden_sizes[-1]
        self.actor = _orthogonal(nn.Linear(width, num_actions), 0.01)
        self.critic = _orthogonal(nn.Linear(width, 1), 1.0)
        for module in (*(self.conv.modules() if self.conv else ()), *self.body.modules()):
            if isinstance(module, nn.Linear | nn.Conv2d):
                _orthogonal(module, math.sqrt(2.0))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits [B, A] and state values [B] of images [B, H, W, C]."""
        features = self.body(observation_features(obs, self.obs_spec, None, self.conv))
        return self.actor(features), self.critic(features).squeeze(-1)


def actor_critic(
    cfg: PPOConfig, obs_spec: ObsSpec | int, num_actions: int
) -> ActorCritic | ImageActorCritic:
    """The actor-critic ``cfg`` describes for these observations: separate MLPs over vectors
    (``algo.torso=mlp``), a shared torso over images. Learner and rollout actors build it here.

    Raises:
        ValueError: the torso or the normalizer cannot read these observations.
    """
    obs = ObsSpec.of(obs_spec)
    if obs.is_image:
        if cfg.normalize_obs:
            raise ValueError(IMAGES_ARE_NOT_NORMALIZED)
        return ImageActorCritic(obs, num_actions, cfg.hidden_sizes, cfg.activation, cfg.torso)
    problem = torso_problem(cfg.torso, obs)
    if problem is not None:
        raise ValueError(problem)
    return ActorCritic(obs.size, num_actions, cfg.hidden_sizes, cfg.activation, cfg.normalize_obs)


def _orthogonal(layer: nn.Linear | nn.Conv2d, gain: float) -> nn.Linear | nn.Conv2d:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def state_dict_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """A copy of ``module``'s parameters and buffers as numpy arrays (for the object store)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
