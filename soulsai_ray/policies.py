"""The networks of :mod:`soulsai_ray.models` on the acting side: in numpy (no torch) for vector
observations, in torch for images.

Rollout actors and evaluations only run forward passes of one observation (or one per env) with
published weights, a numpy state dict. Doing that in numpy keeps torch out of their processes:
on a game PC a rollout actor then starts about 2 s sooner (torch's import) and holds a few
hundred MB less, which counts each time a frozen game's actor is restarted. Convolutions over
images are much faster in torch, so image policies (:mod:`soulsai_ray.torch_policies`) run the
torch modules themselves; :func:`q_policy` and :func:`actor_critic_policy` pick the kind.

The torch modules stay the reference: :func:`q_layout` and :func:`actor_critic_layout` name the
same state-dict keys and shapes, and the unit tests check every architecture switch against
the torch forward pass.

Order of calls::

    net = q_policy(cfg, obs_spec, num_actions)     # NumpyQNetwork for vectors
    net.load(weights)                              # RuntimeError if they do not fit
    q = net(obs[None])                             # [1, A]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import numpy as np

from soulsai_ray.algo_config import DQNConfig, PPOConfig, torso_problem
from soulsai_ray.observations import ObsSpec

NORMALIZER_CLIP = 10.0
NORMALIZER_EPS = 1e-8
LAYER_NORM_EPS = 1e-5
MOST_NEGATIVE = float(np.finfo(np.float32).min)
"""The logit of an invalid action: probability exactly 0, log-probabilities stay finite."""

Layout = dict[str, tuple[int, ...]]
PolicyT = TypeVar("PolicyT")


def _normalizer_layout(obs_dim: int) -> Layout:
    return {"normalizer.mean": (obs_dim,), "normalizer.var": (obs_dim,), "normalizer.count": ()}


def _mlp_layout(prefix: str, in_dim: int, hidden_sizes: Sequence[int], layer_norm: bool) -> Layout:
    """Keys of :func:`soulsai_ray.models.mlp` (Linear [+ LayerNorm] + activation per layer)."""
    layout: Layout = {}
    index = 0
    for width in hidden_sizes:
        layout[f"{prefix}{index}.weight"] = (width, in_dim)
        layout[f"{prefix}{index}.bias"] = (width,)
        index += 1
        if layer_norm:
            layout[f"{prefix}{index}.weight"] = (width,)
            layout[f"{prefix}{index}.bias"] = (width,)
            index += 1
        index += 1  # the activation
        in_dim = width
    return layout


def q_layout(cfg: DQNConfig, obs_dim: int, num_actions: int) -> Layout:
    """State-dict keys and shapes of :func:`soulsai_ray.models.q_network`."""
    width = cfg.hidden_sizes[-1]
    layout = _normalizer_layout(obs_dim) if cfg.normalize_obs else {}
    layout.update(_mlp_layout("body.", obs_dim, cfg.hidden_sizes, cfg.layer_norm))
    layout.update({"advantage.weight": (num_actions, width), "advantage.bias": (num_actions,)})
    if cfg.dueling:
        layout.update({"value.weight": (1, width), "value.bias": (1,)})
    return layout


def actor_critic_layout(cfg: PPOConfig, obs_dim: int, num_actions: int) -> Layout:
    """State-dict keys and shapes of :class:`soulsai_ray.models.ActorCritic`."""
    width = cfg.hidden_sizes[-1]
    layout = _normalizer_layout(obs_dim) if cfg.normalize_obs else {}
    for name, outputs in (("actor", num_actions), ("critic", 1)):
        layout.update(_mlp_layout(f"{name}.0.", obs_dim, cfg.hidden_sizes, layer_norm=False))
        layout.update({f"{name}.1.weight": (outputs, width), f"{name}.1.bias": (outputs,)})
    return layout


def checked_weights(weights: Mapping[str, np.ndarray], layout: Layout) -> dict[str, np.ndarray]:
    """``weights`` as float arrays, if their keys and shapes are exactly ``layout``'s.

    Raises:
        RuntimeError: keys missing or unexpected, or a shape differs (another algorithm, env
            or network size), as torch's strict ``load_state_dict`` would.
    """
    missing = sorted(set(layout) - set(weights))
    unexpected = sorted(set(weights) - set(layout))
    if missing or unexpected:
        raise RuntimeError(
            f"the weights do not fit the network: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    arrays = {}
    for key, shape in layout.items():
        array = np.asarray(weights[key])
        if array.shape != shape:
            raise RuntimeError(
                f"the weights do not fit the network: {key} has shape {array.shape}, "
                f"the network's is {shape}"
            )
        # the normalizer's statistics are float64, like the torch buffers they come from
        arrays[key] = array.astype(np.float64 if key.startswith("normalizer.") else np.float32)
    return arrays


def _normalize(w: Mapping[str, np.ndarray], obs: np.ndarray) -> np.ndarray:
    """:class:`soulsai_ray.models.ObservationNormalizer`'s forward pass."""
    mean = w["normalizer.mean"].astype(np.float32)
    std = np.sqrt(w["normalizer.var"] + NORMALIZER_EPS).astype(np.float32)
    return np.clip((obs - mean) / std, -NORMALIZER_CLIP, NORMALIZER_CLIP)


def _mlp(
    w: Mapping[str, np.ndarray],
    prefix: str,
    x: np.ndarray,
    depth: int,
    layer_norm: bool,
    activation: str,
) -> np.ndarray:
    index = 0
    for _ in range(depth):
        x = x @ w[f"{prefix}{index}.weight"].T + w[f"{prefix}{index}.bias"]
        index += 1
        if layer_norm:
            mean = x.mean(axis=-1, keepdims=True)
            var = x.var(axis=-1, keepdims=True)
            x = (x - mean) / np.sqrt(var + LAYER_NORM_EPS)
            x = x * w[f"{prefix}{index}.weight"] + w[f"{prefix}{index}.bias"]
            index += 1
        x = np.tanh(x) if activation == "tanh" else np.maximum(x, 0.0)
        index += 1
    return x


class _NumpyNet:
    """Published weights checked against a network's layout."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._w: dict[str, np.ndarray] | None = None

    def load(self, weights: Mapping[str, np.ndarray]) -> None:
        """Installs a numpy state dict (RuntimeError if it does not fit, nothing changed)."""
        self._w = checked_weights(weights, self.layout)

    @property
    def loaded(self) -> bool:
        """Whether weights were installed."""
        return self._w is not None


class NumpyQNetwork(_NumpyNet):
    """:class:`soulsai_ray.models.QNetwork`'s forward pass over published weights."""

    def __init__(self, cfg: DQNConfig, obs_dim: int, num_actions: int) -> None:
        super().__init__(q_layout(cfg, obs_dim, num_actions))
        self.cfg = cfg

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Q-values [B, A] of observations [B, D] (float32)."""
        w = self._weights()
        x = np.asarray(obs, dtype=np.float32)
        if self.cfg.normalize_obs:
            x = _normalize(w, x)
        features = _mlp(w, "body.", x, len(self.cfg.hidden_sizes), self.cfg.layer_norm, "relu")
        advantage = features @ w["advantage.weight"].T + w["advantage.bias"]
        if not self.cfg.dueling:
            return advantage
        state_value = features @ w["value.weight"].T + w["value.bias"]
        return state_value + advantage - advantage.mean(axis=-1, keepdims=True)

    def _weights(self) -> dict[str, np.ndarray]:
        if self._w is None:
            raise RuntimeError("no weights loaded")
        return self._w


class ActorCriticSampling:
    """Sampling from an actor-critic policy whose ``__call__`` gives numpy logits and values."""

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def act(
        self, obs: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples actions for observations [E, ...] among the valid ones (``mask`` [E, A]).

        Returns:
            Actions (int64 [E]), their log-probabilities (float32 [E]) and values (float32 [E]).
        """
        logits, values = self(obs)
        log_policy = log_softmax(masked_logits(logits, mask))
        # Gumbel-max: the argmax of log-probabilities plus Gumbel noise is a sample of the
        # policy. An invalid action's log-probability (about -3.4e38) never wins.
        noise = -np.log(-np.log(rng.random(log_policy.shape)))
        actions = np.argmax(log_policy + noise, axis=-1)
        logprobs = np.take_along_axis(log_policy, actions[:, None], axis=-1)[:, 0]
        return actions.astype(np.int64), logprobs.astype(np.float32), values.astype(np.float32)

    def value(self, obs: np.ndarray) -> np.ndarray:
        """Value estimates (float32 [E]) of observations [E, ...]."""
        return self(obs)[1].astype(np.float32)


class NumpyActorCritic(_NumpyNet, ActorCriticSampling):
    """:class:`soulsai_ray.models.ActorCritic`'s forward pass over published weights, and
    sampling from its policy."""

    def __init__(self, cfg: PPOConfig, obs_dim: int, num_actions: int) -> None:
        super().__init__(actor_critic_layout(cfg, obs_dim, num_actions))
        self.cfg = cfg

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Action logits [B, A] and state values [B] of observations [B, D] (float32).

        Before any weights are installed: a uniform policy and values of 0.
        """
        x = np.asarray(obs, dtype=np.float32)
        if self._w is None:
            zeros = np.zeros((x.shape[0], self.layout["actor.1.bias"][0]), dtype=np.float32)
            return zeros, zeros[:, 0].copy()
        w, cfg = self._w, self.cfg
        if cfg.normalize_obs:
            x = _normalize(w, x)
        depth = len(cfg.hidden_sizes)
        actor = _mlp(w, "actor.0.", x, depth, False, cfg.activation)
        critic = _mlp(w, "critic.0.", x, depth, False, cfg.activation)
        logits = actor @ w["actor.1.weight"].T + w["actor.1.bias"]
        values = critic @ w["critic.1.weight"].T + w["critic.1.bias"]
        return logits, values[:, 0]


class QPolicy(Protocol):
    """A :class:`NumpyQNetwork` or a :class:`soulsai_ray.torch_policies.TorchQNetwork`."""

    @property
    def loaded(self) -> bool: ...

    def load(self, weights: Mapping[str, np.ndarray]) -> None: ...

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...


class ActorCriticPolicy(QPolicy, Protocol):
    """A :class:`NumpyActorCritic` or a :class:`soulsai_ray.torch_policies.TorchActorCritic`."""

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # type: ignore[override]

    def act(
        self, obs: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def value(self, obs: np.ndarray) -> np.ndarray: ...


def q_policy(cfg: DQNConfig, obs_spec: ObsSpec | int, num_actions: int) -> QPolicy:
    """The acting Q-network: numpy for vectors, torch for images (imported only then).

    Raises:
        ValueError: ``cfg.torso`` cannot read these observations.
    """
    return _policy(cfg, obs_spec, num_actions, NumpyQNetwork, "TorchQNetwork")


def actor_critic_policy(
    cfg: PPOConfig, obs_spec: ObsSpec | int, num_actions: int
) -> ActorCriticPolicy:
    """The acting actor-critic: numpy for vectors, torch for images (imported only then).

    Raises:
        ValueError: ``cfg.torso`` cannot read these observations.
    """
    return _policy(cfg, obs_spec, num_actions, NumpyActorCritic, "TorchActorCritic")


def _policy(
    cfg: DQNConfig | PPOConfig,
    obs_spec: ObsSpec | int,
    num_actions: int,
    numpy_policy: Callable[..., PolicyT],
    torch_policy: str,
) -> PolicyT:
    """``numpy_policy`` for vector observations; for images the class named ``torch_policy`` of
    :mod:`soulsai_ray.torch_policies`, which is imported only then.

    Raises:
        ValueError: ``cfg.torso`` cannot read these observations.
    """
    obs = ObsSpec.of(obs_spec)
    problem = torso_problem(cfg.torso, obs)
    if problem is not None:
        raise ValueError(f"algo.torso={cfg.torso}: {problem}")
    if not obs.is_image:
        return numpy_policy(cfg, obs.size, num_actions)
    torch_policies = importlib.import_module("soulsai_ray.torch_policies")
    return getattr(torch_policies, torch_policy)(cfg, obs, num_actions)


def masked_logits(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Logits with invalid actions (``mask`` False) set to float32's most negative value."""
    if mask is None:
        return logits
    return np.where(mask, logits, np.float32(MOST_NEGATIVE))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
