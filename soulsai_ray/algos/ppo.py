"""PPO: rollout batches, GAE, the clipped loss and the learner's update (plain torch, no Ray).

Order of calls::

    actions, logprobs, values = act(learner.model, obs, masks)   # acting side, per step
    last_values = value(learner.model, next_obs)                 # after the last step
    metrics = learner.update([batch, ...], progress)              # one iteration
    weights = learner.policy_weights()                            # numpy state dict to publish
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from soulsai_ray.algos.dqn import make_adam
from soulsai_ray.config import PPOConfig
from soulsai_ray.models import ActorCritic, state_dict_to_numpy


@dataclass
class RolloutBatch:
    """One actor's rollout of ``n_steps x num_envs``, as time-major numpy arrays."""

    obs: np.ndarray
    """float32 [T, E, D]: the observation each action was taken in."""
    actions: np.ndarray
    """int64 [T, E]."""
    logprobs: np.ndarray
    """float32 [T, E]: log-probability of the action under the acting policy."""
    values: np.ndarray
    """float32 [T, E]: value estimate of ``obs``."""
    rewards: np.ndarray
    """float32 [T, E]."""
    terminated: np.ndarray
    """bool [T, E]: the env ended the episode (no bootstrap)."""
    truncated: np.ndarray
    """bool [T, E]: a time limit cut the episode (bootstrap from ``final_values``)."""
    final_values: np.ndarray
    """float32 [T, E]: value of the true next observation where truncated, else 0."""
    last_values: np.ndarray
    """float32 [E]: value of the observation after the last step (bootstrap for open episodes)."""
    masks: np.ndarray
    """bool [T, E, A]: valid actions in ``obs`` (all True when the env gives none)."""
    version: int
    """Policy version that produced the batch."""

    def __len__(self) -> int:
        return int(self.actions.size)

    def validate(self, obs_dim: int, num_actions: int) -> str | None:
        """A human-readable description of the first problem found, or None if the batch is sound.

        Checks array types, dtypes and shapes, that actions are in range and valid under
        ``masks``, that every step has a valid action, and that all floats are finite.
        """
        if not isinstance(self.obs, np.ndarray) or self.obs.ndim != 3:
            return (
                f"obs must be a [T, E, D] array, got {getattr(self.obs, 'shape', type(self.obs))}"
            )
        steps, envs = self.obs.shape[:2]
        if steps == 0 or envs == 0:
            return f"empty batch of shape {self.obs.shape}"
        expected = {
            "obs": (np.float32, (steps, envs, obs_dim)),
            "actions": (np.int64, (steps, envs)),
            "logprobs": (np.float32, (steps, envs)),
            "values": (np.float32, (steps, envs)),
            "rewards": (np.float32, (steps, envs)),
            "terminated": (np.bool_, (steps, envs)),
            "truncated": (np.bool_, (steps, envs)),
            "final_values": (np.float32, (steps, envs)),
            "last_values": (np.float32, (envs,)),
            "masks": (np.bool_, (steps, envs, num_actions)),
        }
        for name, (dtype, shape) in expected.items():
            array = getattr(self, name)
            if not isinstance(array, np.ndarray):
                return f"{name} must be a numpy array, got {type(array).__name__}"
            if array.dtype != dtype or array.shape != shape:
                return (
                    f"{name} must be {np.dtype(dtype)} {list(shape)}, "
                    f"got {array.dtype} {list(array.shape)}"
                )
            if dtype is np.float32 and not np.isfinite(array).all():
                return f"{name} has non-finite values"
        if self.actions.min() < 0 or self.actions.max() >= num_actions:
            return f"actions outside [0, {num_actions})"
        if not self.masks.any(axis=-1).all():
            return "some steps have no valid action"
        if not np.take_along_axis(self.masks, self.actions[..., None], axis=-1).all():
            return "some actions are invalid under masks"
        return None


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(lambda) advantages and returns, float32 [T, E] each.

    The value of the next observation at step t is 0 if ``terminated[t]``, ``final_values[t]``
    if ``truncated[t]``, else ``values[t + 1]`` (``last_values`` at the last step). Advantages do
    not propagate back across a step that ended an episode either way:
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``. Returns are ``advantages + values``.
    """
    values = values.astype(np.float64)
    next_values = np.concatenate([values[1:], np.asarray(last_values, np.float64)[None]])
    next_values = np.where(truncated, final_values, next_values)
    next_values = np.where(terminated, 0.0, next_values)
    deltas = rewards + gamma * next_values - values
    carry = (1.0 - (terminated | truncated)) * gamma * lam
    advantages = np.zeros_like(deltas)
    running = np.zeros_like(deltas[0])
    for t in reversed(range(len(deltas))):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with invalid actions (``mask`` False) set to the dtype's most negative finite value.

    Invalid actions then have probability exactly 0 and are never sampled, while log-probs and
    the entropy stay finite.
    """
    if mask is None:
        return logits
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min)


def _log_policy(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.log_softmax(masked_logits(logits, mask), dim=-1)


def ppo_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    masks: torch.Tensor | None,
    clip_coef: float,
    clip_value_loss: bool,
    ent_coef: float,
    vf_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped-surrogate PPO loss ``policy_loss - ent_coef * entropy + vf_coef * value_loss``.

    Args:
        logits: [B, A] current policy logits (masked here with ``masks``).
        values: [B] current value estimates.
        actions: [B] taken actions.
        old_logprobs: [B] log-probabilities of ``actions`` under the acting policy.
        advantages: [B] advantages, already normalized if desired.
        returns: [B] value targets.
        old_values: [B] value estimates of the acting policy (for the clipped value loss).
        masks: [B, A] valid actions, or None.
        clip_coef: Policy ratio (and value) clip range.
        clip_value_loss: Use ``max`` of the unclipped and clipped squared value errors.
        ent_coef: Entropy bonus weight.
        vf_coef: Value loss weight.

    Returns:
        The scalar loss and metrics ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``
        (mean of ``(ratio - 1) - log ratio``) and ``clip_fraction`` (share of
        ``|ratio - 1| > clip_coef``).
    """
    log_policy = _log_policy(logits, masks)
    new_logprobs = log_policy.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    log_ratio = new_logprobs - old_logprobs
    ratio = log_ratio.exp()
    policy_loss = torch.max(
        -advantages * ratio, -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    ).mean()
    value_error = (values - returns).square()
    if clip_value_loss:
        clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        value_error = torch.max(value_error, (clipped - returns).square())
    value_loss = 0.5 * value_error.mean()
    entropy = -(log_policy.exp() * log_policy).sum(dim=-1).mean()
    loss = policy_loss - ent_coef * entropy + vf_coef * value_loss
    with torch.no_grad():
        metrics = {
            "policy_loss": float(policy_loss),
            "value_loss": float(value_loss),
            "entropy": float(entropy),
            "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
            "clip_fraction": float(((ratio - 1.0).abs() > clip_coef).float().mean()),
        }
    return loss, metrics


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """``1 - var(returns - values) / var(returns)``; nan when the returns have no variance."""
    var_returns = float(np.var(returns))
    if var_returns == 0.0:
        return float("nan")
    return 1.0 - float(np.var(returns - values)) / var_returns


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def act(
    model: ActorCritic,
    obs: np.ndarray,
    mask: np.ndarray | None,
    rng: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples actions for observations [E, D] from the policy, respecting ``mask`` [E, A].

    Returns:
        Actions (int64 [E]), their log-probabilities (float32 [E]) and the values (float32 [E]).
    """
    device = _model_device(model)
    with torch.inference_mode():
        logits, values = model(torch.as_tensor(obs, dtype=torch.float32, device=device))
        mask_t = None if mask is None else torch.as_tensor(mask, dtype=torch.bool, device=device)
        log_policy = _log_policy(logits, mask_t)
        actions = torch.multinomial(log_policy.exp(), 1, generator=rng)
        logprobs = log_policy.gather(-1, actions).squeeze(-1)
    return (
        actions.squeeze(-1).cpu().numpy().astype(np.int64),
        logprobs.cpu().numpy().astype(np.float32),
        values.cpu().numpy().astype(np.float32),
    )


def value(model: ActorCritic, obs: np.ndarray) -> np.ndarray:
    """Value estimates (float32 [E]) of observations [E, D]."""
    with torch.inference_mode():
        _, values = model(torch.as_tensor(obs, dtype=torch.float32, device=_model_device(model)))
    return values.cpu().numpy().astype(np.float32)


class _Samples(NamedTuple):
    """One iteration's flattened transitions, on the learner's device."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    masks: torch.Tensor

    def select(self, index: torch.Tensor) -> _Samples:
        return _Samples(*(field[index] for field in self))


class PPOLearner:
    """Actor-critic, optimizer and the PPO update over one iteration's rollout batches.

    Args:
        cfg: PPO settings.
        obs_dim: Observation size.
        num_actions: Number of discrete actions.
        device: Torch device of the model and the update.
        seed: Seeds the network initialization and the minibatch shuffling.
    """

    def __init__(
        self, cfg: PPOConfig, obs_dim: int, num_actions: int, device: str = "cpu", seed: int = 0
    ) -> None:
        self.cfg = cfg
        self.obs_dim = obs_dim
        self.num_actions = num_actions
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ActorCritic(
                obs_dim, num_actions, cfg.hidden_sizes, cfg.activation, cfg.normalize_obs
            )
        self.model = model.to(self.device)
        self.optimizer = make_adam(self.model.parameters(), cfg.lr)
        self.rng = np.random.default_rng(seed)
        self.updates = 0

    def update(self, batches: Sequence[RolloutBatch], progress: float = 0.0) -> dict[str, float]:
        """One PPO iteration: GAE, then ``epochs`` passes of shuffled minibatch steps.

        The observation normalizer is updated with this iteration's observations only after
        the epochs. The stored log-probs and values were computed under the old statistics,
        so training under them keeps the first minibatch's ratio exactly 1; the published
        weights then carry the new statistics to the next rollout.

        Args:
            batches: Rollouts of the current policy (at least one).
            progress: Fraction of training done, in [0, 1]; with ``anneal_lr`` the learning
                rate is ``lr * (1 - progress)``.

        Returns:
            Sample-weighted means over all gradient steps of ``policy_loss``, ``value_loss``,
            ``entropy``, ``approx_kl`` and ``clip_fraction``; plus ``explained_variance`` of the
            acting values, ``lr``, ``epochs_done`` and ``samples`` (transitions in the batches).

        Raises:
            ValueError: if there are no batches or one fails :meth:`RolloutBatch.validate`.
        """
        samples = self._prepare(batches)
        lr = self._set_lr(progress)
        metrics, epochs_done = self._run_epochs(samples)
        if self.model.normalizer is not None:
            self.model.normalizer.update(samples.obs)
        self.updates += 1
        return {
            **metrics,
            "explained_variance": explained_variance(
                samples.values.cpu().numpy(), samples.returns.cpu().numpy()
            ),
            "lr": lr,
            "epochs_done": float(epochs_done),
            "samples": float(len(samples.obs)),
        }

    def policy_weights(self) -> dict[str, np.ndarray]:
        """The actor-critic's weights and normalizer statistics as numpy arrays."""
        return state_dict_to_numpy(self.model)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (no shared tensors) of everything needed to continue training exactly."""
        return copy.deepcopy(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "updates": self.updates,
                "rng": self.rng.bit_generator.state,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` output."""
        state = copy.deepcopy(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]

    def _prepare(self, batches: Sequence[RolloutBatch]) -> _Samples:
        if not batches:
            raise ValueError("PPO update needs at least one rollout batch")
        parts: list[tuple[np.ndarray, ...]] = []
        for i, b in enumerate(batches):
            problem = b.validate(self.obs_dim, self.num_actions)
            if problem is not None:
                raise ValueError(f"rollout batch {i}: {problem}")
            advantages, returns = compute_gae(
                b.rewards,
                b.values,
                b.terminated,
                b.truncated,
                b.final_values,
                b.last_values,
                self.cfg.gamma,
                self.cfg.gae_lambda,
            )
            fields = (b.obs, b.actions, b.logprobs, b.values, advantages, returns, b.masks)
            parts.append(tuple(f.reshape(len(b), *f.shape[2:]) for f in fields))
        return _Samples(
            *(
                torch.as_tensor(np.concatenate(column), device=self.device)
                for column in zip(*parts, strict=True)
            )
        )

    def _set_lr(self, progress: float) -> float:
        lr = self.cfg.lr
        if self.cfg.anneal_lr:
            lr *= 1.0 - min(max(progress, 0.0), 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _run_epochs(self, samples: _Samples) -> tuple[dict[str, float], int]:
        """Shuffled minibatch steps, stopping after an epoch whose mean KL exceeds target_kl."""
        n, size = len(samples.obs), self.cfg.minibatch_size
        totals: dict[str, float] = {}
        epochs_done = 0
        for _ in range(self.cfg.epochs):
            order = torch.as_tensor(self.rng.permutation(n), device=self.device)
            epoch_kl = 0.0
            for start in range(0, n, size):
                index = order[start : start + size]
                metrics = self._step(samples.select(index))
                for key, val in metrics.items():
                    totals[key] = totals.get(key, 0.0) + val * len(index)
                epoch_kl += metrics["approx_kl"] * len(index)
            epochs_done += 1
            if self.cfg.target_kl is not None and epoch_kl / n > self.cfg.target_kl:
                break
        steps = n * epochs_done
        return {key: total / steps for key, total in totals.items()}, epochs_done

    def _step(self, mb: _Samples) -> dict[str, float]:
        advantages = mb.advantages
        if self.cfg.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        logits, values = self.model(mb.obs)
        loss, metrics = ppo_loss(
            logits,
            values,
            mb.actions,
            mb.logprobs,
            advantages,
            mb.returns,
            mb.values,
            mb.masks,
            self.cfg.clip_coef,
            self.cfg.clip_value_loss,
            self.cfg.ent_coef,
            self.cfg.vf_coef,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        return metrics
