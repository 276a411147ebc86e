"""Acting with the torch networks of :mod:`soulsai_ray.models`: image policies of rollout actors
and evaluations (vectors act in numpy, :mod:`soulsai_ray.policies`).

They take and return numpy arrays like the numpy policies; uint8 images go to the network as
they are (it scales them). Build them through :func:`soulsai_ray.policies.q_policy` and
:func:`soulsai_ray.policies.actor_critic_policy`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.models import actor_critic, q_network
from soulsai_ray.observations import ObsSpec
from soulsai_ray.policies import ActorCriticSampling, checked_weights


class _TorchNet:
    """A torch module in inference mode and the published weights it holds."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval().requires_grad_(False)
        self.layout = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        self._loaded = False

    def load(self, weights: Mapping[str, np.ndarray]) -> None:
        """Installs a numpy state dict (RuntimeError if it does not fit, nothing changed)."""
        arrays = checked_weights(weights, self.layout)
        self.module.load_state_dict({key: torch.from_numpy(a) for key, a in arrays.items()})
        self._loaded = True

    @property
    def loaded(self) -> bool:
        """Whether weights were installed."""
        return self._loaded

    def _forward(self, obs: np.ndarray) -> torch.Tensor | tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return self.module(torch.as_tensor(np.asarray(obs)))


class TorchQNetwork(_TorchNet):
    """:class:`soulsai_ray.models.QNetwork` acting on images."""

    def __init__(self, cfg: DQNConfig, obs_spec: ObsSpec, num_actions: int) -> None:
        super().__init__(q_network(cfg, obs_spec, num_actions))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Q-values [B, A] (float32) of observations [B, H, W, C]."""
        if not self._loaded:
            raise RuntimeError("no weights loaded")
        return self._forward(obs).numpy()


class TorchActorCritic(_TorchNet, ActorCriticSampling):
    """:class:`soulsai_ray.models.ImageActorCritic` acting on images, and sampling from it."""

    def __init__(self, cfg: PPOConfig, obs_spec: ObsSpec, num_actions: int) -> None:
        super().__init__(actor_critic(cfg, obs_spec, num_actions))
        self.num_actions = num_actions

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Action logits [B, A] and state values [B] of observations [B, H, W, C].

        Before any weights are installed: a uniform policy and values of 0.
        """
        if not self._loaded:
            zeros = np.zeros((len(obs), self.num_actions), dtype=np.float32)
            return zeros, zeros[:, 0].copy()
        logits, values = self._forward(obs)
        return logits.numpy(), values.numpy()
