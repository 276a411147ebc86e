"""DQN: targets, loss and the learner's update step (plain torch, no Ray).

Order of calls for a learner::

    learner = DQNLearner(cfg, obs_spec, num_actions)
    result = learner.update(sampled_batch)        # one gradient step (and a reset on schedule)
    buffer.update_priorities(result.indices, result.td_errors)
    weights = learner.policy_weights()            # numpy state dict to publish
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.compiled_step import BatchTensors, CompiledUpdate, StepOutcome
from soulsai_ray.algos.guard import NonFiniteGuard, raise_if_not_finite
from soulsai_ray.algos.optim import FlatAdam
from soulsai_ray.models import q_network, shrink_and_perturb, state_dict_to_numpy
from soulsai_ray.observations import ObsSpec
from soulsai_ray.replay import SampledBatch

NEG_INF = torch.finfo(torch.float32).min

logger = logging.getLogger(__name__)


def masked_argmax(q_values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Index of the largest Q-value among valid actions ([B, A] -> [B])."""
    if mask is not None:
        q_values = q_values.masked_fill(~mask, NEG_INF)
    return q_values.argmax(dim=-1)


def td_targets(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    next_masks: torch.Tensor | None,
    double: bool,
) -> torch.Tensor:
    """n-step TD targets ``r + discount * Q_target(s', a*)``.

    Args:
        rewards: [B] discounted n-step reward sums.
        discounts: [B] ``gamma ** n`` for bootstrapping, 0 where the episode terminated.
        next_q_online: [B, A] online-network Q-values at the bootstrap observation.
        next_q_target: [B, A] target-network Q-values at the bootstrap observation.
        next_masks: [B, A] valid actions at the bootstrap observation, or None.
        double: pick ``a*`` with the online net (double DQN) instead of the target net.

    Returns:
        [B] targets (no gradient flows through them).
    """
    chooser = next_q_online if double else next_q_target
    best = masked_argmax(chooser, next_masks)
    next_value = next_q_target.gather(1, best.unsqueeze(1)).squeeze(1)
    return (rewards + discounts * next_value).detach()


def dqn_loss(
    q_values: torch.Tensor,
    actions: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    huber_delta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Importance-weighted Huber loss on the taken actions' Q-values.

    Returns:
        The scalar loss, the per-sample TD errors [B] and the mean of the taken actions'
        Q-values (both detached).
    """
    chosen = q_values.gather(1, actions.unsqueeze(1)).squeeze(1)
    td_errors = targets - chosen
    per_sample = nn.functional.huber_loss(chosen, targets, reduction="none", delta=huber_delta)
    loss = (weights * per_sample).mean()
    return loss, td_errors.detach(), chosen.detach().mean()


@dataclass
class UpdateResult:
    """What one gradient step produced."""

    indices: np.ndarray
    td_errors: np.ndarray
    loss: float
    q_mean: float
    grad_norm: float
    rolled_back: bool = False
    """The loss or gradient was not finite: the learner returned to its last good state (the
    numbers above are then NaN)."""


class DQNLearner:
    """Online and target Q-networks, optimizer and the update step."""

    def __init__(
        self,
        cfg: DQNConfig,
        obs_spec: ObsSpec | int,
        num_actions: int,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        torch.manual_seed(seed)
        self.cfg = cfg
        self.seed = seed
        self.shape = (ObsSpec.of(obs_spec), num_actions)
        self.device = torch.device(device)
        self.q_net = q_network(cfg, *self.shape).to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = FlatAdam(self.q_net, cfg.lr)
        self._max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        self.compiled_update = None
        """The update step as one compiled graph (``cfg.compile``), or None: eager."""
        if cfg.compile:
            self.compiled_update = CompiledUpdate(
                self.q_net,
                self.target_net,
                self.optimizer,
                self._bootstrap,
                self._loss,
                cfg.double,
                self._max_norm,
            )
        self.updates = 0
        self.guard = NonFiniteGuard(self.state_dict, self.load_state_dict)
        """Rolls back to the weights of the last publish when an update meets a NaN or inf."""

    def per_beta(self) -> float:
        """Importance-sampling exponent, annealed linearly to 1."""
        fraction = min(self.updates / self.cfg.per_beta_updates, 1.0)
        return self.cfg.per_beta_start + fraction * (1.0 - self.cfg.per_beta_start)

    @property
    def nan_rollbacks(self) -> int:
        """Updates and publishes rolled back so far because a number became NaN or inf."""
        return self.guard.rollbacks

    def update(self, sampled: SampledBatch) -> UpdateResult:
        """One gradient step on ``sampled``; updates the target net on schedule.

        A non-finite loss or gradient rolls the learner back to its last good state
        (:meth:`checkpoint_good_state`) instead; the result says so (``rolled_back``).
        """
        result = self.guard.run(lambda: self._step(sampled))
        if result is None:
            nan = np.full(len(sampled.indices), np.nan, dtype=np.float32)
            return UpdateResult(sampled.indices, nan, math.nan, math.nan, math.nan, True)
        return result

    def _step(self, sampled: SampledBatch) -> UpdateResult:
        batch = self._batch_tensors(sampled)
        if self.q_net.normalizer is not None:
            self.q_net.normalizer.update(batch.obs)
        outcome = None
        if self.compiled_update is not None:
            outcome = self.compiled_update(batch)
            if outcome is None:  # compiling failed (logged): eager from now on
                self.compiled_update = None
        eager = outcome is None
        if eager:
            outcome = self._eager_gradient(batch)
        loss_value, grad_norm = float(outcome.loss), float(outcome.grad_norm)
        raise_if_not_finite(loss_value, grad_norm)  # a compiled step then changed nothing
        if eager:
            self.optimizer.step()
        self.updates += 1
        if self.updates % self.cfg.target_update_every == 0:
            self._update_target()
        every = self.cfg.reset_every_updates
        if every is not None and self.updates % every == 0:
            self.reset_network()
        return UpdateResult(
            indices=sampled.indices,
            td_errors=outcome.td_errors.cpu().numpy(),
            loss=loss_value,
            q_mean=float(outcome.q_mean),
            grad_norm=grad_norm,
        )

    def _eager_gradient(self, batch: BatchTensors) -> StepOutcome:
        """Forward, loss, backward and clipping; the Adam step is the caller's."""
        q_values = self.q_net(batch.obs)
        with torch.no_grad():  # the backward pass then runs over this batch only
            next_target = self.target_net(batch.next_obs)
            next_online = self.q_net(batch.next_obs) if self.cfg.double else None
            targets = self._bootstrap(next_online, next_target, batch)
        loss, (td_errors, q_mean) = self._loss(q_values, targets, batch)
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = self.optimizer.clip_grad_norm(self._max_norm)
        return StepOutcome(loss.detach(), grad_norm, td_errors, q_mean)

    def _bootstrap(
        self, next_online: torch.Tensor | None, next_target: torch.Tensor, batch: BatchTensors
    ) -> torch.Tensor:
        chooser = next_target if next_online is None else next_online
        return td_targets(
            batch.rewards, batch.discounts, chooser, next_target, batch.next_masks, self.cfg.double
        )

    def _loss(
        self, q_values: torch.Tensor, targets: torch.Tensor, batch: BatchTensors
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        loss, td_errors, q_mean = dqn_loss(
            q_values, batch.actions, targets, batch.weights, self.cfg.huber_delta
        )
        return loss, (td_errors, q_mean)

    def _batch_tensors(self, sampled: SampledBatch) -> BatchTensors:
        b = sampled.batch
        as_tensor = self._tensor
        # observations keep their dtype on the way: images travel as uint8, the net scales them
        return BatchTensors(
            obs=as_tensor(b.obs, None),
            actions=as_tensor(b.actions, torch.int64),
            rewards=as_tensor(b.rewards),
            next_obs=as_tensor(b.next_obs, None),
            discounts=as_tensor(b.discounts),
            weights=as_tensor(sampled.weights),
            next_masks=as_tensor(b.next_masks, torch.bool),
        )

    @property
    def resets(self) -> int:
        """Resets of the Q-network so far (they follow from the update count)."""
        return self.cfg.resets_at(self.updates)

    def reset_network(self) -> None:
        """Re-initializes the Q-network's heads and shrinks its body towards a fresh
        initialization (``reset_keep``); clears Adam's moments, which belong to the old weights.

        The target network, the normalizer statistics and the replay are kept: targets still
        come from what was learned, and the new weights learn from all data again.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + self.resets)
            fresh = q_network(self.cfg, *self.shape).to(self.device)
        shrink_and_perturb(self.q_net, fresh, self.cfg.reset_keep)
        self.optimizer.reset()
        logger.info(
            "reset the Q-network at update %d (keep %.2f)", self.updates, self.cfg.reset_keep
        )

    def checkpoint_good_state(self) -> bool:
        """Makes the current state the rollback point if all weights are finite (before each
        publish, so that rollout actors never get non-finite weights).

        Returns False (after rolling back to the previous good state) if they are not.
        """
        return self.guard.mark_good(self.q_net.parameters())

    def policy_weights(self) -> dict[str, np.ndarray]:
        """The online network's weights as numpy arrays, for the rollout actors."""
        return state_dict_to_numpy(self.q_net)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (no shared tensors) of everything needed to continue training exactly."""
        return copy.deepcopy(
            {
                "q_net": self.q_net.state_dict(),
                "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "updates": self.updates,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` output."""
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])

    def _tensor(self, array: np.ndarray, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        return torch.as_tensor(array, dtype=dtype, device=self.device)

    def _update_target(self) -> None:
        """Moves the target's weights towards the online net's and copies its normalizer
        statistics: the target is an older copy of the whole function, input scaling included."""
        tau = self.cfg.target_tau
        with torch.no_grad():
            for target, online in zip(
                self.target_net.parameters(), self.q_net.parameters(), strict=True
            ):
                target.mul_(1.0 - tau).add_(online, alpha=tau)
            for target, online in zip(self.target_net.buffers(), self.q_net.buffers(), strict=True):
                target.copy_(online)
