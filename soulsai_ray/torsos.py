"""Convolutional torsos for image observations: Nature-CNN, IMPALA-small and MinAtar's CNN.

A torso maps a float batch of images [B, H, W, C] (already scaled to [0, 1]) to flat features
[B, F]; the networks of :mod:`soulsai_ray.models` put their hidden layers and heads on top.
``algo.torso`` picks one (`TORSOS`); ``mlp`` is no convolution at all (vectors as they are,
images flattened).
"""

from __future__ import annotations

import torch
from torch import nn

from soulsai_ray.algo_config import torso_problem
from soulsai_ray.observations import ObsSpec


class NatureCNN(nn.Module):
    """The convolutions of Mnih et al. 2015 (DQN on Atari): 32 8x8/4, 64 4x4/2, 64 3x3/1, ReLUs.

    The paper's 512-unit hidden layer is the network's first ``hidden_sizes`` layer.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features [B, F] of images [B, H, W, C]."""
        return self.layers(images.permute(0, 3, 1, 2))


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(nn.Module):
    """The residual network of Espeholt et al. 2018 (IMPALA, Fig. 3 right) at the paper's
    widths 16, 32, 32: per stage a 3x3 convolution, a 3x3/2 max-pool and two residual blocks.

    Padding keeps every stage valid down to a 1x1 image, so it fits any image shape (MinAtar's
    10x10 frames included); each stage halves height and width (rounding up).
    """

    def __init__(self, channels: int, widths: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        for width in widths:
            stages += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(width),
                _ResidualBlock(width),
            ]
            channels = width
        self.layers = nn.Sequential(*stages, nn.ReLU(), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features [B, F] of images [B, H, W, C]."""
        return self.layers(images.permute(0, 3, 1, 2))


class MinAtarCNN(nn.Module):
    """The convolution of Young & Tian 2019 (MinAtar's DQN): 16 3x3/1 filters and a ReLU.

    The paper's 128-unit hidden layer is the network's first ``hidden_sizes`` layer.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU(), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features [B, F] of images [B, H, W, C]."""
        return self.layers(images.permute(0, 3, 1, 2))


CONV_TORSOS: dict[str, type[nn.Module]] = {
    "nature_cnn": NatureCNN,
    "impala_small": ImpalaCNN,
    "minatar_cnn": MinAtarCNN,
}
"""The convolutional values of ``algo.torso``, each built from the image's channel count."""


def conv_torso(torso: str, obs: ObsSpec) -> tuple[nn.Module | None, int]:
    """The convolutions ``torso`` names for ``obs`` (None for ``mlp``) and the width of the
    flat features they give (for ``mlp``: the observation's size), found by a dry forward pass.

    Raises:
        ValueError: the torso cannot read these observations (`torso_problem`).
    """
    problem = torso_problem(torso, obs)
    if problem is not None:
        raise ValueError(problem)
    if torso == "mlp":
        return None, obs.size
    module = CONV_TORSOS[torso](obs.shape[2])
    with torch.no_grad():
        width = module(torch.zeros(1, *obs.shape)).shape[1]
    return module, int(width)
