"""What one observation is: a float32 vector or a uint8 image, and nothing else.

Every component that holds or checks observations (samplers, transitions, replay, inbound
checks, networks) builds its arrays from one :class:`ObsSpec`, read from the env's observation
space once (`soulsai_ray.envs.factory.probe_env_spec`). Images stay uint8 from the env to the
learner's device; the networks scale them by ``1 / high`` themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DTYPES = ("float32", "uint8")
"""The observation dtypes: float32 vectors [D] and uint8 images [H, W, C]."""


@dataclass(frozen=True)
class ObsSpec:
    """Shape and dtype of one observation.

    Attributes:
        shape: ``(D,)`` for a float32 vector, ``(H, W, C)`` for a uint8 image (channels last,
            as gymnasium's image spaces and SoulsGym's frames are).
        dtype: ``"float32"`` or ``"uint8"``.
        high: An image's largest pixel value (255, or 1 for MinAtar's 0/1 planes); networks
            scale pixels by ``1 / high`` and inbound checks reject larger values. Vectors: inf
            (their bound is the run's ``env.max_abs_obs``).
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    high: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if self.dtype not in DTYPES:
            raise ValueError(f"observation dtype must be one of {DTYPES}, got {self.dtype!r}")
        if any(n < 1 for n in self.shape):
            raise ValueError(f"observation shape {self.shape} has an empty dimension")
        if self.dtype == "float32" and len(self.shape) != 1:
            raise ValueError(f"float32 observations are vectors [D], got shape {self.shape}")
        if self.dtype == "uint8":
            if len(self.shape) != 3:
                raise ValueError(f"uint8 observations are images [H, W, C], got {self.shape}")
            if not 1 <= self.high <= 255:
                raise ValueError(f"an image's high must be in [1, 255], got {self.high}")

    @classmethod
    def vector(cls, size: int) -> ObsSpec:
        """A float32 vector of ``size`` values."""
        return cls((size,))

    @classmethod
    def image(cls, height: int, width: int, channels: int, high: int = 255) -> ObsSpec:
        """A uint8 image [H, W, C] with pixel values in ``[0, high]``."""
        return cls((height, width, channels), "uint8", float(high))

    @classmethod
    def of(cls, obs: ObsSpec | int) -> ObsSpec:
        """``obs`` itself, or a float32 vector of ``obs`` values (the shorthand of vector envs)."""
        if isinstance(obs, ObsSpec):
            return obs
        if isinstance(obs, bool) or not isinstance(obs, int | np.integer):
            raise TypeError(f"expected an ObsSpec or a vector size, got {obs!r}")
        return cls.vector(int(obs))

    @classmethod
    def of_space(cls, space: Any) -> ObsSpec:
        """The spec of a made env's observation space (a float32 or uint8 ``Box``).

        Raises:
            ValueError: another dtype or shape (``make_env`` converts everything else first).
        """
        dtype = np.dtype(space.dtype)
        if dtype == np.uint8:
            return cls(tuple(space.shape), "uint8", float(np.max(space.high)))
        if dtype == np.float32:
            return cls(tuple(space.shape))
        raise ValueError(f"observation space {space} is neither float32 nor uint8")

    @property
    def is_image(self) -> bool:
        """A uint8 image (True) or a float32 vector (False)."""
        return self.dtype == "uint8"

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype of observations."""
        return np.dtype(self.dtype)

    @property
    def size(self) -> int:
        """Values in one observation."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes one observation takes in memory."""
        return self.size * self.np_dtype.itemsize

    def single_frame(self, stack: int) -> ObsSpec:
        """One of the ``stack`` frames an observation of this spec holds along its last axis
        (``env.frame_stack``); the spec itself when ``stack`` is 1.

        Raises:
            ValueError: the observation is not ``stack`` whole frames (a vector with ``stack``
                > 1, or channels that ``stack`` does not divide).
        """
        if stack == 1:
            return self
        if stack < 1 or not self.is_image or self.shape[-1] % stack:
            raise ValueError(f"a {self.describe()} is not a stack of {stack} image frames")
        height, width, channels = self.shape
        return ObsSpec((height, width, channels // stack), self.dtype, self.high)

    def zeros(self, *leading: int) -> np.ndarray:
        """Zeroed observations of shape ``[*leading, *shape]``."""
        return np.zeros((*leading, *self.shape), self.np_dtype)

    def describe(self) -> str:
        """``"8 float32 values"`` or ``"90x160x3 uint8 image"``, for messages."""
        if self.is_image:
            return "x".join(map(str, self.shape)) + " uint8 image"
        return f"{self.shape[0]} float32 values"
