"""PPO's pure pieces: GAE, masked policies, the clipped loss (acting: `soulsai_ray.policies`).

Plain torch and numpy, no Ray; every function here is tested on fixed inputs.
"""

from __future__ import annotations

import numpy as np
import torch


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
