"""Playing a trained policy greedily: on a rollout actor's env during training, or from a
checkpoint with ``scripts/evaluate.py`` (plain Python, no Ray).

Order of calls::

    policy = GreedyPolicy(cfg.algo, obs_spec, num_actions)
    policy.load(policy_weights(payload))               # or weights published during training
    result = play_episodes(OwnEnv(lambda: make_env(cfg.env)), policy, episodes=10)
    result.summary()                                   # return_mean, win_rate, ...
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from soulsai_ray.algo_config import AlgoConfig, DQNConfig
from soulsai_ray.config import EnvConfig
from soulsai_ray.envs.factory import env_spec, make_env
from soulsai_ray.envs.wrappers import action_mask_from_info, episode_metrics_from_info
from soulsai_ray.episode_window import summarize_episodes
from soulsai_ray.observations import ObsSpec
from soulsai_ray.policies import ActorCriticPolicy, QPolicy, actor_critic_policy, q_policy
from soulsai_ray.sampling.episodes import EnvRecovery

logger = logging.getLogger(__name__)

Policy = Callable[[np.ndarray, "np.ndarray | None", Mapping[str, Any]], int]
"""``(observation, valid-action mask or None, info) -> action``."""


class GreedyPolicy:
    """The greedy action of a DQN Q-network or the most likely one of a PPO policy, among the
    valid actions.

    Args:
        algo: The algorithm config the weights were trained with (it fixes the network).
        obs_spec: What an observation is (an int: a float32 vector of that size).
        num_actions: Number of discrete actions.
    """

    def __init__(self, algo: AlgoConfig, obs_spec: ObsSpec | int, num_actions: int) -> None:
        self.dqn = isinstance(algo, DQNConfig)
        self.net: QPolicy | ActorCriticPolicy = (
            q_policy(algo, obs_spec, num_actions)
            if isinstance(algo, DQNConfig)
            else actor_critic_policy(algo, obs_spec, num_actions)
        )
        self.version = -1

    def load(self, weights: Mapping[str, np.ndarray], version: int = -1) -> None:
        """Installs policy weights (a numpy state dict, as published or from a checkpoint).

        Raises:
            RuntimeError: the weights do not fit the network (another algorithm or size).
        """
        self.net.load(weights)
        self.version = version

    def __call__(self, obs: np.ndarray, mask: np.ndarray | None, info: Mapping[str, Any]) -> int:
        out = self.net(np.asarray(obs)[None])
        scores = (out if self.dqn else out[0])[0]
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        return int(scores.argmax())


class PhasePolicy:
    """Plays each boss phase with its own policy, switched on ``info["boss_phase"]``.

    SoulsGym trains one agent per phase; its whole-fight env (``SoulsGymIudexDemo-v0``) enters
    phase 2 mid-episode, and the SoulsGym adapter reports the phase in every step's info.

    Args:
        policies: Phase number -> policy; phases without one use the lowest phase's policy.
    """

    def __init__(self, policies: Mapping[int, Policy]) -> None:
        if not policies:
            raise ValueError("PhasePolicy needs at least one policy")
        self.policies = dict(policies)
        self._default = self.policies[min(self.policies)]

    def __call__(self, obs: np.ndarray, mask: np.ndarray | None, info: Mapping[str, Any]) -> int:
        policy = self.policies.get(info.get("boss_phase"), self._default)  # type: ignore[arg-type]
        return policy(obs, mask, info)


class EnvLease(Protocol):
    """An env to play on, and what to do when it fails (the sampler's own, or `OwnEnv`)."""

    def eval_env(self) -> gym.Env:
        """The env to play on now; a training episode running on it is given up."""
        ...

    def watch_env(self) -> contextlib.AbstractContextManager[None]:
        """Marks an env call as running (the stall watchdog sees a frozen game)."""
        ...

    def recover_env(self, err: Exception) -> None:
        """Counts an env fault and re-creates the env after a back-off."""
        ...


class OwnEnv:
    """An `EnvLease` over an env of its own, re-created after a crash like a sampler's."""

    def __init__(self, factory: Callable[[], gym.Env], max_backoff_s: float = 30.0) -> None:
        self._recovery = EnvRecovery(factory, max_backoff_s)
        self.env = factory()
        self.env_errors = 0

    def eval_env(self) -> gym.Env:
        return self.env

    def watch_env(self) -> contextlib.AbstractContextManager[None]:
        return self._recovery.watch()

    def recover_env(self, err: Exception) -> None:
        self.env_errors += 1
        self.env = self._recovery.recreate(self.env, err)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.env.close()


@dataclass
class EvalResult:
    """Finished episodes of a greedy evaluation."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    """Per episode, what the env reported in ``info["episode_metrics"]``."""
    env_errors: int = 0
    """Episodes lost to an env fault (replayed with a fresh env)."""

    def summary(self) -> dict[str, float | int | None]:
        """`summarize_episodes` of the episodes, plus ``env_errors``."""
        return {
            **summarize_episodes(self.returns, self.lengths, self.metrics),
            "env_errors": self.env_errors,
        }


def play_episodes(
    lease: EnvLease,
    policy: Policy,
    episodes: int,
    num_actions: int,
    seed: int | None = None,
    max_env_errors: int | None = None,
) -> EvalResult:
    """Plays ``episodes`` whole episodes with ``policy``.

    An episode interrupted by an env fault is discarded and played again on a re-created env,
    up to ``max_env_errors`` faults (default: twice ``episodes``, at least 3); then the result
    holds fewer episodes.

    Args:
        lease: Where to play.
        policy: Chooses each action.
        episodes: Episodes to finish.
        num_actions: The env's number of actions (for its action masks).
        seed: Seed of the first reset (the later resets continue its random stream).
    """
    result = EvalResult()
    limit = max(3, 2 * episodes) if max_env_errors is None else max_env_errors
    while len(result.returns) < episodes and result.env_errors <= limit:
        try:
            ret, length, info = _play_one(lease, policy, num_actions, seed)
        except Exception as err:  # noqa: BLE001 - any env fault is recovered the same way
            result.env_errors += 1
            logger.warning("evaluation episode lost to an env fault: %s", err)
            lease.recover_env(err)
            continue
        seed = None
        result.returns.append(ret)
        result.lengths.append(length)
        result.metrics.append(episode_metrics_from_info(info))
    return result


def _play_one(
    lease: EnvLease, policy: Policy, num_actions: int, seed: int | None
) -> tuple[float, int, Mapping[str, Any]]:
    env = lease.eval_env()
    with lease.watch_env():
        obs, info = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        action = policy(obs, action_mask_from_info(info, num_actions), info)
        with lease.watch_env():
            obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        length += 1
        done = bool(terminated or truncated)
    return total, length, info


def policy_weights(payload: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """The policy weights in a checkpoint's payload, and their version.

    A checkpoint written for a new best evaluation holds the exact weights that were evaluated
    (``eval_policy``); others hold the learner's current policy (DQN: ``q_net``, PPO:
    ``model``, with its observation normalizer).

    Raises:
        KeyError: the payload holds no policy (not a training checkpoint).
    """
    chosen = payload.get("eval_policy")
    if isinstance(chosen, Mapping):
        return _numpy(chosen["weights"]), int(chosen["version"])
    learner = payload["learner"]
    net = learner["q_net"] if "q_net" in learner else learner["model"]
    return _numpy(net), int(payload.get("version", -1))


def _numpy(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A checkpoint's tensors (torch.load made them; this module never imports torch) as arrays."""
    return {
        str(k): v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        for k, v in state.items()
    }


@dataclass
class TrainedPolicy:
    """A checkpoint's policy: the config it was trained with and its weights."""

    algo: AlgoConfig
    weights: dict[str, np.ndarray]
    version: int
    source: str
    """Where it came from (the checkpoint folder), for messages."""


@dataclass
class PlaySetup:
    """What `play_checkpoints` plays: an env, and a policy per boss phase (1: the only one)."""

    env: EnvConfig
    policies: dict[int, TrainedPolicy]
    video_dir: str | None = None
    """Record every episode as a video here (needs an env that renders ``rgb_array``)."""


def play_checkpoints(setup: PlaySetup, episodes: int, seed: int) -> EvalResult:
    """Plays ``episodes`` greedy episodes of ``setup`` on an env of its own.

    Raises:
        ValueError: a policy does not fit the env (another observation size or action count).
    """
    lease = OwnEnv(lambda: _make_play_env(setup))
    try:
        env = lease.env
        spec = env_spec(env)
        num_actions = spec.num_actions
        greedy: dict[int, Policy] = {}
        for phase, trained in setup.policies.items():
            fits = f"{trained.source} does not fit env {setup.env.id!r} ({spec.obs.describe()}"
            try:
                policy = GreedyPolicy(trained.algo, spec.obs, num_actions)
                policy.load(trained.weights, trained.version)
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"{fits}, {num_actions} actions): {str(err).splitlines()[0]}"
                ) from err
            greedy[phase] = policy
        chosen = greedy[1] if len(greedy) == 1 else PhasePolicy(greedy)
        return play_episodes(lease, chosen, episodes, num_actions, seed=seed)
    finally:
        lease.close()


def _make_play_env(setup: PlaySetup) -> gym.Env:
    if setup.video_dir is None:
        return make_env(setup.env)
    env = make_env(setup.env, render_mode="rgb_array")
    folder = Path(setup.video_dir)
    earlier = len(list(folder.glob("*.mp4"))) if folder.is_dir() else 0
    prefix = f"eval-{earlier:04d}" if earlier else "eval"  # an env re-created after a crash
    return gym.wrappers.RecordVideo(
        env, str(folder), episode_trigger=lambda _: True, name_prefix=prefix, disable_logger=True
    )


def merge_results(results: list[EvalResult]) -> EvalResult:
    """One result holding the episodes of several (e.g. one per game PC)."""
    merged = EvalResult()
    for result in results:
        merged.returns += result.returns
        merged.lengths += result.lengths
        merged.metrics += result.metrics
        merged.env_errors += result.env_errors
    return merged


def load_trained_policy(path: str | Path) -> tuple[TrainedPolicy, dict[str, Any]]:
    """Loads a checkpoint's policy and the config it was trained with.

    Args:
        path: A checkpoint folder, or a run's ``checkpoints/best`` / ``checkpoints/latest``
            file naming one.

    Returns:
        The policy, and the checkpoint's run config as data (`read_config`: a plain dict,
        nothing resolved or imported; check its ``env.id`` before making the env).

    Raises:
        CheckpointError: the checkpoint is missing, partial or corrupt, or holds no policy, or
            its config is unreadable or holds an interpolation; the message names the path.
    """
    from soulsai_ray.checkpoint_folder import CheckpointError, load_checkpoint, read_config
    from soulsai_ray.config import parse_config
    from soulsai_ray.typed_config import ConfigError

    folder = Path(path).expanduser()
    if folder.is_file() and folder.name in ("best", "latest"):
        folder = folder.parent / folder.read_text().strip()
    payload, _ = load_checkpoint(folder)
    config = read_config(folder)
    try:
        algo = parse_config(config).algo
        weights, version = policy_weights(payload)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{folder}: not a training checkpoint with a policy ({err})") from err
    return TrainedPolicy(algo, weights, version, str(folder)), config
