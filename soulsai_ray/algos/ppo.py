"""PPO: GAE, the clipped loss and the learner's update (plain torch, no Ray).

Order of calls::

    metrics = learner.update([batch, ...], progress)              # one iteration
    weights = learner.policy_weights()                            # numpy state dict to publish
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from soulsai_ray.algo_config import PPOConfig
from soulsai_ray.algos.guard import NonFiniteGuard, raise_if_not_finite
from soulsai_ray.algos.optim import FlatAdam
from soulsai_ray.algos.ppo_losses import (
    compute_gae,
    explained_variance,
    ppo_loss,
)
from soulsai_ray.models import actor_critic, state_dict_to_numpy
from soulsai_ray.observations import ObsSpec
from soulsai_ray.transitions import RolloutBatch


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
        obs_spec: What an observation is (an int: a float32 vector of that size).
        num_actions: Number of discrete actions.
        device: Torch device of the model and the update.
        seed: Seeds the network initialization and the minibatch shuffling.
    """

    def __init__(
        self,
        cfg: PPOConfig,
        obs_spec: ObsSpec | int,
        num_actions: int,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.obs_spec = ObsSpec.of(obs_spec)
        self.num_actions = num_actions
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = actor_critic(cfg, self.obs_spec, num_actions)
        self.model = model.to(self.device)
        self.optimizer = FlatAdam(self.model, cfg.lr)
        self.rng = np.random.default_rng(seed)
        self.updates = 0
        self.guard = NonFiniteGuard(self.state_dict, self.load_state_dict)
        """Rolls an iteration back to the weights before it when it meets a NaN or inf."""

    @property
    def nan_rollbacks(self) -> int:
        """Iterations rolled back so far because a number became NaN or inf."""
        return self.guard.rollbacks

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
            acting values, ``lr``, ``epochs_done``, ``samples`` (transitions in the batches) and
            ``rolled_back``: 1.0 if a loss or gradient was not finite and the learner went back
            to the weights before this iteration (only ``lr``, ``epochs_done`` (0) and
            ``samples`` are given then).

        Raises:
            ValueError: if there are no batches. The batches' contents are checked where they
                arrive from another process (`soulsai_ray.inbound.check_rollout`).
        """
        samples = self._prepare(batches)
        lr = self._set_lr(progress)
        self.guard.mark_good(self.model.parameters())
        # Never keep (or publish) weights that a NaN/inf step may have touched.
        outcome = self.guard.run(lambda: self._run_epochs(samples))
        if outcome is None:
            return {
                "rolled_back": 1.0,
                "lr": lr,
                "epochs_done": 0.0,
                "samples": float(len(samples.obs)),
            }
        metrics, epochs_done = outcome
        if self.model.normalizer is not None:
            self.model.normalizer.update(samples.obs)
        self.updates += 1
        return {
            **metrics,
            "rolled_back": 0.0,
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
        for b in batches:
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
        raise_if_not_finite(loss.detach(), None)
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            norm = self.optimizer.clip_grad_norm(self.cfg.max_grad_norm)
            raise_if_not_finite(loss.detach(), norm)
        self.optimizer.step()
        return metrics
