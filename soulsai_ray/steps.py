"""What a DQN rollout actor sends with ``algo.replay_layout: frames``: its env steps, each new
frame once, for :class:`~soulsai_ray.frame_replay.FrameReplay` to rebuild n-step transitions
and frame stacks from (plain numpy, no torch).

A sampler records every env step (an :class:`~soulsai_ray.transitions.EnvStep`) into its
:class:`StepRecorder` and ships `StepRecorder.pop` results (:class:`StepBatch`) to the replay
owner, which checks them with :func:`~soulsai_ray.inbound.check_steps` and adds them with
``FrameReplay.add``.

The format. One recorder is one **stream** (a random 63-bit id drawn when it is made: a
restarted actor is a new stream); it numbers its steps 0, 1, 2, ... (``seq``), and a batch holds
consecutive steps ``seq .. seq + B - 1``. A **fragment** is a run of steps of one episode with
no gap: it begins at an episode's first step, after the recorder was reset (an env crash or an
evaluation gave the episode up), and at each batch's first step. ``starts[i]`` marks step i
beginning one, and ``first_obs`` holds, per start, the k frames of its observation (k =
``env.frame_stack``, oldest first, as the stacked observation holds them); every other
observation is the frame the step before brought (``next_frames``). ``continues`` says the
batch's first step goes on with the episode of step ``seq - 1``: a receiver that holds that step
(its stream's expected next seq is ``seq``) links on and skips the first start's frames, so each
frame is stored once; a receiver that lost or refused the batch before (a gap in ``seq``) gives
the stream's open episode up and begins a new fragment with them, its stack history exact.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from soulsai_ray.transitions import EnvStep, _as_mask, _as_obs


@dataclass
class StepBatch:
    """Consecutive env steps of one stream; arrays are batch-first, B steps, S = starts.sum().

    Attributes:
        stream: The sending recorder's id, an int in [0, 2**63).
        seq: Number of the first step within the stream (counting every step it recorded).
        continues: The first step goes on with the episode of step ``seq - 1``.
        starts: bool [B]; step i begins a fragment (``starts[0]`` is always True).
        first_obs: [S, k, *frame] the k frames of each start's observation, oldest first.
        actions: int64 [B] chosen actions.
        rewards: float64 [B] each step's own reward (the replay sums n-step returns).
        next_frames: [B, *frame] the newest frame of the observation after each step.
        terminated: bool [B] the episode ended in a terminal state after the step.
        truncated: bool [B] the episode was cut off after the step.
        next_masks: bool [B, num_actions] valid actions after each step.
        versions: int64 [B] policy version that chose each action.
        horizons: int64 [B] steps each step's transition sums (n; its episode's n, which
            `StepRecorder.set_n` changes from the next episode on).
    """

    stream: int
    seq: int
    continues: bool
    starts: np.ndarray
    first_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_frames: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_masks: np.ndarray
    versions: np.ndarray
    horizons: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def split_frames(obs: np.ndarray, stack: int) -> np.ndarray:
    """The ``stack`` frames [stack, *frame] of an observation stacked along its last axis."""
    return np.moveaxis(obs.reshape(*obs.shape[:-1], stack, -1), -2, 0)


class _Step(NamedTuple):
    """One recorded env step waiting for `StepRecorder.pop`."""

    start: bool
    action: int
    reward: float
    next_frame: np.ndarray
    terminated: bool
    truncated: bool
    next_mask: np.ndarray
    version: int
    horizon: int


class StepRecorder:
    """Records the env steps of ONE env in `StepBatch` batches: the counterpart of
    :class:`~soulsai_ray.transitions.NStepAccumulator` for a frames replay, with its interface.

    Every recorded step ships at the next `pop` (nothing waits for later steps): the replay
    builds the n-step transitions, each over the n its step carries.

    Args:
        num_actions: Size of the discrete action space (length of action masks).
        n: Steps per transition, until `set_n` changes it.
        frame_stack: Frames per observation (``env.frame_stack``), stacked along the last axis.
    """

    def __init__(self, num_actions: int, n: int, frame_stack: int = 1) -> None:
        if num_actions < 1 or n < 1 or frame_stack < 1:
            raise ValueError(
                f"need num_actions, n, frame_stack >= 1: {num_actions}, {n}, {frame_stack}"
            )
        self._n = self._next_n = n
        self.stream = secrets.randbits(63)
        """This recorder's stream id, drawn at random: never reused by another recorder."""
        self._num_actions, self._stack = num_actions, frame_stack
        self._recorded = 0
        self._fresh = True
        """The next step begins a fragment: an episode's first, or the first after a reset."""
        self._continues = False
        self._steps: list[_Step] = []
        self._first_obs: list[np.ndarray] = []

    @property
    def pending(self) -> int:
        """Steps that wait for later steps before they ship: none."""
        return 0

    @property
    def n(self) -> int:
        """Steps per transition of the episode in progress."""
        return self._n

    def set_n(self, n: int) -> None:
        """Gives later steps transitions of ``n`` steps, from where `NStepAccumulator.set_n`
        would: at once where no step waits for later ones (between episodes, or at n = 1),
        else from the next episode (or the one after a reset)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._next_n = n
        if self._fresh or self._n == 1:
            self._n = n

    def push(self, step: EnvStep) -> None:
        """Records one env step.

        ``step.obs`` is kept only where the step begins a fragment; of ``step.next_obs`` only its
        newest frame.
        """
        mask = _as_mask(step.next_mask, self._num_actions)
        if not self._steps:
            self._continues = not self._fresh
        start = self._fresh or not self._steps
        if start:
            self._first_obs.append(split_frames(_as_obs(step.obs), self._stack))
        newest = split_frames(_as_obs(step.next_obs), self._stack)[-1]
        end = (bool(step.terminated), bool(step.truncated))
        action, reward, version = int(step.action), float(step.reward), int(step.version)
        self._steps.append(_Step(start, action, reward, newest, *end, mask, version, self._n))
        self._recorded += 1
        self._fresh = any(end)
        if self._fresh:
            self._n = self._next_n

    def pop(self) -> StepBatch | None:
        """Returns the steps recorded since the last call (None if there are none)."""
        if not self._steps:
            return None
        steps, first_obs = self._steps, self._first_obs
        self._steps, self._first_obs = [], []
        return StepBatch(
            stream=self.stream,
            seq=self._recorded - len(steps),
            continues=self._continues,
            starts=np.array([s.start for s in steps], np.bool_),
            first_obs=np.stack(first_obs),
            actions=np.array([s.action for s in steps], np.int64),
            rewards=np.array([s.reward for s in steps], np.float64),
            next_frames=np.stack([s.next_frame for s in steps]),
            terminated=np.array([s.terminated for s in steps], np.bool_),
            truncated=np.array([s.truncated for s in steps], np.bool_),
            next_masks=np.stack([s.next_mask for s in steps]),
            versions=np.array([s.version for s in steps], np.int64),
            horizons=np.array([s.horizon for s in steps], np.int64),
        )

    def reset(self) -> None:
        """Gives the running episode up (an env crash): the next step begins a fragment.
        Recorded steps still ship."""
        self._fresh = True
        self._n = self._next_n
